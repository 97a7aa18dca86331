"""The context contract between the engine and the templates, and the rendered message.

The engine fills a :class:`Context` (plain dataclasses, no Prefect, no ledger); the
templates read it as ``sop.*``, ``run.*``, ``step.*``, ``level.*``, ``recipient.*``,
``summary``, ``action.*``, ``hold.*``, ``yours``, ``api_base_url``, ``kind`` and ``priority``. What a template may
read is exactly what :func:`notifications.templating.template_vars` returns (``about`` too: which SOP and run, in a
few words, for titles); ``validate_overrides`` checks
site templates against the same shape (see docs/notifications.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import datetime
from typing import Any, Literal, get_args

from flows.language.fields import MESSAGE_TITLE_MAX, FieldSpec
from flows.language.ladder import level_words
from flows.language.presentation import short_title
from flows.language.spec import PRIORITY

Kind = Literal[
    "assigned", "reminder", "escalated", "overdue", "step_done", "step_claimed", "handed_over", "handed_away",
    "run_started", "run_overdue", "run_finished", "run_cancelled", "status_due", "status_missed", "automation_failed",
    "step_failed", "status_update",
    "step_timed_out", "step_held", "step_released", "step_withdrawn", "run_overdue_holder",
]
KINDS: tuple[str, ...] = get_args(Kind)
#: kinds that are about one step and cannot render without ``step``
STEP_MESSAGE_KINDS: frozenset[str] = frozenset(
    {"assigned", "reminder", "escalated", "overdue", "step_done", "step_claimed", "handed_over", "handed_away",
     "step_failed", "step_timed_out", "step_withdrawn"})
#: kinds about a hand-over: their page's level carries who handed the step (``by``) and the note, not a ladder level
HAND_OVER_KINDS: frozenset[str] = frozenset({"handed_over", "handed_away"})
#: kinds whose reader is asked to finish a step (they carry the ``sop done`` command)
ACTION_KINDS: frozenset[str] = frozenset({"assigned", "reminder", "escalated", "overdue", "handed_over"})
NotifyType = Literal["info", "success", "warning", "failure"]


@dataclass(frozen=True)
class SopInfo:
    """Which SOP the run belongs to; ``priority`` (1..4) follows from ``class_`` when left out, ``short_title``
    (``Crisis PR``) from ``title``."""

    id: str
    title: str
    class_: str
    priority: int = 0
    short_title: str = field(init=False, default="")  # always from ``title`` (``replace(title=…)`` too)

    def __post_init__(self) -> None:
        if self.class_ not in PRIORITY:
            raise ValueError(f"unknown SOP class {self.class_!r} (expected one of {', '.join(PRIORITY)})")
        if not self.priority:
            object.__setattr__(self, "priority", PRIORITY[self.class_])
        object.__setattr__(self, "short_title", short_title(self.title))


@dataclass(frozen=True)
class RunInfo:
    """The run: ``url`` is the link a reader opens; ``reason`` explains a cancellation, why its automated
    steps cannot start (``automation_failed``), or why an automated step failed (``step_failed``)."""

    id: str
    url: str
    started_at: datetime
    deadline_at: datetime | None = None
    initiator: str | None = None
    speed: float = 1.0
    status: str = "running"
    reason: str | None = None
    #: a drill (``sop drill``, the board's drill toggle): its messages say so in their title and facts
    drill: bool = False
    #: what the run is about (its dedup key: ``lumi``, ``storefront``): two runs of one SOP differ in it
    subject: str | None = None
    #: ``run_cancelled``: who cancelled it (None: the system, or a caller that named nobody)
    cancelled_by: str | None = None
    #: a run that ended (``run_finished``, ``step_failed`` of the failure that ended it): whether it met its deadline
    #: (None: it has none, or it is open); a run that failed did not, however early it ended
    deadline_met: bool | None = None
    #: how long after its deadline it ended, in SOP time (``18m``); None when it ended in time (or has no deadline)
    over_deadline: str | None = None


@dataclass(frozen=True)
class FormField:
    """One field the assignee reports when finishing a step (from the step's ``form``)."""

    name: str
    type: str = "string"
    enum: tuple[Any, ...] | None = None
    required: bool = True
    description: str | None = None

    @classmethod
    def from_spec(cls, name: str, spec: FieldSpec) -> FormField:
        """The field as the SOP declares it (``HumanStep.form[name]``)."""
        return cls(
            name=name,
            type=spec.type,
            enum=tuple(spec.enum) if spec.enum is not None else None,
            required=spec.is_required,
            description=spec.description,
        )


@dataclass(frozen=True)
class ApprovalInfo:
    """Four-eyes: ``count`` distinct approvers from the ``approvers`` roles; ``given`` so far."""

    approvers: tuple[str, ...]
    count: int = 2
    given: int = 0


@dataclass(frozen=True)
class StepInfo:
    """The step a message is about. ``time_left`` is the engine's text ("18m32s left", "12m overdue");
    ``time_left_short`` the same for a title, rounded ("4h left" for 3h59m32s; default: ``time_left``).

    ``actor``, ``finished_at`` and ``values`` (the reported form) are filled for ``step_done``.
    ``holder`` is who holds the step now (who claimed it, else the person it went to) and
    ``holder_contact`` how to reach them (their e-mail): escalations name both.
    """

    id: str
    title: str
    description: str | None = None
    assignee: str | None = None
    due_at: datetime | None = None
    time_left: str | None = None
    form: tuple[FormField, ...] = ()
    evidence_required: bool = False
    approval: ApprovalInfo | None = None
    actor: str | None = None
    finished_at: datetime | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    holder: str | None = None
    holder_contact: str | None = None
    #: ``handed_over``: who gave the step to the reader, and what they said; ``handed_away``: who gave it away from
    #: the reader (to ``holder``)
    handed_by: str | None = None
    handover_note: str | None = None
    #: a rework round: 2 and more when a rejection sent the work back, with who did and why (``sent_back``)
    round: int = 1
    sent_back: str | None = None
    #: ``step_timed_out`` / ``step_withdrawn``: what its deadline did (``skip``, ``fail``, ``fallback:<step>``), the stand-in's title
    #: and assignee (a fallback), and the titles of the steps that need it (what follows)
    on_timeout: str | None = None
    fallback: str | None = None
    fallback_assignee: str | None = None
    needed_by: tuple[str, ...] = ()
    time_left_short: str | None = None
    #: at its due instant or past it (``time_left`` says "due now" or "… overdue"); a step without a due never is
    overdue: bool = False
    #: at its due instant, within a second of SOP time (``time_left`` says "due now"): "is late" says it all
    due_now: bool = False

    def __post_init__(self) -> None:
        if self.time_left_short is None:
            object.__setattr__(self, "time_left_short", self.time_left)


@dataclass(frozen=True)
class LevelInfo:
    """The escalation level that fired (reminder / escalated / overdue): its fence key and lateness."""

    key: str
    message: str
    late_by: str | None = None
    #: the holder asked for help (it fired early, on their asking)
    asked_by: str | None = None
    #: a status cadence's period (``status_due``, ``status_missed``) and what the update should say
    every: str | None = None
    ask: str | None = None
    #: a hold that passed its maximum: what it waited for, the maximum, who put it on hold
    hold_reason: str | None = None
    max_hold: str | None = None
    held_by: str | None = None
    #: ``status_update``: what was posted, and by whom
    text: str | None = None
    by: str | None = None
    #: the level as people read it (``escalation stage 3, repeat 4``; the key ``3.4`` is the ledger's): from ``key``
    stage: str | None = None

    def __post_init__(self) -> None:
        if self.stage is None and self.message in ("reminder", "escalated", "overdue"):
            object.__setattr__(self, "stage", level_words(self.key))


@dataclass(frozen=True)
class HeldStep:
    """One of the reader's steps a page lists, with its due as it stands: a hold paused or released it (the due
    moved by the time held, once released), or it is open in a run past its deadline (``run_overdue_holder``)."""

    id: str
    title: str
    due_at: datetime | None = None
    time_left: str | None = None


@dataclass(frozen=True)
class HoldInfo:
    """A hold that paused (``step_held``) or released (``step_released``) the reader's open steps: why, by whom
    (None: its maximum passed), its note, whether it is the whole run's, and until when it may last."""

    reason: str
    steps: tuple[HeldStep, ...]
    by: str | None = None
    note: str | None = None
    whole_run: bool = False
    max_at: datetime | None = None


@dataclass(frozen=True)
class RecipientInfo:
    """Who reads the message; times are shown in ``timezone`` (None: the person's, else the site's)."""

    id: str
    name: str
    timezone: str | None = None


@dataclass(frozen=True)
class SummaryRow:
    """One step of a finished run; ``met_deadline`` is None when the step had no due (False when its deadline ended
    it: ``timed_out``); ``reason``: why a step that was not done ended as it did (``its condition was not met``,
    ``branch of assess not taken``), in the engine's words."""

    id: str
    title: str
    state: str
    actor: str | None = None
    met_deadline: bool | None = None
    timed_out: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class Action:
    """Exactly what the reader is asked to do: open their personal ``link`` (the step's page), or run a
    command, or make the same as an HTTP call."""

    command: str
    api_method: str
    api_url: str
    api_body: Mapping[str, Any]
    link: str | None = None


@dataclass(frozen=True)
class Context:
    """Everything a notification template may read. The engine fills it; see docs/notifications.md.

    ``action`` is derived from the run, step, form and recipient when left out
    (:func:`notifications.actions.action_for`); pass one to override it. What templates read of it:
    :func:`notifications.templating.template_vars`.
    """

    kind: Kind
    sop: SopInfo
    run: RunInfo
    recipient: RecipientInfo
    api_base_url: str
    step: StepInfo | None = None
    level: LevelInfo | None = None
    summary: tuple[SummaryRow, ...] | None = None
    action: Action | None = None
    hold: HoldInfo | None = None
    #: ``run_overdue_holder``: the reader's own open steps in the run that passed its deadline
    yours: tuple[HeldStep, ...] = ()
    #: the reader's personal link to the step's page (a function of their person id; None: none for them)
    step_link: Callable[[str], str | None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown notification kind {self.kind!r} (expected one of {', '.join(KINDS)})")
        if self.kind in STEP_MESSAGE_KINDS and self.step is None:
            raise ValueError(f"`{self.kind}` notifications are about a step: give the context a `step`")

    @property
    def about(self) -> str:
        """Which run, in a few words for a title: the SOP's short title and the run's subject (``Crisis PR · lumi``)."""
        return f"{self.sop.short_title} · {self.run.subject}" if self.run.subject else self.sop.short_title

    def for_recipient(self, recipient: RecipientInfo) -> Context:
        """The same context addressed to someone else (the derived action follows the recipient)."""
        return replace(self, recipient=recipient)


#: the longest title a message keeps (push services cut titles near 250 characters; the body has the rest); an SOP's
#: message title written as plain text is held to it at validation
TITLE_MAX = MESSAGE_TITLE_MAX
#: what cannot stand in a title: line and paragraph breaks, tabs and other control characters
_NOT_IN_A_TITLE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(title: str) -> str:
    """A title as every channel takes it: one line (a value typed or labelled with a line break in it, such as a
    brand ``crlf\\r\\nBcc: …``, would make an e-mail's subject a header injection its library refuses, and the page
    be lost), at most :data:`TITLE_MAX` characters (a topic of 20,000 characters: phones cut or refuse it)."""
    title = _NOT_IN_A_TITLE.sub(" ", title).strip()
    return title if len(title) <= TITLE_MAX else title[:TITLE_MAX - 1].rstrip() + "…"


@dataclass(frozen=True)
class Message:
    """A rendered notification: a title (with its ``[P1]`` prefix; one line, :func:`one_line`), a markdown body
    (``phone_body`` for a phone's channel, when it differs) and its urgency."""

    title: str
    body: str
    notify_type: NotifyType = "info"
    priority: int = 4
    kind: str = "message"
    #: the body for a channel read on a phone, when it differs from ``body`` (a page with the reader's own link
    #: leaves the terminal's and the API's ways out there: ``notifications.markup.for_channel``)
    phone_body: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", one_line(self.title))


def plain(value: Any) -> Any:
    """A dataclass as a dict for templates (``class_`` → ``class``); datetimes stay datetimes."""
    if value is None or not is_dataclass(value):
        return value
    out = {}
    for f in fields(value):
        item = getattr(value, f.name)
        key = f.name.rstrip("_")
        if is_dataclass(item):
            out[key] = plain(item)
        elif isinstance(item, tuple) and item and is_dataclass(item[0]):
            out[key] = [plain(i) for i in item]
        elif isinstance(item, tuple):
            out[key] = list(item)
        elif isinstance(item, Mapping):
            out[key] = dict(item)
        else:
            out[key] = item
    return out


def template_fields() -> dict[str, frozenset[str] | None]:
    """For each top-level template variable, the names it has (None: a scalar or a list)."""
    scalars = ("kind", "priority", "about", "api_base_url", "summary", "yours", "desk")
    shapes: dict[str, frozenset[str] | None] = {name: None for name in scalars}
    for name, cls in (
        ("sop", SopInfo),
        ("run", RunInfo),
        ("recipient", RecipientInfo),
        ("step", StepInfo),
        ("level", LevelInfo),
        ("action", Action),
        ("hold", HoldInfo),
    ):
        shapes[name] = frozenset(f.name.rstrip("_") for f in fields(cls))
    return shapes


__all__ = [
    "ACTION_KINDS",
    "KINDS",
    "STEP_MESSAGE_KINDS",
    "Action",
    "ApprovalInfo",
    "Context",
    "FormField",
    "HeldStep",
    "HoldInfo",
    "Kind",
    "LevelInfo",
    "Message",
    "NotifyType",
    "RecipientInfo",
    "RunInfo",
    "SopInfo",
    "StepInfo",
    "SummaryRow",
    "template_fields",
]


def test_message(recipient: Any, origin: str, sent_at: datetime) -> Message:
    """A test page, addressed by name so its reader knows it reached the right person (``origin``: who sent it)."""
    body = (
        f"This is a test from {origin}, sent {sent_at:%Y-%m-%d %H:%M} UTC.\n\n"
        f"If you read this, **{recipient.name}** (`{recipient.id}`) can be reached here. "
        "Nothing is asked of you."
    )
    return Message(
        title=f"[P4] Test notification for {recipient.name}", body=body, notify_type="info", priority=4, kind="test"
    )
