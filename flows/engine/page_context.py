"""What a page's templates read: the context of one page about one run (``notifications.message.Context``).

The pager (``flows.engine.paging``) decides who a page reaches and delivers it; this module fills in what its
message says: the run, the step and its form, how late it is (:func:`time_left`, in SOP time), the hold, the
summary of a finished run. The people's pages and the load view say time left the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flows.engine.view import RunView, deadline_met, instructions
from flows.language.config import Site
from flows.language.durations import format_duration, format_duration_roughly
from flows.language.oncall import OnCall
from flows.language.steps.base import StepBase
from flows.language.steps.human import HumanStep
from flows.ledger.vocabulary import TIMED_OUT_NOTE, RunStatus, StepState


def _reason(run: dict[str, Any], page: Any) -> str | None:
    """Why a run was cancelled, why its automated steps cannot start, or why one failed (the page says)."""
    if page.kind in ("automation_failed", "run_cancelled", "step_failed") and (page.level or {}).get("reason"):
        reason = page.level["reason"]  # a cancel's whole reason (the run's outcome holds its start)
    elif run["status"] == RunStatus.CANCELLED:
        reason = run["outcome"]
    else:
        return None
    # the page says "was cancelled" itself (the outcome, and pages queued before 2026-12, begin "cancelled: ")
    return reason.removeprefix("cancelled: ") if run["status"] == RunStatus.CANCELLED else reason


def _timed_out(view: RunView, step: StepBase) -> dict[str, Any]:
    """What a step's deadline did to it, for ``step_timed_out`` and ``step_withdrawn``: its ``on_timeout``, the
    stand-in it fell back to (title and assignee), and the steps that need it (their titles: what follows)."""
    fallback = view.sop.step(step.fallback) if step.fallback else None
    return {"on_timeout": step.on_timeout, "fallback": fallback.name if fallback else None,
            "fallback_assignee": getattr(fallback, "assignee", None),
            "needed_by": tuple(s.name for s in view.sop.steps if step.id in view.sop.dependencies(s))}


def _summary_row(view: RunView, step: StepBase) -> Any:
    """One step as a run's summary lists it (``SummaryRow``). A step its deadline ended timed out, and is late as the
    audit counts it (its row keeps no verdict: it was never reported); a step skipped or not run says why, in the
    engine's words (``its condition was not met``)."""
    from notifications import SummaryRow

    row = view.steps[step.id]
    state = row["state"]  # a step failed or skipped late for another reason (its own error, a `when`) did not time out
    timed_out = state == StepState.TIMED_OUT or (state in (StepState.SKIPPED, StepState.FAILED)
                                                  and (row["note"] or "").startswith(TIMED_OUT_NOTE))
    return SummaryRow(id=step.id, title=step.name, state=state, actor=row["actor"],
                      met_deadline=False if timed_out else row["deadline_met"], timed_out=timed_out,
                      reason=row["note"] if state in (StepState.SKIPPED, StepState.BLOCKED) and not timed_out else None)


def _run_deadline(view: RunView) -> dict[str, Any]:
    """A finished run's deadline for its page (``RunInfo``): met or not, and how long after it it ended (SOP time)."""
    run = view.run
    ended, deadline = run["finished_at"], run["deadline_at"]
    if run["status"] != RunStatus.FINISHED or ended is None:
        return {}
    met = deadline_met(deadline, run["outcome"], ended)
    over = (ended - deadline) * view.speed if met is False and ended > deadline else None
    return {"deadline_met": met, "over_deadline": format_duration(over) if over is not None else None}


def _steps(view: RunView, ids: list[str], now: datetime) -> tuple[Any, ...]:
    """The reader's steps a page lists (``HeldStep``), each with its due as it stands now."""
    from notifications import HeldStep

    return tuple(HeldStep(id=s, title=view.sop.step(s).name, due_at=view.steps[s]["due_at"],
                          time_left=time_left(view.steps[s]["due_at"], now, view.speed)) for s in ids)


def _hold(view: RunView, facts: dict[str, Any] | None, now: datetime) -> Any:
    """A hold page's ``hold`` (``flows.engine.hold_pages``): its facts, each step with its due as it stands now."""
    from notifications import HoldInfo

    facts = facts or {}
    steps = _steps(view, facts.get("steps", []), now)
    max_at = facts.get("max_at")
    return HoldInfo(reason=facts.get("reason") or "-", steps=steps, by=facts.get("by"), note=facts.get("note"),
                    whole_run=bool(facts.get("whole_run")), max_at=datetime.fromisoformat(max_at) if max_at else None)


#: within this much of its due instant (SOP time) a step is "due now": neither "0s left" nor "0s overdue"
DUE_NOW = timedelta(seconds=1)


def time_left(due_at: datetime | None, now: datetime, speed: float, *, roughly: bool = False) -> str | None:
    """``"18m32s left"`` / ``"due now"`` / ``"12m overdue"`` in SOP time (a compressed run shows playbook minutes);
    ``roughly``: for a title (``"4h left"`` for 3h59m32s, :func:`format_duration_roughly`)."""
    if due_at is None:
        return None
    if due_now(due_at, now, speed):
        return "due now"
    delta = (due_at - now) * speed
    words = format_duration_roughly if roughly else format_duration
    return f"{words(delta)} left" if delta > timedelta(0) else f"{words(-delta)} overdue"


