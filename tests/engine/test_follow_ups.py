"""Follow-ups: a crisis-PR run's end starts its post-incident review, due within 5 days of that end.

Real engine, real SQLite ledger, real pages (the local inbox), real timers: only time is steered
(a manual clock; runs compressed 60×, so the review's 5 days are 2 hours of the clock).
"""

from __future__ import annotations

import json
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from flows.audit import Audit
from flows.audit.report import compliance_report
from flows.clock import ManualClock
from flows.engine.change import Ended
from flows.engine.paging import Pager
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine, StepNotActive
from flows.language.library import load_library
from flows.language.steps.human import HumanReport
from flows.ledger import Ledger
from flows.ledger.schema import runs
from notifications import read_inbox
from tests.engine.conftest import make_project, records

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SPEED = 60.0  # an hour of playbook is a minute of the clock: the 5-day window is 2 hours

CRISIS = {  # step -> (who answers, the form), in the order crisis-pr asks
    "assess": ("wang-fang", {"severity": "high", "topic": "late parcels", "category": "delivery",
                             "platforms": "weibo", "trend": "rising", "kol_involved": False}),
    "facts": ("sara-lopez", {"affected_orders": 12, "confirmed": "confirmed", "remedy": "refund"}),
    "legal": ("sun-hao", {"legal_risk": "low", "must_not_say": "no liability", "regulator_notice": False}),
    "draft": ("wang-fang", {"draft_url": "https://docs.example/d1", "channels": "weibo"}),
    "approve": ("chen-jie", {"decision": "approve"}),
    "publish": ("wang-fang", {"posted_links": "https://weibo.example/p"}),
    "brief-cs": ("sara-lopez", {"agents_briefed": 40, "ticket_tag": "parcels"}),
    "monitor": ("chen-jie", {"mentions_last_hour": 3, "trend": "falling", "cadence": "every_hour",
                             "follow_up_owner": "chen-jie"}),
}
REVIEW = {  # the post-incident review of a crisis (area pr), its plan counting as effective
    "timeline": ("priya-nair", {"minutes_to_first_action": 12, "deadlines_missed": 0, "metric_before": 20,
                                "metric_peak": 140, "metric_after": 15}),
    "findings-pr": ("chen-jie", {"root_cause": "a courier strike", "cause_category": "delivery",
                                 "what_held": "the statement", "what_broke": "tracking updates"}),
    "actions": ("zhang-min", {"actions": "second courier, owner he-xin, by 2026-04-01", "control_group": True,
                              "single_variable": True, "full_lifecycle": True}),
    "sign-off": ("li-wei", {"decision": "accept"}),
}
PROBES = {
    # a follow-up whose own SOP's deadline (1h) is shorter than the window it is given (5d)
    "t-fu-parent": """
        id: t-fu-parent
        title: Follow-up parent probe
        class: outage
        owner: sre-lead
        inputs: {n: {type: string, default: "1"}}
        follow_ups:
          - start: t-fu-child
            within: 5d
            inputs: {ticket: "{{ inputs.n }}", count: "{{ inputs.n }}"}
        steps:
          - {id: fix, assignee: sre-oncall, due: 10m}
    """,
    "t-fu-child": """
        id: t-fu-child
        title: Follow-up child probe
        class: routine
        owner: sre-lead
        deadline: 1h
        inputs: {ticket: {type: string}, count: {type: integer}}
        steps:
          - {id: note, assignee: sre-oncall, due: 30m}
    """,
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def engine(repo_root: Path, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Any:
    root = make_project(repo_root, tmp_path / "site", only=())
    for name in ("crisis-pr", "post-incident-review"):
        (root / "sops" / f"{name}.yaml").write_text((repo_root / "sops" / f"{name}.yaml").read_text())
    for name, text in PROBES.items():
        (root / "sops" / f"{name}.yaml").write_text(textwrap.dedent(text))
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    engine = _engine(root, tmp_path / "ledger.db", clock)
    engine.inbox = tmp_path / "inbox"  # type: ignore[attr-defined]
    yield engine
    engine.pager.close()
    engine.ledger.dispose()


def _engine(root: Path, db: Path, clock: ManualClock) -> Engine:
    library = load_library(root)
    ledger = Ledger(f"sqlite:///{db}", clock=clock)
    ledger.migrate()
    return Engine(library, ledger, pager=Pager(library.site, ledger), clock=clock)


def automate(engine: Engine, run_id: str) -> None:
    """What the flow run does for the automated steps that are ready (no Prefect here)."""
    view = engine.view(run_id)
    for step in view.sop.steps:
        if view.state(step.id) == "ready" and engine.mark_running(run_id, step.id):
            engine.complete(run_id, step.id, {})
    engine.advance(run_id)


def play(engine: Engine, run_id: str, answers: dict[str, tuple[str, dict[str, Any]]], clock: ManualClock,
         step_minutes: float = 1.0) -> None:
    """Answer the run's people's steps in order, ``step_minutes`` of the clock apart (timers fire between)."""
    timers = TimerService(engine, name="follow-up-tests")
    for step, (person, values) in answers.items():
        automate(engine, run_id)
        timers.advance_to(clock.now() + timedelta(minutes=step_minutes))
        if engine.view(run_id).state(step) != "active":
            continue  # skipped by its `when` (the other area's findings)
        evidence = ["https://x.example/e"] if step in ("assess", "publish", "timeline") else []
        engine.report(run_id, step, HumanReport(person, values=values, evidence=evidence))
    automate(engine, run_id)


def crisis(engine: Engine, clock: ManualClock, **answers: dict[str, Any]) -> str:
    """A crisis-PR run of its own brand, played to its end (``answers`` change a step's form)."""
    run_id = engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:6]}"}, initiator="li-wei", speed=SPEED).run_id
    steps = {step: (person, {**values, **answers.get(step.replace("-", "_"), {})})
             for step, (person, values) in CRISIS.items()}
    play(engine, run_id, steps, clock)
    assert engine.view(run_id).run["outcome"] == "done"
    return run_id


