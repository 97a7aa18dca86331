"""Rework rounds: a rejection sends the work back (``on_reject``) instead of ending the run.

crisis-pr's approve says ``on_reject: draft``: "not with this wording" reopens the draft with the
note in its page, the statement is approved in round 2 and the run finishes done; both rounds
are in the chain and in `sop audit show`. After ``max_rounds`` the rejection stands.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from flows.audit import Audit
from flows.language.steps.human import HumanReport
from notifications import read_inbox
from tests.engine.conftest import records, wait_for
from tests.engine.test_timers_unit import local_engine  # noqa: F401  (an engine on a project copy, no Prefect)

ANSWERS = {
    "assess": {"severity": "high", "topic": "late parcels", "category": "delivery", "platforms": "weibo",
               "trend": "rising", "kol_involved": False},
    "facts": {"affected_orders": 12, "confirmed": "confirmed", "remedy": "refund"},
    "legal": {"legal_risk": "low", "must_not_say": "no liability", "regulator_notice": False},
    "draft": {"draft_url": "https://docs.example/d1", "channels": "weibo"},
}


def automate(engine: Any, run_id: str) -> None:
    """Do what the flow run does for the automated steps that are ready (this engine has no Prefect)."""
    view = engine.view(run_id)
    for step in view.sop.steps:
        if view.state(step.id) == "ready" and engine.mark_running(run_id, step.id):
            engine.complete(run_id, step.id, {})
    engine.advance(run_id)


def up_to_approve(engine: Any) -> str:
    run_id = engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei").run_id
    for step, values in ANSWERS.items():
        engine.report(run_id, step, HumanReport("wang-fang" if step != "legal" else "sun-hao", values=values,
                                                evidence=["https://x.example/e"] if step == "assess" else []))
    assert engine.view(run_id).state("approve") == "active"
    return run_id


def test_a_rejected_approval_sends_the_draft_back_and_round_two_finishes(local_engine: Any) -> None:  # noqa: F811
    engine = local_engine
    run_id = up_to_approve(engine)
    inbox = engine.library.root / "var" / "inbox"
    state = engine.report(run_id, "approve", HumanReport("chen-jie", outcome="rejected",
                                                         note="not with this wording"))
    assert state == "rejected"
    view = engine.view(run_id)
    assert view.is_open  # not the end of the run
    assert (view.state("draft"), view.steps["draft"]["round"]) == ("active", 2)
    assert (view.state("approve"), view.steps["approve"]["round"]) == ("pending", 2)
    assert view.state("legal") == "done"  # not between draft and approve: kept
    reopened = records(engine, run_id, "step_reopened")
    assert [(r["step_id"], r["data"]["round"], r["data"]["by"]) for r in reopened] == [
        ("draft", 2, "chen-jie"), ("approve", 2, "chen-jie")]
    # found by its round, not by what came after a count: round 1's pages are delivered after their commit,
    # on a busy machine after the count was taken
    page = wait_for(lambda: next((m for m in read_inbox("wang-fang", inbox)
                                  if m["title"].startswith("[P1] Assigned to you: Draft")
                                  and "**Round 2:**" in m["body"]), None), 10, "the draft's round-2 page")
    assert "**Round 2:** sent back by chen-jie from approve: not with this wording" in page["body"]

    engine.report(run_id, "draft", HumanReport("wang-fang", values={"draft_url": "https://docs.example/d2",
                                                                    "channels": "weibo"}))
    engine.report(run_id, "approve", HumanReport("chen-jie", values={"decision": "approve"}))
    assert engine.view(run_id).state("publish") == "active"
    for step, person, values in (("publish", "wang-fang", {"posted_links": "https://weibo.example/p"}),
                                 ("brief-cs", "sara-lopez", {"agents_briefed": 40, "ticket_tag": "parcels"}),
                                 ("monitor", "chen-jie", {"mentions_last_hour": 3, "trend": "falling",
                                                          "cadence": "every_hour", "follow_up_owner": "chen-jie"})):
        engine.report(run_id, step, HumanReport(person, values=values,
                                                evidence=["https://x.example/p"] if step == "publish" else []))
    automate(engine, run_id)
    view = engine.view(run_id)
    assert view.run["status"] == "finished" and view.run["outcome"] == "done"

    story = Audit(engine.ledger).show(run_id)
    approve = next(s for s in story["steps"] if s["id"] == "approve")
    assert approve["round"] == 2 and approve["state"] == "done" and approve["actor"] == "chen-jie"
    assert [(r["round"], r["state"], r["actor"], r["note"]) for r in approve["rounds"]] == [
        (1, "rejected", "chen-jie", "not with this wording")]
    draft = next(s for s in story["steps"] if s["id"] == "draft")
    assert draft["values"]["draft_url"] == "https://docs.example/d2" and draft["rounds"][0]["values"]["draft_url"] \
        == "https://docs.example/d1"
    texts = [e["text"] for e in story["timeline"]]
    assert any("round 2: sent back by chen-jie from approve: not with this wording" in t for t in texts), texts
    report, _ = Audit(engine.ledger).report(sop="crisis-pr")
    line = next(r for r in report.by_sop if r.key == "crisis-pr")
    assert line.rework_rounds >= 2  # draft and approve sent back once (other tests of this engine add theirs)


def test_sop_audit_show_prints_both_rounds(local_engine: Any, sop: Any) -> None:  # noqa: F811
    engine = local_engine
    run_id = up_to_approve(engine)
    engine.report(run_id, "approve", HumanReport("chen-jie", outcome="rejected", note="too long"))
    engine.report(run_id, "draft", HumanReport("wang-fang", values=ANSWERS["draft"]))
    engine.report(run_id, "approve", HumanReport("chen-jie", values={"decision": "approve"}))
    root = engine.library.root
    shown = sop("audit", "show", run_id, env={"SOP_HOME": str(root),
                                              "SOP_DATABASE_URL": engine.ledger.url})
    assert shown.returncode == 0, shown.stderr
    out = " ".join(shown.stdout.split())
    assert "approve: round 1" in out and "approve: round 2" in out and "sent back from approve" in out


def test_after_max_rounds_the_rejection_stands(local_engine: Any) -> None:  # noqa: F811
    engine = local_engine
    run_id = up_to_approve(engine)
    for _ in range(2):  # rounds 1 and 2 are sent back
        engine.report(run_id, "approve", HumanReport("chen-jie", outcome="rejected", note="no"))
        engine.report(run_id, "draft", HumanReport("wang-fang", values=ANSWERS["draft"]))
    engine.report(run_id, "approve", HumanReport("chen-jie", outcome="rejected", note="still no"))  # round 3 of 3
    automate(engine, run_id)
    view = engine.view(run_id)
    assert view.steps["approve"]["round"] == 3 and view.state("approve") == "rejected"
    assert view.run["status"] == "finished" and view.run["outcome"] == "rejected"
    assert len(records(engine, run_id, "step_reopened")) == 4  # draft and approve, twice


@pytest.mark.parametrize("text, message", [
    ("on_reject: nosuch", "on_reject names unknown step `nosuch`"),
    ("on_reject: publish", "on_reject must name an earlier step that `approve` waits on"),
])
def test_validate_refuses_a_rework_loop_that_cannot_be(sop: Any, tmp_path: Any, repo_root: Any, text: str,
                                                       message: str) -> None:
    source = (repo_root / "sops" / "crisis-pr.yaml").read_text()
    bad = tmp_path / "sops" / "crisis-pr.yaml"
    bad.parent.mkdir()
    bad.write_text(source.replace("on_reject: draft", text))
    result = sop("validate", str(bad))
    assert result.returncode == 1 and message in result.stdout + result.stderr
    line = source[:source.index("on_reject: draft")].count("\n") + 1
    assert f"crisis-pr.yaml:{line}:" in result.stdout + result.stderr


def test_the_reopened_step_escalates_again_in_its_new_round(local_engine: Any) -> None:  # noqa: F811
    from datetime import timedelta

    from flows.engine.timers import TimerService
    from flows.ledger.schema import timers

    engine = local_engine
    run_id = up_to_approve(engine)
    fired_before = len(records(engine, run_id, "escalation"))
    engine.report(run_id, "approve", HumanReport("chen-jie", outcome="rejected", note="shorter"))
    with engine.ledger.transaction() as tx:  # the draft's round-2 timers come due (as if 30 minutes went by)
        tx.conn.execute(timers.update().where((timers.c.run_id == run_id) & (timers.c.step_id == "draft")
                                              & timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None))
                        .values(due_at=engine.clock.now() - timedelta(seconds=1)))
    fired = TimerService(engine).fire_due()
    assert {(f.step_id, f.level) for f in fired if f.kind == "ladder"} == {("draft", "r2:1")}
    escalations = records(engine, run_id, "escalation")[fired_before:]
    assert [(e["step_id"], e["data"]["level"]) for e in escalations] == [("draft", "1")]  # its ladder, from the top


def test_a_late_first_round_counts_as_a_late_step(local_engine: Any) -> None:  # noqa: F811
    """A rejection sends the draft back: the first round's answers were asks with dues of their own, and one given
    after its due is a late step in the figures, whatever the second round does."""
    import time

    from flows.audit.report import RunFacts

    engine = local_engine
    run_id = engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei", speed=3600).run_id
    for step, values in ANSWERS.items():  # 15m dues are 0.25 s here: answered at once, on time or not
        engine.report(run_id, step, HumanReport("wang-fang" if step != "legal" else "sun-hao", values=values,
                                                evidence=["https://x.example/e"] if step == "assess" else []))
    due = engine.view(run_id).steps["approve"]["due_at"]
    time.sleep(0.4)  # approve's round 1 is answered after its due (15m of SOP time)
    engine.report(run_id, "approve", HumanReport("chen-jie", outcome="rejected", note="not with this wording"))
    story = Audit(engine.ledger).run(run_id)
    [first] = story.steps["approve"].rounds
    assert first.due_at == due and first.finished_at > due
    facts = RunFacts.of(story, engine.clock.now())
    assert ("pr-lead", True) in facts.timed_steps  # the late rejection, round 1 of approve
    report, _ = Audit(engine.ledger).report(sop="crisis-pr")
    assert next(r for r in report.by_role if r.key == "pr-lead").late_steps >= 1
    # a drill's table has a row per round: round 1's verdict and ladder on its own row, not on round 2's
    from flows.runtime.drill import Drill

    rows, _ = Drill(engine, "crisis-pr", speed=3600)._verdicts(run_id, [])
    approve = [(r["round"], r["state"], r["deadline"]) for r in rows if r["step"] == "approve"]
    assert approve == [(1, "rejected", "missed"), (2, "pending", "none")]
