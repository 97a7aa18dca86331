"""A person's step whose ``when`` fails at run time: the owner is told at once why, and what to do, in one page;
not "Finished (failed) … Nothing is asked of you". ``sop validate`` now refuses what it can prove would fail (an
optional field compared without a default); a value whose type it does not know (``run.*``, ``trigger.*``) can
still fail when the run gets there."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flows.language.steps.human import HumanReport
from tests.engine.conftest import local_engine_of, records, wait_for

VIP = """\
id: t-vip
title: VIP complaint
class: complaint
owner: cs-lead
deadline: 4h
steps:
  - id: investigate
    title: Investigate the complaint
    assignee: cs-lead
    due: 1h
    form:
      compensation: {type: integer, required: false}
  - id: approve
    title: Approve the compensation
    needs: [investigate]
    when: "{{ run.title > 500 }}"
    assignee: ops-director
    due: 1h
"""


@pytest.fixture
def local_engine(repo_root, tmp_path, monkeypatch) -> Any:
    yield from local_engine_of(repo_root, tmp_path / "site", monkeypatch, {"t-vip": VIP})


def test_a_when_that_fails_pages_the_owner_with_the_reason_once(local_engine: Any) -> None:
    engine = local_engine
    run_id = engine.start("t-vip", initiator="sara-lopez").run_id
    engine.report(run_id, "investigate", HumanReport("sara-lopez", values={}))  # then `approve`'s when: text > 500
    view = engine.view(run_id)
    assert view.state("approve") == "failed" and view.run["outcome"] == "failed"
    [failed] = records(engine, run_id, "step_failed")
    assert "`when` could not be evaluated" in failed["data"]["reason"]
    inbox = engine.library.root / "var" / "inbox" / "sara-lopez.jsonl"  # cs-lead's primary: the owner

    def pages() -> list[dict[str, Any]]:
        return [json.loads(line) for line in (inbox.read_text().splitlines() if inbox.exists() else [])]

    told = wait_for(lambda: [p for p in pages() if run_id in p["body"] and "`approve`" in p["body"]], 10,
                    "the owner's page", explain=lambda: [p["title"] for p in pages()])
    assert [p["title"] for p in told] == ["[P1] Step failed: Approve the compensation (VIP complaint)"]
    body = " ".join(told[0]["body"].split())
    assert "a step for Operations Director, failed before anyone was asked: `when` could not be evaluated" in body
    assert "The SOP's `when` needs fixing" in body and "Nothing is asked of you" not in body
    engine.pager.close()  # every page sent
    assert not [p for p in pages() if p["title"].startswith("[P1] Finished")]  # one page, not two
