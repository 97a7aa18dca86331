"""Walk 40 again, as Sara Lopez (cs-lead, Europe/Madrid) reads her pages on a phone: a complaint review starts, a
step comes to her, she asks for help 28 seconds later, and Li Wei (ops-director) is paged.

No Prefect: a real SQLite (or PostgreSQL) ledger, the real engine and pager with personal links, time on a manual
clock; the inbox stands in for the phones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.clock import ManualClock
from notifications import read_inbox
from tests.conftest import TestDatabase
from tests.engine.conftest import clocked_engine_of

START = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)

REVIEW = """\
    id: t-review
    title: Complaint review - service process
    class: complaint
    owner: cs-lead
    steps:
      - id: root-cause
        title: Root-cause session
        assignee: cs-lead
        due: 4h
        escalation:
          - at: 100%
            notify: [lead]
"""


@pytest.fixture
def engine(database: TestDatabase, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for made in clocked_engine_of(repo_root, tmp_path, monkeypatch, database.url_at(tmp_path / "ledger.db"),
                                  ManualClock(START), {"t-review": REVIEW}):
        made.pager.links_from = lambda made=made: made.links  # as `sop serve` has it: pages carry personal links
        yield made


def test_sara_on_her_phone_reads_names_a_short_title_her_link_and_no_terminal(engine: Any) -> None:
    run = engine.start("t-review", {}, initiator="li-wei", speed=1)
    engine.clock.set(START + timedelta(seconds=28))
    engine.ask_for_help(run.run_id, "root-cause", "sara-lopez", "I need the call-recording export")
    engine.pager.close()

    pages = {page["title"].split(":")[0]: page for page in read_inbox("sara-lopez", engine.inbox)}
    started, assigned = pages["[P1] Started"], pages["[P1] Assigned to you"]  # in either order: two pages at once
    # the start notice asks her nothing: not sent as a failure (its [P1] says how urgent the run is)
    assert started["title"].startswith("[P1] Started: Complaint review") and started["type"] == "info"
    assert "by Li Wei" in started["body"]

    assert assigned["title"] == "[P1] Assigned to you: Root-cause session (Complaint review), 4h left"
    body = assigned["body"]
    assert "**Open your step:** http://" in body and "/s/" in body
    assert "assigned to Customer Service Lead" in body
    for noise in ("sop done", "curl", "<your API token>", "cs-lead", "li-wei"):
        assert noise not in body, noise

    [help_page] = read_inbox("li-wei", engine.inbox)
    assert help_page["title"] == ("[P1] Help asked: Sara Lopez needs a hand with Root-cause session "
                                  "(Complaint review), 4h left")  # 3h59m32s left: rounded for the lock screen
    assert "(3h59m32s left)" in help_page["body"]  # the exact time in the body
    assert "It is assigned to Customer Service Lead" in help_page["body"]
    # the step went to her (primary of cs-lead): it is with her; she did not say "I'll take it", nor does the page
    assert "It is with **Sara Lopez**" in help_page["body"] and "held by" not in help_page["body"]
    # asking for help does not take the step: it stays with whom it went to, open to her backup's "I'll take it"
    assert engine.view(run.run_id).steps["root-cause"]["claimed_by"] is None
