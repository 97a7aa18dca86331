"""The ledger's vocabulary: the kinds of record, the states of runs and steps, the kinds of timer.

One home for these names: every writer (the engine, the timers, the launcher, the
triggers, the pager) and every reader (the audit's handlers, the board, the drill) uses
them from here, so a new kind of record or state is added in one place. They are ``StrEnum``
members: each compares, hashes and serialises as its plain string, so the records written
(and their hashes) are the strings they always were.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """Where a run is: open (``running``) or closed, and how."""

    RUNNING = "running"
    FINISHED = "finished"  # every step ended; ``outcome`` says done, failed or rejected
    CANCELLED = "cancelled"


class StepState(StrEnum):
    """Where a step is. A step starts ``pending`` (a fallback: ``standby``) and ends in a terminal state."""

    STANDBY = "standby"      # a fallback, waiting to be needed (its step timed out) or not (skipped at the end)
    PENDING = "pending"      # waiting on the steps it needs
    READY = "ready"          # an automated step, waiting for a flow run to execute it
    RUNNING = "running"      # an automated step executing
    ACTIVE = "active"        # a person is asked (human), or a timer runs (wait)
    DONE = "done"
    REJECTED = "rejected"    # a person refused (an approval said no)
    SKIPPED = "skipped"      # not run by design: `when` false, branch not taken, on_timeout skip; counts as finished
    BLOCKED = "blocked"      # not run because a step it needs failed or was rejected (propagates downstream)
    FAILED = "failed"
    TIMED_OUT = "timed_out"  # its due passed with on_timeout: fallback; the fallback takes over
    CANCELLED = "cancelled"  # the run was cancelled


S = StepState
#: states a step never leaves
TERMINAL_STEP: tuple[StepState, ...] = (S.DONE, S.REJECTED, S.SKIPPED, S.BLOCKED, S.FAILED, S.TIMED_OUT, S.CANCELLED)
#: states of a step the run still waits on
WAITING_STEP: tuple[StepState, ...] = (S.PENDING, S.READY, S.RUNNING, S.ACTIVE)
#: a run's statuses while it is open
OPEN_RUN: tuple[RunStatus, ...] = (RunStatus.RUNNING,)

#: state -> the states it may move to (a run's cancellation takes every open step to cancelled)
TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    S.STANDBY: frozenset({S.PENDING, S.SKIPPED, S.CANCELLED}),
    # activation: a human or wait step becomes active, an automated one ready, a check decides at once;
    # or it never runs (blocked upstream, skipped by `when` or a branch, failed to evaluate)
    S.PENDING: frozenset({S.ACTIVE, S.READY, S.DONE, S.FAILED, S.SKIPPED, S.BLOCKED, S.CANCELLED}),
    S.READY: frozenset({S.RUNNING, S.DONE, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.DONE, S.FAILED, S.CANCELLED}),
    S.ACTIVE: frozenset({S.DONE, S.REJECTED, S.SKIPPED, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    **{state: frozenset() for state in TERMINAL_STEP},
    # a rework round (a human step's `on_reject`) sends the steps of its loop back to pending, never further
    **{state: frozenset({S.PENDING}) for state in (S.DONE, S.REJECTED, S.SKIPPED)},
}


def may_move(old: str, new: str) -> bool:
    """True when a step in state ``old`` may move to ``new``."""
    return StepState(new) in TRANSITIONS[StepState(old)]


class TimerKind(StrEnum):
    """What a durable timer is for."""

    DUE = "due"                    # a step's due instant (on_timeout acts here)
    LADDER = "ladder"              # one level of a step's escalation ladder
    WAIT = "wait"                  # a wait step's end
    RUN_DEADLINE = "run_deadline"  # the run's own deadline
    CADENCE = "cadence"            # a status cadence's period ends: the owner is asked for an update (level: n)
    CADENCE_CHECK = "cadence_check"  # the ask's grace is over: no update since, and it is missed (level: n)
    HOLD = "hold"                  # a step's hold reaches its maximum: it ends and escalates (level: hold<n>)


class RecordKind(StrEnum):
    """The kinds of record in the hash chain (``records.kind``)."""

    # a run
    RUN_STARTED = "run_started"
    TRIGGER_REPEATED = "trigger_repeated"  # a repeat attached to the open run with the same dedup key
    ALERT_RESOLVED = "alert_resolved"
    RUN_OVERDUE = "run_overdue"
    RUN_FINISHED = "run_finished"
    RUN_CANCELLED = "run_cancelled"
    # its steps becoming ready, assigned, waiting, running
    STEP_READY = "step_ready"
    STEP_ASSIGNED = "step_assigned"
    STEP_WAITING = "step_waiting"
    STEP_STARTED = "step_started"
    STEP_ATTEMPT_FAILED = "step_attempt_failed"  # one attempt of an automated step (retries follow)
    STEP_ATTEMPT_STARTED = "step_attempt_started"  # an attempt of a ``once`` step began: one cut mid-way shows
    # people
    APPROVAL = "approval"
    REPORT_REFUSED = "report_refused"
    STEP_CLAIMED = "step_claimed"    # a member of the role said "I'll take it" (counts as acknowledged)
    HELP_ASKED = "help_asked"        # the holder asked for help: the step escalates to its next level now
    STEP_HANDED_OVER = "step_handed_over"  # the holder (or the role's lead) gave an active step to another person
    STEP_REOPENED = "step_reopened"  # a rejection sent the work back (on_reject): the step is asked again, round N
    STEP_HELD = "step_held"          # a step is put on hold (its clock stops) for a declared reason, until released
    STEP_RELEASED = "step_released"  # its hold ends (released by a person, its maximum passed, or the step ended):
                                     # its due instant moved by the time held (``run_hold: true``: its run's hold)
    RUN_HELD = "run_held"            # a run is put on hold: its deadline and cadence stop, its active steps are held
                                     # (each a step_held with ``run_hold: true``), and steps it activates start held
    RUN_RELEASED = "run_released"    # its hold ends: the run's deadline moved by the time held, its steps released
    # status cadences (an SOP's `cadence`, or its class's)
    STATUS_ASKED = "status_asked"      # a period ended: the owner is asked for a status update
    STATUS_UPDATE = "status_update"    # a person posted a status update on the run
    STATUS_MISSED = "status_missed"    # no update in the period and its grace: escalated
    STATUS_ASKS_STOPPED = "status_asks_stopped"  # max_missed misses in a row: no more asks until an update comes
    CADENCE_SNOOZED = "cadence_snoozed"  # the owner pushed the next ask, with a reason
    SIGN_IN_SENT = "sign_in_sent"    # a sign-in link went to a person's own contacts
    SIGNED_IN = "signed_in"          # a person's browser session began (sign-in link, step link or single sign-on)
    SIGNED_OUT = "signed_out"        # a person ended their browser session
    LINK_REFUSED = "link_refused"    # a personal link that was forged, expired, used or not theirs
    ONCALL_OVERRIDE = "oncall_override"  # a person stands in as a role's primary for a while (no run)
    ONCALL_OVERRIDE_ENDED = "oncall_override_ended"  # an override ended early (or withdrawn before it began)
    # deadlines and pages
    STEP_OVERDUE = "step_overdue"
    ESCALATION = "escalation"
    NOTIFICATION = "notification"
    # a step ending: step_<terminal state>
    STEP_DONE = "step_done"
    STEP_REJECTED = "step_rejected"
    STEP_SKIPPED = "step_skipped"
    STEP_BLOCKED = "step_blocked"
    STEP_FAILED = "step_failed"
    STEP_TIMED_OUT = "step_timed_out"
    # the Prefect side's bookkeeping
    FLOW_RUN_CREATED = "flow_run_created"
    FLOW_RUN_BOUND = "flow_run_bound"
    FLOW_RUN_GIVEN_UP = "flow_run_given_up"
    FLOW_RUN_RESCUED = "flow_run_rescued"  # left Pending or Running by a dead or stopping executor: put back in its queue, once
    LAUNCH_GIVEN_UP = "launch_given_up"  # its flow run could not be created: no automated step will start
    STEP_SIMULATED = "step_simulated"  # a drill's http, command or notify step: what would have been sent, not sent
    RESUME_REFUSED = "resume_refused"  # a resume of a flow run the engine did not sign (the Prefect UI's form, a forged call)
    # silences (no run: a person's decision that matching triggers start none, for a while)
    SILENCE_CREATED = "silence_created"    # who, why, the matchers, from when until when
    SILENCE_ENDED = "silence_ended"        # ended early by a person, with a reason (expiry writes nothing)
    TRIGGER_SILENCED = "trigger_silenced"  # a signal that would have started (or attached to) a run, and the silence
    # an SOP's trigger matched a signal that could not start it (its inputs do not render or fit): no run; its owner
    # is paged, once an hour per SOP, trigger and problem (``paged``; ``count``: refusals of that hour so far)
    TRIGGER_REFUSED = "trigger_refused"
    # follow-ups (an SOP's `follow_ups`: what a run's end starts), each recorded on the run that ended
    FOLLOW_UP_STARTED = "follow_up_started"  # the run it started (or attached to), its SOP and the window it has
    FOLLOW_UP_SKIPPED = "follow_up_skipped"  # not started by design: its `when` is false, or the run is a drill
    FOLLOW_UP_REFUSED = "follow_up_refused"  # could not start: inputs that do not render or fit, an unknown SOP, a loop
    # the ledger's own (lane 0): every lane's head at one instant, what an auditor anchors (docs/audit.md)
    CHECKPOINT = "checkpoint"

    @classmethod
    def step_ended(cls, state: str) -> RecordKind:
        """The record of a step ending in ``state`` (``done`` → ``step_done``)."""
        return cls(f"step_{state}")


#: a run's ``trigger`` kind for a drill (``sop drill``, ``sop demo``, the board's drill toggle)
DRILL = "drill"


def is_drill(trigger: Any) -> bool:
    """Whether a run is a drill: its trigger (its ``trigger`` column, its ``run_started`` record) says ``kind: drill``,
    as ``sop drill``, ``sop demo`` and any start that says so write it. Its speed alone does not make it one: a site
    may run everything on compressed time."""
    return isinstance(trigger, dict) and trigger.get("kind") == DRILL


__all__ = ["DRILL", "OPEN_RUN", "TERMINAL_STEP", "TRANSITIONS", "WAITING_STEP", "RecordKind", "RunStatus", "StepState",
           "TimerKind", "is_drill", "may_move"]


#: how the timer service words the end of a step its deadline ended (``on_timeout``: skip, fail, a fallback), the
#: start of its row's note: what tells a step that timed out from one that failed or was skipped late on its own
TIMED_OUT_NOTE = "timed out"
