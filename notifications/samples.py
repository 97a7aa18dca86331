"""A filled-in context for every kind: for trial renders (``validate_overrides``), ``sop notify-test``
and the examples in docs/notifications.md.

Every optional part is present, so a trial render walks every branch a template has.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifications.message import (
    ApprovalInfo,
    Context,
    FormField,
    HeldStep,
    HoldInfo,
    LevelInfo,
    RecipientInfo,
    RunInfo,
    SopInfo,
    StepInfo,
    SummaryRow,
)

STARTED = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
#: the kinds of a step its deadline ended (told to its owner, and to whom it was with)
TIMED_OUT = ("step_timed_out", "step_withdrawn")


def sample(kind: str, recipient: RecipientInfo | None = None, api_base_url: str = "http://127.0.0.1:8000") -> Context:
    """A realistic crisis-PR context for ``kind`` (every optional field filled)."""
    recipient = recipient or RecipientInfo(id="wang-fang", name="Wang Fang", timezone="Asia/Shanghai")
    run = RunInfo(
        id="r-20250301-0001",
        url=f"{api_base_url.rstrip('/')}/runs/r-20250301-0001",
        started_at=STARTED,
        deadline_at=STARTED + timedelta(hours=2),
        initiator="alertmanager",
        speed=1.0,
        subject="lumi",
        status={"run_finished": "completed", "run_cancelled": "cancelled"}.get(kind, "running"),
        reason={
            "run_cancelled": "duplicate of run r-20250301-0000",
            "automation_failed": "cannot start automated steps: Prefect did not create the flow run: "
            "Flow run parameters must be less than 524,288 bytes when serialized",
            "step_failed": "POST http://gateway.internal/v1/circuit-breakers failed after 4 tries: "
            "[Errno 111] Connection refused",
        }.get(kind),
        cancelled_by="chen-jie" if kind == "run_cancelled" else None,
        deadline_met=False if kind == "run_finished" else None,
        over_deadline="18m" if kind == "run_finished" else None,
    )
    step = StepInfo(
        id="assess",
        title="Assess scope and sentiment",
        description="Read the top 50 negative mentions and the dashboard; rate the severity.",
        assignee="pr-oncall",
        due_at=STARTED + timedelta(minutes=20),
        time_left={"overdue": "12m overdue", "escalated": "5m overdue", "step_done": None}.get(kind, "18m left"),
        overdue=kind in ("overdue", "escalated"),
        form=(
            FormField(
                name="severity",
                type="string",
                enum=("low", "medium", "high"),
                required=True,
                description="how bad it is",
            ),
            FormField(name="note", type="string", required=False, description="anything the next step needs"),
        ),
        evidence_required=True,
        approval=ApprovalInfo(approvers=("pr-lead",), count=1, given=0),
        actor="wang-fang" if kind == "step_done" else None,
        finished_at=STARTED + timedelta(minutes=14) if kind == "step_done" else None,
        values={"severity": "high"} if kind == "step_done" else {},
        holder="wang-fang" if kind in ("escalated", "step_claimed") else "sara-lopez" if kind == "handed_away" else None,
        handed_by="chen-jie" if kind in ("handed_over", "handed_away") else None,
        handover_note="Sara knows the customer; over to her." if kind == "handed_over" else None,
        holder_contact="wang.fang@example.com" if kind in ("escalated", "step_claimed")
        else "sara.lopez@example.com" if kind == "handed_away" else None,
        on_timeout="fallback:draft-alone" if kind in TIMED_OUT else None,
        fallback="Draft without the assessment" if kind in TIMED_OUT else None,
        fallback_assignee="pr-lead" if kind in TIMED_OUT else None,
        needed_by=("Publish a holding statement",) if kind in TIMED_OUT else (),
    )
    level = None
    if kind in ("reminder", "escalated", "overdue"):
        level = LevelInfo(
            key={"reminder": "1", "escalated": "2", "overdue": "3.1"}[kind],
            message=kind,
            late_by=None if kind == "reminder" else "12m",
        )
    if kind in ("status_due", "status_missed"):
        level = LevelInfo(key="2", message=kind, every="30m", ask="Mentions per hour, the trend, what goes out next.")
    if kind == "status_update":
        level = LevelInfo(key="update", message=kind, every="30m", by="chen-jie",
                          text="Holding statement out on Weibo at 14:20.\nMentions flat since; next: the KOL's reply.")
    summary = None
    if kind in ("run_finished", "run_overdue"):
        summary = (
            SummaryRow(
                id="assess", title="Assess scope and sentiment", state="done", actor="wang-fang", met_deadline=True
            ),
            SummaryRow(
                id="holding-statement",
                title="Publish a holding statement",
                state="active" if kind == "run_overdue" else "done",
                actor=None if kind == "run_overdue" else "chen-jie",
                met_deadline=False,
            ),
            *([SummaryRow(id="legal", title="Legal and compliance check", state="skipped", met_deadline=False,
                          timed_out=True)] if kind == "run_finished" else []),
            SummaryRow(id="rate-limit", title="Rate-limit the gateway", state="skipped", actor=None, met_deadline=None,
                       reason="branch of assess not taken"),
        )
    hold = None
    if kind == "handed_over":  # handed over while on hold: the one sample whose step comes paused
        hold = HoldInfo(reason="customer-reply", by="chen-jie", note="waiting for the buyer's photos",
                        max_at=STARTED + timedelta(hours=4),
                        steps=(HeldStep(id="assess", title="Assess scope and sentiment",
                                        due_at=STARTED + timedelta(minutes=20)),))
    if kind in ("step_held", "step_released"):
        moved = timedelta(minutes=45) if kind == "step_released" else timedelta(0)
        hold = HoldInfo(
            reason="customer-reply",
            by="chen-jie",
            note="waiting for the buyer's photos",
            whole_run=kind == "step_held",
            max_at=STARTED + timedelta(hours=4) if kind == "step_held" else None,
            steps=(
                HeldStep(id="assess", title="Assess scope and sentiment", due_at=STARTED + timedelta(minutes=20) + moved,
                         time_left="18m left"),
                HeldStep(id="facts", title="Establish the facts", due_at=STARTED + timedelta(minutes=30) + moved),
            ),
        )
    yours = ()
    if kind == "run_overdue_holder":  # two of the reader's steps still open past the run's deadline
        yours = (HeldStep(id="holding-statement", title="Publish a holding statement",
                          due_at=STARTED + timedelta(minutes=90), time_left="30m overdue"),
                 HeldStep(id="reply-kol", title="Answer the KOL", due_at=STARTED + timedelta(hours=3),
                          time_left="1h left"))
    return Context(
        kind=kind,  # type: ignore[arg-type]
        sop=SopInfo(id="crisis-pr", title="Crisis PR response", class_="complaint"),
        run=run,
        recipient=recipient,
        api_base_url=api_base_url,
        step=step if kind not in ("run_started", "run_overdue", "run_finished", "run_cancelled", "status_due",
                                  "status_missed", "automation_failed", "status_update", "step_held",
                                  "step_released", "run_overdue_holder") else None,
        level=level,
        summary=summary,
        hold=hold,
        yours=yours,
        step_link=lambda person: f"{api_base_url.rstrip('/')}/s/sample-link-for-{person}",
    )