def due_now(due_at: datetime | None, now: datetime, speed: float) -> bool:
    """Within :data:`DUE_NOW` of its due instant (SOP time): :func:`time_left` says "due now"."""
    return due_at is not None and abs((due_at - now) * speed) < DUE_NOW


def overdue(due_at: datetime | None, now: datetime, speed: float) -> bool:
    """At its due instant or past it (SOP time; :func:`time_left` says "due now" within :data:`DUE_NOW` of it): a
    ladder's rung at 100% of the due finds the step late."""
    return due_at is not None and (now - due_at) * speed > -DUE_NOW


def page_context(site: Site, view: RunView, page: Any, step: StepBase | None, now: datetime,
                 on_call: Callable[[str], OnCall], step_link: Callable[[str], str | None] | None) -> Any:
    """The notification context of a page about ``view`` (see notifications.message.Context), read ``now``:
    ``on_call``, who the page's roles meant; ``step_link``, each reader's personal link (None: none)."""
    from notifications import (
        ApprovalInfo,
        Context,
        FormField,
        LevelInfo,
        RecipientInfo,
        RunInfo,
        SopInfo,
        StepInfo,
    )
    from notifications.message import HAND_OVER_KINDS

    run = view.run
    base = site.settings.base_url.rstrip("/")
    status = run["outcome"] if run["status"] == RunStatus.FINISHED else run["status"]
    run_info = RunInfo(id=run["id"], url=f"{base}/runs/{run['id']}", started_at=run["started_at"],
                       deadline_at=run["deadline_at"], initiator=run["initiator"], speed=view.speed,
                       status=status, reason=_reason(run, page),
                       cancelled_by=(page.level or {}).get("by") if page.kind == "run_cancelled" else None,
                       drill=view.is_drill, subject=view.subject, **_run_deadline(view))
    step_info = None
    if step is not None:
        row = view.steps[step.id]
        form_of = getattr(step, "form", {})
        form = tuple(FormField.from_spec(n, f) for n, f in form_of.items())
        approval = None
        if isinstance(step, HumanStep) and step.approval:
            approval = ApprovalInfo(approvers=tuple(step.approval.approvers), count=step.approval.count,
                                    given=len(view.approvals(step.id)))
        result = view.result(step.id)
        assignee = getattr(step, "assignee", None)
        holder = row.get("claimed_by") or (on_call(assignee).primary if assignee in site.roles else assignee)
        person = site.people.get(holder) if holder else None
        step_info = StepInfo(
            id=step.id, title=step.name, description=instructions(view, step, site),
            assignee=getattr(step, "assignee", None), due_at=row["due_at"],
            time_left=time_left(row["due_at"], now, view.speed), form=form,
            time_left_short=time_left(row["due_at"], now, view.speed, roughly=True),
            overdue=overdue(row["due_at"], now, view.speed), due_now=due_now(row["due_at"], now, view.speed),
            evidence_required=bool(getattr(step, "evidence", False)), approval=approval,
            actor=row["actor"], finished_at=row["finished_at"],
            values={k: form_of[k].labelled(v) for k, v in result.items() if k in form_of},  # choices: labels
            holder=holder, holder_contact=person.email if person else None,
            handed_by=(page.level or {}).get("by") if page.kind in HAND_OVER_KINDS else None,
            handover_note=(page.level or {}).get("note") if page.kind == "handed_over" else None,
            round=row.get("round") or 1,
            sent_back=row["note"] if (row.get("round") or 1) > 1 and row["state"] == StepState.ACTIVE else None,
            **(_timed_out(view, step) if page.kind in ("step_timed_out", "step_withdrawn") else {}))
    level = None
    if page.level and "key" in page.level and page.kind not in HAND_OVER_KINDS:  # (a hand-over carries its facts,
        # not a level) how late the *step* is reads from time_left; late_by is left to the templates' default
        level = LevelInfo(key=page.level["key"], message=page.level["message"], late_by=None,
                          asked_by=page.level.get("asked_by"), every=page.level.get("every"),
                          ask=page.level.get("ask"), hold_reason=page.level.get("hold_reason"),
                          max_hold=page.level.get("max_hold"), held_by=page.level.get("held_by"),
                          text=page.level.get("text"), by=page.level.get("by"))
    # a hold's pages, and a step assigned or handed over while on hold (flows.engine.hold_pages)
    hold = _hold(view, page.level["hold"], now) if (page.level or {}).get("hold") else None
    summary = None
    if page.kind in ("run_finished", "run_overdue") or (page.kind == "step_failed" and not view.is_open):
        summary = tuple(_summary_row(view, s) for s in view.sop.steps)
    return Context(kind=page.kind, sop=SopInfo(id=view.sop.id, title=view.sop.title, class_=view.sop.class_),
                   run=run_info, recipient=RecipientInfo(id="-", name="-"), api_base_url=base,
                   step=step_info, level=level, summary=summary, hold=hold,
                   yours=_steps(view, page.level["steps"], now) if page.kind == "run_overdue_holder" else (),
                   step_link=step_link)