def review_of(engine: Engine, parent: str) -> str | None:
    with engine.ledger.read() as conn:
        return conn.execute(sa.select(runs.c.id).where(runs.c.parent_run_id == parent)).scalar()


def test_a_crisis_that_ends_starts_its_review_linked_both_ways_and_due_5_days_after_the_end(
        engine: Engine, clock: ManualClock) -> None:
    parent = crisis(engine, clock)
    ended = engine.view(parent).run["finished_at"]
    review = review_of(engine, parent)
    assert review is not None
    view = engine.view(review)
    assert view.sop.id == "post-incident-review" and view.is_open
    assert view.run["initiator"] == f"run:{parent}"  # who started it: the system, for the run whose end it was
    assert view.run["deadline_at"] == ended + timedelta(days=5) / SPEED  # the window (its SOP's own 5d is not shorter)
    assert view.speed == SPEED
    inputs = json.loads(view.run["inputs"])
    assert inputs["incident_run"] == parent and inputs["area"] == "pr" and inputs["outcome"] == "done"
    assert inputs["summary"].endswith(": late parcels")

    [started] = records(engine, parent, "follow_up_started")  # the parent's side of the link
    assert started["data"]["run"] == review and started["data"]["sop"] == "post-incident-review"
    assert started["data"]["within"] == "5d"
    [child] = records(engine, review, "run_started")  # the child's side
    assert child["actor"] == f"run:{parent}"
    assert child["data"]["trigger"]["kind"] == "follow_up" and child["data"]["trigger"]["run"] == parent
    assert child["data"]["trigger"]["parent_sop"] == "crisis-pr"

    engine.pager.close()  # the normal start path: the owner (ops-director: li-wei) and the first assignee paged
    assert any(m["title"].startswith("[P4] Started: Post-incident review") for m in read_inbox("li-wei", engine.inbox))
    assert any("Rebuild the incident" in m["title"] for m in read_inbox("priya-nair", engine.inbox))

    audit = Audit(engine.ledger, clock.now())
    assert audit.run(review).parent_run == parent
    assert [(f.sop, f.state, f.run) for f in audit.run(parent).follow_ups] == [
        ("post-incident-review", "started", review)]


