"""A wait step that waits exactly its duration is not "missed": the drill's table, the chain and the audit agree.

A wait's due instant is its own end, and its timer ends it at that instant plus the timer
service's latency (milliseconds). It has no deadline to meet: it *is* the clock. Its
record says how late its timer was instead. A drill on compressed time, without Prefect
(the SOP has no automated step): the wait, then a person.
"""

from __future__ import annotations

from typing import Any

import pytest

from flows.audit import Audit
from flows.runtime.drill import Drill
from tests.engine.conftest import local_engine_of

PAUSE = """\
id: t-pause
title: Let the change settle, then confirm
class: routine
owner: growth-lead
deadline: 1h
steps:
  - id: settle
    kind: wait
    duration: 10m
  - id: confirm
    needs: [settle]
    assignee: growth-lead
    due: 30m
"""


@pytest.fixture
def local_engine(repo_root, tmp_path, monkeypatch) -> Any:
    yield from local_engine_of(repo_root, tmp_path / "site", monkeypatch, {"t-pause": PAUSE})


def test_a_wait_of_exactly_its_duration_is_not_missed_and_the_drill_and_the_audit_agree(local_engine):
    result = Drill(local_engine, "t-pause", speed=600, seed=1).run(timeout=60)  # 10 minutes of wait = 1 s

    assert result.outcome == "done"
    rows = {row["step"]: row for row in result.steps}
    assert (rows["settle"]["deadline"], rows["settle"]["deadline_met"]) == ("none", None)  # not "missed"
    assert (rows["confirm"]["deadline"], rows["confirm"]["deadline_met"]) == ("met", True)
    audit = Audit(local_engine.ledger)
    shown = {step["id"]: step["deadline"] for step in audit.show(result.run_id)["steps"]}
    assert shown == {row["step"]: row["deadline"] for row in result.steps}  # `sop audit show` judges as the drill did
    assert local_engine.view(result.run_id).steps["settle"]["deadline_met"] is None  # the run's own page too
    [ended] = [e for e in audit.run(result.run_id).entries if e.kind == "step_done" and e.step_id == "settle"]
    assert ended.data["deadline_met"] is None and ended.data["late"] is False  # its timer's lateness, in the chain
    assert 0 <= ended.data["late_ms"] < 2000
    [timeline] = [e.detail for e in result.timeline if e.kind == "step_done" and e.step == "settle"]
    assert timeline == "done by automation"  # not ", late"


def test_a_drill_names_who_started_it_and_from_which_os_account(local_engine):
    """`sop drill --as li-wei` records the person (with the terminal's OS user); without --as, the OS account."""
    from flows.audit.model import started_by
    from flows.language.actors import Actor

    person = Drill(local_engine, "t-pause", speed=600, seed=1, starter=Actor(person="li-wei", via="cli", os_user="ops"))
    result = person.run(timeout=60)
    [started] = [e for e in Audit(local_engine.ledger).run(result.run_id).entries if e.kind == "run_started"]
    assert started_by("li-wei", started.data, started.data.get("trigger")) == "li-wei (cli, self-declared, os user ops)"
    assert started.data["trigger"]["kind"] == "drill"

    nobody = Drill(local_engine, "t-pause", speed=600, seed=1, facts={"os_user": "ops"}).run(timeout=60)
    [started] = [e for e in Audit(local_engine.ledger).run(nobody.run_id).entries if e.kind == "run_started"]
    assert started_by("drill", started.data, started.data["trigger"]) == "drill (os user ops)"


APPROVE = """\
id: t-approve
title: Approval probe
class: routine
owner: growth-lead
steps:
  - id: approve
    title: Approve the plan
    assignee: pr-lead
    due: 30m
    approval: {approvers: [pr-lead], count: 2, distinct_from: initiator}
"""


def test_a_drill_started_by_an_approver_says_who_may_approve_and_never_crashes(repo_root, tmp_path, monkeypatch):
    """pr-lead has two members and `approve` needs two approvals, neither of them the run's starter: a drill started
    by one of them cannot be approved, as a real run could not; the drill says so once on its timeline and, out of
    time, cancels its run saying so (tests/engine/test_drill_ends.py), instead of failing with a ZeroDivisionError."""
    from flows import runtime
    from flows.language.actors import Actor
    from tests.engine.conftest import make_project

    root = make_project(repo_root, tmp_path / "site", only=())
    (root / "sops" / "t-approve.yaml").write_text(APPROVE)
    monkeypatch.setenv("SOP_DATABASE_URL", f"sqlite:///{root / 'var' / 'ledger.db'}")
    monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
    engine = runtime.engine(root, prefect=False)
    try:
        lead = engine.site.roles["pr-lead"].members[0]
        seen = []
        result = Drill(engine, "t-approve", speed=600, seed=1, starter=Actor(person=lead, via="cli"),
                       on_entry=seen.append).run(timeout=1.5)  # it never ends: its approval cannot be given
        errors = [e.detail for e in seen if e.kind == "drill_error"]
        assert len(errors) == 1 and "four-eyes rule" in errors[0] and lead in errors[0]
        assert result.outcome == "cancelled: the drill gave up after 1.5s of wall time with its run still open"
    finally:
        engine.pager.close()
