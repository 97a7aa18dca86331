"""Runs on the real stack: what ops managers and responders see happen, on compressed time."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa

from flows.engine.transitions import InputRefused
from flows.language.steps.human import HumanReport, ReportRefused
from flows.ledger.schema import outbox
from flows.prefect.launcher import prefect_client
from flows.runtime.drill import Drill
from tests.engine.conftest import record_count, records, step_states, wait_for


def test_crisis_pr_runs_end_to_end_with_a_late_step_escalated(engine, project):
    drill = Drill(engine, "crisis-pr", speed=240, late={"facts"}, inputs={"brand": "acme", "mentions_per_day": "140"},
                  seed=3)
    result = drill.run(timeout=150)

    assert result.outcome == "done"
    states = {row["step"]: row["state"] for row in result.steps}
    assert states["page"] == "done"  # the automated notify step ran as a Prefect task
    assert states["watch"] == "skipped" and states["monitor"] == "done"
    by_step = {row["step"]: row for row in result.steps}
    assert by_step["facts"]["deadline_met"] is False
    assert all(by_step[s]["deadline_met"] for s in ("assess", "draft", "publish"))
    levels = [r["data"]["level"] for r in records(engine, result.run_id, "escalation") if r["step_id"] == "facts"]
    assert levels[:2] == ["1", "2"]  # reminded at 50%, escalated to lead and backup at 100%
    # the people were really told: the owner's and the late responder's lead's inboxes have the pages
    inbox = project / "var" / "inbox"
    owner_pages = [json.loads(line) for line in (inbox / "chen-jie.jsonl").read_text().splitlines()]
    assert any("[P1]" in p["title"] and "crisis" in p["title"].lower() for p in owner_pages)
    # once the late step is done, its owner and everyone its ladder paged (the lead, li-wei; the backup,
    # wang-fang) are told, not the owner alone (li-wei through her digest: the page is kept for it)
    def told_done() -> set[str]:
        done = [r["data"] for r in records(engine, result.run_id, "notification")
                if r["step_id"] == "facts" and r["data"]["notification"] == "step_done"]
        return {sent["recipient"] for d in done for sent in d["results"]} | {p for d in done for p in d.get("kept", [])}

    wait_for(lambda: {"chen-jie", "li-wei", "wang-fang"} <= told_done(), 30, "the late step's end told to all",
             explain=lambda: str(told_done()))
    # one run, one Prefect flow run: resumed after the last report, it completes
    view = engine.view(result.run_id)

    def flow_run():
        with prefect_client(engine.launcher.api_url) as client:
            return client.read_flow_run(UUID(view.run["flow_run_id"]))

    def seen() -> str:  # what CI shows when it fails: Prefect's state, the ledger's last records, the stack's logs
        state = flow_run().state
        kinds = [r["kind"] for r in records(engine, result.run_id)][-8:]
        said = [line for log in sorted((project / "var" / "log").glob("*.log"))
                for line in log.read_text(errors="replace").splitlines()
                if view.run["flow_run_id"] in line or result.run_id in line][-12:]
        return f"flow run {state.type.value} {state.name!r} ({state.message}); last records {kinds}; logs {said}"

    wait_for(lambda: flow_run().state.is_completed(), 60, "the flow run to complete", explain=seen)
    assert "crisis-pr" in flow_run().tags and "complaint" in flow_run().tags


def test_a_late_step_escalates_at_its_instants_and_stops_once_done(engine):
    # 10 minutes of due = 2 seconds: levels 1 s apart, so the report, given once three levels fired,
    # lands before the last level even when the machine stalls the test for up to 2 s (at 600× a
    # 1 s stall under a loaded machine let every level fire first; the 1 s lateness bound is unchanged)
    speed = 300
    run = engine.start("t-ladder", initiator="li-wei", speed=speed)
    ready_at = engine.view(run.run_id).steps["respond"]["ready_at"]
    expected = {"1": 5, "2": 10, "3.1": 15, "3.2": 20, "3.3": 25}  # minutes after ready, in playbook time
    due = {level: ready_at + timedelta(minutes=m) / speed for level, m in expected.items()}
    wait_for(lambda: len(records(engine, run.run_id, "escalation")) >= 3, 10, "three ladder levels")
    engine.report(run.run_id, "respond", HumanReport(actor="zhao-lei", values={"answer": "ok"}))
    [done] = records(engine, run.run_id, "step_done")
    watch_until = done["at"] + timedelta(seconds=1.5)
    time.sleep(max(0.0, (watch_until - engine.clock.now()).total_seconds()))

    fired = records(engine, run.run_id, "escalation")
    levels = [r["data"]["level"] for r in fired]
    assert levels == list(expected)[:len(levels)] and len(levels) >= 3  # in order, none skipped
    for record in fired:
        lateness = (record["at"] - due[record["data"]["level"]]).total_seconds()
        assert 0 <= lateness <= 1.0, (record["data"]["level"], lateness)
    assert all(r["at"] <= done["at"] for r in fired)  # nothing after the report...
    assert len(levels) < len(expected), "the report came after the last level: nothing left to prove"
    next_level = list(expected)[len(levels)]
    assert done["at"] < due[next_level] <= watch_until  # ...although the next level was due while we watched
    assert [r["data"]["notify"] for r in fired][:3] == [["assignee"], ["lead"], ["owner"]]
    assert step_states(engine, run.run_id)["respond"] == "done"


def test_parallel_steps_join_and_when_skips(engine):
    run = engine.start("t-parallel", initiator="li-wei", speed=1)
    assert step_states(engine, run.run_id) == {"left": "active", "right": "active", "join": "pending",
                                               "only-if-yes": "pending"}
    engine.report(run.run_id, "right", HumanReport(actor="zhang-min"))
    assert step_states(engine, run.run_id)["join"] == "pending"  # still waiting on `left`
    engine.report(run.run_id, "left", HumanReport(actor="zhao-lei", values={"choice": "no"}))
    states = step_states(engine, run.run_id)
    assert states["join"] == "active" and states["only-if-yes"] == "skipped"
    skipped = records(engine, run.run_id, "step_skipped")
    assert skipped[0]["data"]["reason"] == "its condition was not met"  # in words; the condition apart
    assert "steps.left.choice == 'yes'" in skipped[0]["data"]["when"]


def test_on_timeout_skip_interrupts_the_wait(engine):
    run = engine.start("t-parallel", initiator="li-wei", speed=1200)  # 10m due = 0.5 s
    engine.report(run.run_id, "left", HumanReport(actor="zhao-lei", values={"choice": "yes"}))
    # the report activates the step at once (its 0.5 s deadline may already have passed on a loaded machine)
    assert "only-if-yes" in [r["step_id"] for r in records(engine, run.run_id, "step_assigned")]
    wait_for(lambda: step_states(engine, run.run_id)["only-if-yes"] == "skipped", 10, "the deadline to skip the step")
    overdue = [r for r in records(engine, run.run_id, "step_overdue") if r["step_id"] == "only-if-yes"]
    assert [r["data"]["on_timeout"] for r in overdue] == ["skip"]


def test_http_step_retries_until_the_gateway_answers(engine, gateway):
    gateway.failures = 2
    run = engine.start("t-http", {}, initiator="li-wei")
    wait_for(lambda: step_states(engine, run.run_id)["confirm"] == "active", 90,
             "the http step to succeed and the person to be asked next")

    assert len(gateway.requests) == 3  # two 500s, then 200
    assert gateway.requests[-1]["json"] == {"rps": 500, "run": run.run_id}
    assert [r["data"]["reason"][:30] for r in records(engine, run.run_id, "step_attempt_failed")] == [
        f"POST {gateway.url}/limits answered HTTP 500"[:30]] * 2
    assert step_states(engine, run.run_id)["call"] == "done"
    assigned = records(engine, run.run_id, "step_assigned")
    assert assigned[-1]["step_id"] == "confirm"


def test_http_step_fails_the_run_when_retries_run_out(engine, gateway, project):
    gateway.failures = 100
    run = engine.start("t-http", {}, initiator="li-wei")
    wait_for(lambda: not engine.view(run.run_id).is_open, 90, "the run to end")
    view = engine.view(run.run_id)
    assert view.run["outcome"] == "failed"
    assert step_states(engine, run.run_id) == {"call": "failed", "confirm": "blocked", "tell": "blocked"}
    assert len(gateway.requests) == 4  # first try + 3 retries
    # the owner (sre-lead, whose primary is tom-becker) is told at once which step failed and why, so it can be
    # carried out by hand
    inbox = project / "var" / "inbox" / "tom-becker.jsonl"
    told = wait_for(lambda: [p for line in (inbox.read_text().splitlines() if inbox.exists() else [])
                             if "Automated step failed" in (p := json.loads(line))["title"]
                             and run.run_id in p["body"]], 30, "the owner's page")  # this run's (the inbox is shared)
    assert "(`call`)" in told[0]["body"] and "answered HTTP 500" in told[0]["body"]
    # the steps after it needed it: the run ended in the same change, and that one page says so, with how each
    # step stands; the owner gets no second "Finished" page for it
    assert "the run has ended (failed)" in told[0]["body"]
    assert "| call (`call`) | failed |" in told[0]["body"] and "(`tell`) | blocked |" in told[0]["body"]
    with engine.ledger.read() as conn:  # every page a change decides is queued in its transaction
        paged = [kind for (kind,) in conn.execute(sa.select(outbox.c.kind).where(outbox.c.run_id == run.run_id))]
    assert "step_failed" in paged and "run_finished" not in paged
    state = wait_for(lambda: (s := flow_run_state(engine, run.run_id)) and s.is_final() and s, 60, "the flow run to end")
    assert state.type.value == "FAILED" and "call: failed" in state.message  # not a green Completed


def flow_run_state(engine, run_id):
    from uuid import UUID

    flow_run_id = engine.view(run_id).run["flow_run_id"]
    if not flow_run_id:
        return None
    with engine.launcher._client() as client:
        return client.read_flow_run(UUID(flow_run_id)).state


def test_a_rejection_that_stands_ends_the_flow_run_rejected_and_a_cancel_cancelled(engine):
    rejected = engine.start("t-approval", initiator="zhang-min")
    engine.report(rejected.run_id, "approve", HumanReport(actor="liu-yang", outcome="rejected", note="not now"))
    state = wait_for(lambda: (s := flow_run_state(engine, rejected.run_id)) and s.is_final() and s, 90,
                     "the flow run to end")
    assert (state.type.value, state.name) == ("COMPLETED", "Rejected") and "approve: rejected" in state.message
    cancelled = engine.start("t-approval", initiator="zhang-min")
    wait_for(lambda: engine.view(cancelled.run_id).run["flow_run_id"], 60, "its flow run")
    engine.cancel(cancelled.run_id, "drill over", "li-wei")
    state = wait_for(lambda: (s := flow_run_state(engine, cancelled.run_id)) and s.is_final() and s, 60,
                     "the flow run to end")
    assert state.type.value == "CANCELLED"


def _lines(inbox: Path, name: str) -> list[dict]:
    path = inbox / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_drill_simulates_http_and_notify_steps_unless_started_live_and_its_pages_say_drill(engine, gateway, project):
    inbox = project / "var" / "inbox"
    gateway.failures = 0
    before = len(gateway.requests)
    drill = engine.start("t-http", {}, initiator="drill", speed=600,
                         trigger={"kind": "drill", "late": []})
    wait_for(lambda: step_states(engine, drill.run_id)["confirm"] == "active", 90, "the simulated call")
    wait_for(lambda: step_states(engine, drill.run_id)["tell"] == "done", 90, "the simulated message")
    assert len(gateway.requests) == before  # the gateway heard nothing
    call, tell = records(engine, drill.run_id, "step_simulated")
    assert call["data"]["request"] == {"method": "POST", "url": f"{gateway.url}/limits",
                                       "json": {"rps": 500, "run": drill.run_id}}
    assert engine.view(drill.run_id).result("call")["status"] == 200  # the first expected status
    # the customers were not texted: the message and whom it would have reached are recorded instead
    assert [m for m in _lines(inbox, "users-sms") if drill.run_id in m["title"]] == []
    message = tell["data"]["message"]
    assert (message["title"], message["body"]) == (  # run.url: the run's page, which a person can open
        f"Limits set for {drill.run_id}", f"The gateway answered 200. Run: http://127.0.0.1:8000/runs/{drill.run_id}")
    assert message["to"][0] == "channel users-sms" and message["to"][1].startswith("person ")
    result = engine.view(drill.run_id).result("tell")
    assert (result["delivered"], result["reached"], result["failed"]) == (True, 2, 0)
    # its pages still go to the responders, and say it is a drill
    oncall = message["to"][1].removeprefix("person ")
    [page] = wait_for(lambda: [m for m in _lines(inbox, oncall) if drill.run_id in m["body"]] or None, 30,
                      "the confirm page")
    assert page["title"].startswith("[DRILL] [P2] ") and "a drill" in page["body"]

    live = engine.start("t-http", {}, initiator="drill", speed=600,
                        trigger={"kind": "drill", "late": [], "live": True})
    wait_for(lambda: step_states(engine, live.run_id)["tell"] == "done", 90, "the real call and message")
    assert len(gateway.requests) == before + 1 and records(engine, live.run_id, "step_simulated") == []
    assert [m["title"] for m in _lines(inbox, "users-sms") if live.run_id in m["title"]] == [
        f"[DRILL] [P2] Limits set for {live.run_id}"]  # sent for real, and said to be a drill's, as its pages are


def test_a_compressed_run_that_is_no_drill_sends_its_messages_and_its_pages_do_not_say_drill(engine, gateway, project):
    inbox = project / "var" / "inbox"
    gateway.failures = 0
    run = engine.start("t-http", {}, initiator="li-wei", speed=600)
    wait_for(lambda: step_states(engine, run.run_id)["tell"] == "done", 90, "the message")
    assert [m["title"] for m in _lines(inbox, "users-sms") if run.run_id in m["title"]] == [
        f"[P2] Limits set for {run.run_id}"]
    assert records(engine, run.run_id, "step_simulated") == []
    [page] = wait_for(lambda: [m for path in inbox.glob("*.jsonl") for m in _lines(inbox, path.stem)
                               if "Assigned to you: confirm" in m["title"] and run.run_id in m["body"]] or None, 30,
                      "the confirm page")
    assert not page["title"].startswith("[DRILL]") and "drill" not in page["body"]
    assert "time runs 600× faster" in page["body"]


def test_four_eyes_approval_refuses_the_initiator(engine):
    run = engine.start("t-approval", initiator="zhang-min")
    with pytest.raises(ReportRefused, match="started this run and cannot approve it"):
        engine.report(run.run_id, "approve", HumanReport(actor="zhang-min"))
    with pytest.raises(ReportRefused, match="not an approver"):
        engine.report(run.run_id, "approve", HumanReport(actor="zhao-lei"))
    assert engine.report(run.run_id, "approve", HumanReport(actor="liu-yang")) == "active"
    with pytest.raises(ReportRefused, match="already approved"):
        engine.report(run.run_id, "approve", HumanReport(actor="liu-yang"))
    assert engine.report(run.run_id, "approve", HumanReport(actor="guo-jing")) == "done"
    assert engine.view(run.run_id).result("approve")["approvers"] == ["liu-yang", "guo-jing"]


def test_inputs_are_typed_and_checked_before_anything_is_written(engine):
    before = record_count(engine, "run_started")  # other runs of this package may still be writing theirs
    with pytest.raises(InputRefused) as refused:
        engine.start("crisis-pr", {"mentions_per_day": "lots", "colour": "red"}, initiator="li-wei")
    assert "input `mentions_per_day`: expected integer, got 'lots'" in refused.value.problems
    assert any("unknown input `colour`" in p for p in refused.value.problems)
    assert record_count(engine, "run_started") == before


def test_a_rejection_blocks_everything_downstream_but_not_a_skip(engine):
    run = engine.start("t-parallel", initiator="li-wei")
    engine.report(run.run_id, "left", HumanReport(actor="zhao-lei", outcome="rejected", note="cannot"))
    engine.report(run.run_id, "right", HumanReport(actor="zhang-min"))
    states = step_states(engine, run.run_id)
    assert states["join"] == "blocked" and states["only-if-yes"] == "blocked"
    view = engine.view(run.run_id)
    assert not view.is_open and view.run["outcome"] == "rejected"
    assert "upstream: left rejected" in view.steps["join"]["note"]


def test_optional_fields_left_out_read_as_none_in_later_templates(engine):
    run = engine.start("t-parallel", initiator="li-wei")
    engine.report(run.run_id, "left", HumanReport(actor="zhao-lei", values={"choice": "no"}))
    assert engine.view(run.run_id).result("left") == {"choice": "no", "count": None, "evidence": []}


def test_command_wait_and_check_steps_chain_on_compressed_time(engine):
    run = engine.start("t-kinds", {"uplift": "12.5"}, initiator="li-wei", speed=600)  # the 10m wait = 1 s
    wait_for(lambda: step_states(engine, run.run_id)["roll-out"] == "active", 90, "the branch after the check")
    view = engine.view(run.run_id)
    assert view.result("measure")["stdout"] == "measured 12.5\n" and view.result("measure")["exit_code"] == 0
    waited = (view.steps["settle"]["finished_at"] - view.steps["settle"]["ready_at"]).total_seconds()
    assert 1.0 <= waited <= 2.0
    assert view.result("decide") == {"result": True}
    assert view.state("learn") == "skipped"
    assert "branch of decide not taken" in view.steps["learn"]["note"]


def test_a_scheduled_sop_gets_flow_runs_from_prefects_scheduler_and_they_open_runs(engine):
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Scheduled

    from flows.prefect.deployments import deployment_name
    from flows.prefect.names import pool_name

    name = deployment_name("t-sched", pool_name(engine.library))
    only_scheduled = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED"])))

    def scheduled():
        with prefect_client(engine.launcher.api_url) as client:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
                flow_run_filter=only_scheduled, sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=5)

    upcoming = wait_for(scheduled, 90, "Prefect's scheduler to create the SOP's scheduled flow runs", interval=1)
    times = [run.expected_start_time for run in upcoming]
    assert all(t.minute % 5 == 0 and t.second == 0 for t in times)  # on the cron's instants

    # bring the next one forward to now (instead of waiting for the next 5-minute mark)
    first = upcoming[0]
    with prefect_client(engine.launcher.api_url) as client:
        client.set_flow_run_state(first.id, Scheduled(scheduled_time=engine.clock.now()), force=True)
    run_id = wait_for(lambda: engine.run_for_flow_run(str(first.id)), 90, "the scheduled flow run to open a run")
    view = engine.view(run_id)
    assert view.run["initiator"] == "schedule"
    assert json.loads(view.run["inputs"])["note"] == "from the schedule"  # the trigger's inputs, not the default
    wait_for(lambda: step_states(engine, run_id)["look"] == "active", 30, "the first step to be assigned")


def _run_with_its_flow_run_killed(engine, state):  # noqa: ANN001, ANN202
    """A t-relaunch run whose flow run suspended on `ack` and was then forced into ``state``; (run, dead id)."""
    run = engine.start("t-relaunch", initiator="li-wei")
    wait_for(lambda: engine.view(run.run_id).run["flow_run_id"], 60, "the flow run to be created")
    dead = engine.view(run.run_id).run["flow_run_id"]
    with prefect_client(engine.launcher.api_url) as client:
        wait_for(lambda: client.read_flow_run(UUID(dead)).state.is_paused(), 90, "the flow run to suspend")
        client.set_flow_run_state(UUID(dead), state, force=True)
    return run, dead


def test_a_run_whose_flow_run_crashed_gets_another_when_the_person_answers(engine):
    """Prefect can lose a flow run (a crash, its server busy): the next report starts another, which carries on."""
    from prefect.states import Crashed

    run, dead = _run_with_its_flow_run_killed(engine, Crashed(message="simulated: the process vanished"))

    engine.report(run.run_id, "ack", HumanReport(actor="zhang-min"))
    wait_for(lambda: not engine.view(run.run_id).is_open, 120, "the run to finish on a new flow run")
    view = engine.view(run.run_id)
    assert view.run["outcome"] == "done" and view.result("after")["stdout"] == "after\n"
    assert view.run["flow_run_id"] != dead
    created = [r["data"] for r in records(engine, run.run_id, "flow_run_created")]
    assert created[-1]["replaces"] == dead and created[-1]["reason"].startswith("CRASHED")


def test_a_flow_run_lost_while_nobody_reports_is_replaced_by_the_nudgers_sweep(engine, stack):
    from prefect.states import Failed

    run, dead = _run_with_its_flow_run_killed(engine, Failed(message="simulated: 409 on its suspend input"))

    wait_for(lambda: engine.view(run.run_id).run["flow_run_id"] != dead, stack.sweep_every + 60,
             "sop serve's sweep to replace the lost flow run")
    created = [r["data"] for r in records(engine, run.run_id, "flow_run_created")]
    assert created[-1]["replaces"] == dead and created[-1]["reason"].startswith("FAILED")
    engine.report(run.run_id, "ack", HumanReport(actor="zhang-min"))
    wait_for(lambda: not engine.view(run.run_id).is_open, 120, "the run to finish on the new flow run")
    assert engine.view(run.run_id).run["outcome"] == "done"


ASSESS = {"severity": "high", "topic": "late parcels", "category": "delivery", "platforms": "weibo", "trend": "rising",
          "kol_involved": False}


def test_who_the_engine_pages_to_take_a_step_over_may_report_it_and_a_stranger_may_not(engine):
    """From the terminal as on the page: the people a step's ladder names (crisis-pr escalates to ops-director)
    and whoever a step was handed to may report it; someone the step has nothing to do with may not."""
    from flows.language.actors import Actor

    def as_cli(person: str) -> HumanReport:
        return HumanReport(actor=Actor(person, via="cli"), values=dict(ASSESS), evidence=["https://dash.example/q/1"])

    run = engine.start("crisis-pr", {"brand": "acme-ladder"}, initiator="li-wei", launch=False).run_id
    with pytest.raises(ReportRefused, match="zhao-lei may not act on step `assess`"):
        engine.report(run, "assess", as_cli("zhao-lei"), nudge=False)
    assert engine.report(run, "assess", as_cli("zhang-min"), nudge=False) == "done"  # ops-director: on its ladder

    handed = engine.start("crisis-pr", {"brand": "acme-handed"}, initiator="li-wei", launch=False).run_id
    engine.hand_over(handed, "assess", "chen-jie", "tom-becker", "you know the carrier")  # the owner, to anyone
    assert engine.report(handed, "assess", as_cli("tom-becker"), nudge=False) == "done"


def test_a_step_helped_early_tells_whoever_the_help_paged_when_it_is_done(engine):
    """Help asked at once pages crisis-pr's 100% level (the lead, chen-jie; the backup, sara-lopez) though only the
    armed 50% timer was claimed: those are who its end is told to, not the first levels by count."""
    from flows.language.actors import Actor

    run = engine.start("crisis-pr", {"brand": "acme-help"}, initiator="li-wei", launch=False).run_id
    engine.ask_for_help(run, "assess", "wang-fang", "the volume is beyond me")
    engine.report(run, "assess", HumanReport(actor=Actor("wang-fang", via="cli"), values=dict(ASSESS),
                                             evidence=["https://dash.example/q/1"]), nudge=False)

    def told_done() -> set[str]:
        return {sent["recipient"] for r in records(engine, run, "notification")
                if r["step_id"] == "assess" and r["data"]["notification"] == "step_done" for sent in r["data"]["results"]}

    wait_for(lambda: {"chen-jie", "sara-lopez"} <= told_done(), 30, "the helped step's end told to who helped",
             explain=lambda: str(told_done()))