def test_reviews_are_judged_against_their_window_on_time_late_and_open(engine: Engine, clock: ManualClock,
                                                                        sop: Any) -> None:
    on_time, late, still_open = crisis(engine, clock), crisis(engine, clock), crisis(engine, clock)
    play(engine, review_of(engine, on_time), REVIEW, clock, step_minutes=5)  # 20 min of clock: 20h of SOP time
    timers = TimerService(engine, name="follow-up-tests")
    late_review = review_of(engine, late)
    window = engine.view(late_review).run["deadline_at"]
    timers.advance_to(window + timedelta(minutes=1))  # the window passes: the review's deadline fires
    [overdue] = records(engine, late_review, "run_overdue")
    assert overdue["at"] == window
    play(engine, late_review, REVIEW, clock, step_minutes=1)
    timers.advance_to(engine.view(review_of(engine, still_open)).run["deadline_at"] + timedelta(seconds=1))

    audit = Audit(engine.ledger, clock.now())
    judged = {parent: audit.run(review_of(engine, parent)) for parent in (on_time, late, still_open)}
    from flows.audit.followups import verdict

    assert {p: verdict(r, clock.now()) for p, r in judged.items()} == {
        on_time: "on_time", late: "late", still_open: "overdue"}
    report = compliance_report(audit.runs(), clock.now())
    [pair, total] = report.follow_ups
    assert (pair.parent_sop, pair.sop) == ("crisis-pr", "post-incident-review")
    assert (total.count, total.on_time, total.late, total.open, total.overdue, total.not_done) == (3, 1, 1, 0, 1, 0)
    assert total.on_time_pct == pytest.approx(33.3)

    env = {"SOP_HOME": str(engine.library.root), "SOP_DATABASE_URL": str(engine.ledger.url)}
    shown = sop("audit", "report", env=env)  # what the auditor reads (now: later than every window here)
    assert shown.returncode == 0, shown.stderr
    assert "Follow-ups done within their window" in shown.stdout
    table = shown.stdout.split("Follow-ups done within their window", 1)[1]
    row = next(line for line in table.splitlines() if line.strip().startswith("crisis-pr"))
    assert [cell.strip() for cell in row.split("│")] == [
        "crisis-pr", "post-incident-review", "3", "1", "1", "0", "1", "0", "33.3%"], row
    story = sop("audit", "show", late, env=env)
    assert f"follow-up post-incident-review started → run {late_review}" in story.stdout
    review_story = sop("audit", "show", late_review, env=env)
    assert f"follow-up of run {late} (crisis-pr)" in review_story.stdout and "· late" in review_story.stdout
    assert "run started by the end (done) of crisis-pr run" in review_story.stdout


def test_no_review_when_its_when_is_false_a_low_severity_blip_or_a_cancelled_crisis(
        engine: Engine, clock: ManualClock, sop: Any) -> None:
    run_id = engine.start("crisis-pr", {"brand": "blip"}, initiator="li-wei", speed=SPEED).run_id
    play(engine, run_id, {"assess": ("wang-fang", {**CRISIS["assess"][1], "severity": "low"}),
                          "watch": ("wang-fang", {"replies_sent": 3, "tickets_opened": 1}),
                          "monitor": CRISIS["monitor"]}, clock)
    assert engine.view(run_id).run["outcome"] == "done"
    assert review_of(engine, run_id) is None
    [skipped] = records(engine, run_id, "follow_up_skipped")  # said in words; the condition kept apart, as written
    assert skipped["data"]["reason"] == "its condition was not met"
    assert skipped["data"]["when"].startswith("{{ run.outcome != 'cancelled' and")

    called_off = engine.start("crisis-pr", {"brand": "false-alarm"}, initiator="li-wei", speed=SPEED).run_id
    engine.cancel(called_off, "false alarm", actor="chen-jie")
    assert review_of(engine, called_off) is None
    assert len(records(engine, called_off, "follow_up_skipped")) == 1
    story = sop("audit", "show", called_off,
                env={"SOP_HOME": str(engine.library.root), "SOP_DATABASE_URL": str(engine.ledger.url)}).stdout
    assert "follow-up post-incident-review skipped: its condition was not met\n" in story, story
    assert "      condition: {{ run.outcome != 'cancelled' and" in story  # on a details line of its own
    assert "is false" not in story
    # the steps its `when` skipped read the same way (facts, watch: low severity only; tell-director: high only)
    assert "skipped: its condition was not met" in sop(
        "audit", "show", run_id, env={"SOP_HOME": str(engine.library.root),
                                      "SOP_DATABASE_URL": str(engine.ledger.url)}).stdout

    no_when = engine.start("t-fu-parent", {}, initiator="li-wei", speed=SPEED).run_id  # no `when`: not on a cancel
    engine.cancel(no_when, "duplicate", actor="tom-becker")
    assert review_of(engine, no_when) is None
    [skipped] = records(engine, no_when, "follow_up_skipped")
    assert skipped["data"]["reason"] == "the run was cancelled" and skipped["data"]["outcome"] == "cancelled"


def test_a_review_starts_once_across_a_restart_and_a_replay_of_the_end(
        engine: Engine, clock: ManualClock, tmp_path: Path) -> None:
    parent = crisis(engine, clock)
    first = review_of(engine, parent)
    restarted = _engine(engine.library.root, tmp_path / "ledger.db", clock)  # another process on the same ledger
    try:
        restarted.advance(parent)  # every process may advance any run any time
        restarted.complete(parent, "page", {})  # a flow run rerun from the top reports its automated step again
        with pytest.raises(StepNotActive):
            restarted.cancel(parent, "replayed", actor="li-wei")
        with restarted.transaction() as t:  # the end itself replayed: fenced by (parent run, follow-up 0)
            t.ended.append(Ended(t.store.load(parent), "done", clock.now(), True))
        with pytest.raises(IntegrityError), restarted.ledger.transaction() as tx:  # and the database refuses a second
            tx.conn.execute(runs.insert().values(**{**dict(tx.conn.execute(
                sa.select(runs).where(runs.c.id == first)).first()._mapping), "id": "dup0000000", "open_key": None}))
    finally:
        restarted.pager.close()
    with engine.ledger.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(runs).where(runs.c.parent_run_id == parent)).scalar()
    assert count == 1 and len(records(engine, parent, "follow_up_started")) == 1


def test_the_end_and_its_review_commit_together(engine: Engine, clock: ManualClock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = engine.start("crisis-pr", {"brand": "crash"}, initiator="li-wei", speed=SPEED).run_id
    last = dict(list(CRISIS.items())[:-1])
    play(engine, run_id, last, clock)
    queue = engine.pager.queue

    def crash(conn: Any, pages: list[Any]) -> None:  # the process dies after the review is written, before commit
        if any(p.kind == "run_finished" for p in pages):
            raise RuntimeError("power cut")
        queue(conn, pages)

    monkeypatch.setattr(engine.pager, "queue", crash)
    with pytest.raises(RuntimeError):  # the report commits; the advance that ends the run does not
        engine.report(run_id, "monitor", HumanReport("chen-jie", values=CRISIS["monitor"][1]))
    view = engine.view(run_id)
    assert view.state("monitor") == "done" and view.is_open  # the run did not end, so no review either
    assert review_of(engine, run_id) is None and not records(engine, run_id, "run_finished")
    monkeypatch.setattr(engine.pager, "queue", queue)
    engine.advance(run_id)  # after the restart: any process's advance ends it, and starts its review with it
    assert not engine.view(run_id).is_open and review_of(engine, run_id) is not None
    assert len(records(engine, run_id, "follow_up_started")) == 1


def test_the_follow_ups_own_shorter_deadline_wins_and_inputs_that_do_not_fit_are_refused(
        engine: Engine, clock: ManualClock) -> None:
    parent = engine.start("t-fu-parent", {}, initiator="li-wei", speed=SPEED).run_id
    engine.report(parent, "fix", HumanReport("zhao-lei"))
    child = engine.view(review_of(engine, parent))  # type: ignore[arg-type]
    assert child.run["deadline_at"] == child.run["started_at"] + timedelta(hours=1) / SPEED  # 1h < 5d
    assert json.loads(child.run["inputs"]) == {"ticket": "1", "count": 1}

    bad = engine.start("t-fu-parent", {"n": "many"}, initiator="li-wei", speed=SPEED).run_id
    engine.report(bad, "fix", HumanReport("zhao-lei"))
    assert engine.view(bad).run["outcome"] == "done"  # the end stands
    [refused] = records(engine, bad, "follow_up_refused")
    assert "input `count`" in refused["data"]["reason"] and review_of(engine, bad) is None


def test_a_drills_review_is_not_started_and_the_record_says_so(engine: Engine, clock: ManualClock) -> None:
    run_id = engine.start("t-fu-parent", {}, initiator="drill", speed=SPEED, trigger={"kind": "drill"}).run_id
    engine.report(run_id, "fix", HumanReport("zhao-lei"))
    assert review_of(engine, run_id) is None
    [skipped] = records(engine, run_id, "follow_up_skipped")
    assert skipped["data"]["reason"].startswith("not started in a drill") and skipped["data"]["sop"] == "t-fu-child"


def test_the_cancel_page_says_who_cancelled_and_why_once(engine: Engine, clock: ManualClock) -> None:
    run_id = engine.start("crisis-pr", {"brand": "twice"}, initiator="li-wei", speed=SPEED).run_id
    engine.cancel(run_id, "Duplicate of f390dc46ee … Work that one.", actor="li-wei")
    engine.pager.close()
    for person in ("chen-jie", "wang-fang"):  # the owner (pr-lead), and the PR on-call asked to assess
        [body] = [" ".join(m["body"].split()) for m in read_inbox(person, engine.inbox)
                  if m["title"].startswith("[P1] Cancelled")]
        assert ("The run of **Crisis PR - negative mentions spike (more than 100 a day)** was cancelled by Li Wei 李伟: "
                "Duplicate of f390dc46ee … Work that one. Its open steps are closed") in body, body
        assert "cancelled: " not in body and ".." not in body
