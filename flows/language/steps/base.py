"""What every step kind is made of: the fields all steps share, the kind record, and the engine's side.

A kind (one module each in this package) is a :class:`StepKind`: its model (a subclass
of :class:`StepBase`) and the hooks the rest of the code calls instead of asking which
kind a step is. The engine drives the engine-side kinds through :class:`Activation`,
written here so that this package needs nothing of the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NamedTuple, Protocol

from pydantic import Field, field_validator

from flows.clock import scaled, scaled_timeout
from flows.language.fields import OptionalDuration, Slug, Strict, Title, written
from flows.language.ladder import LadderEntry

#: result attributes every step exposes to later templates (``steps.<id>.<attr>``)
COMMON_OUTPUTS = ("state", "outcome", "actor", "note", "finished_at")
#: what ``once`` says, on the steps that act on the world (http, command)
ONCE = ("the action must not happen twice (a payment, an SMS to every customer): an attempt cut mid-way (its executor or "
        "flow run lost) is not made again; the step fails saying it may have happened, and its owner checks by hand")
#: the first pause between two attempts of an automated step that names no ``retry_delay``; it doubles each retry
DEFAULT_RETRY_DELAY = timedelta(seconds=2)
_ON_TIMEOUT = re.compile(r"^(skip|fail|fallback:[a-z][a-z0-9-]*)$")


class Branch(NamedTuple):
    """Steps a branching step chooses between: its field (``then``), its label in the graph (``yes``), the step ids."""

    field: str
    label: str
    steps: list[str]


class StepBase(Strict):
    """What every step has: identity, place in the DAG, condition, deadline behaviour."""

    if TYPE_CHECKING:  # each kind's model declares it, a literal field (``kind: Literal["http"]``)
        kind: str
    #: the field that says how long the step may take once ready (a wait's is its ``duration``)
    span_field: ClassVar[str] = "due"
    #: finishing after its due instant misses a deadline; not for a wait, whose due instant is its own end:
    #: its timer ends it at or just after that instant (it *is* the clock), so it has no deadline to meet
    judged: ClassVar[bool] = True

    id: Slug
    title: Title | None = None
    description: str | None = None
    needs: list[str] = Field(default_factory=list)
    when: Annotated[str | None, written("an expression", " (the step then always runs)")] = None
    due: OptionalDuration = None
    on_timeout: Annotated[str | None, written("skip, fail or fallback:<step-id>",
                                              " (the step then keeps waiting, and escalates)")] = Field(
        default=None, description="skip | fail | fallback:<step>")
    escalation: Annotated[list[LadderEntry] | None, written("the step's rungs (`[]` for none)",
                                                            " (the SOP's ladder then applies)")] = None
    calendar: Annotated[str | None, written("a calendar of config/calendars.yaml (or wall)",
                                            " (then the SOP's)")] = Field(
        default=None, description="a calendar of config/calendars.yaml: this step's due and ladder count business "
                                  "time (`wall`: wall time)")
    retries: int = Field(default=0, ge=0, le=20)
    timeout: OptionalDuration = None

    @field_validator("needs", mode="before")
    @classmethod
    def _needs_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("on_timeout")
    @classmethod
    def _on_timeout(cls, value: str | None) -> str | None:
        if value is not None and not _ON_TIMEOUT.match(value):
            raise ValueError(f"expected skip, fail or fallback:<step-id>, got {value!r}")
        return value

    @property
    def name(self) -> str:
        """The step's human title, falling back to its id."""
        return self.title or self.id

    @property
    def fallback(self) -> str | None:
        """The step to run instead when this one times out (``on_timeout: fallback:x``)."""
        if self.on_timeout and self.on_timeout.startswith("fallback:"):
            return self.on_timeout.split(":", 1)[1]
        return None

    def outputs(self) -> set[str]:
        """Names this step makes available as ``steps.<id>.<name>``."""
        return set(COMMON_OUTPUTS)

    def branches(self) -> tuple[Branch, ...]:
        """The steps this one branches to (a check's ``then`` and ``else``): each depends on it. None by default."""
        return ()

    def skips(self, step_id: str, outputs: Mapping[str, Any]) -> bool:
        """True when this step, finished with ``outputs``, took a branch that leaves ``step_id`` out."""
        return False

    def span(self) -> timedelta:
        """How long the step may take once ready, for the run-deadline check: its ``due`` (none: nothing)."""
        return self.due or timedelta(0)


class StepFailed(Exception):
    """An automated step did not do its job; ``outputs`` keeps what it did learn (status, stderr…)."""

    def __init__(self, message: str, outputs: dict[str, Any] | None = None):
        super().__init__(message)
        self.outputs = outputs or {}


@dataclass
class StepContext:
    """The template variables of the run plus the services a step may use, and the run's clock speed."""

    variables: dict[str, Any]
    run_id: str
    pager: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: how many times the run's time is compressed: a step's own time limits are on that clock
    speed: float = 1.0

    def timeout(self, limit: timedelta) -> float:
        """A time limit of the step (SOP time) in wall seconds on this run's clock (``flows.clock.scaled_timeout``)."""
        return scaled_timeout(limit, self.speed).total_seconds()

    def timeout_text(self, limit: timedelta) -> str:
        """How a step's error names its limit: ``30s``, and on a compressed run the wall time it had too."""
        wall = self.timeout(limit)
        shown = f"{limit.total_seconds():g}s"
        return shown if wall == limit.total_seconds() else f"{shown} of SOP time ({wall:g}s of wall time at ×{self.speed:g})"


@dataclass(frozen=True)
class Pacing:
    """How an automated step's attempts are paced on a run's clock, in wall seconds: its Prefect task's
    ``retry_delay_seconds`` and ``timeout_seconds``."""

    #: the pause before each retry: the step's ``retry_delay``, doubled at each retry (exponential backoff)
    delays: tuple[float, ...]
    #: how long one attempt may take (None: no limit)
    timeout: float | None


def pacing(step: StepBase, speed: float) -> Pacing:
    """The pacing of ``step``'s attempts on a run compressed ``speed`` times: every delay scaled like any other
    duration, the timeout with :func:`flows.clock.scaled_timeout` (never under a second of wall time)."""
    delay: timedelta = getattr(step, "retry_delay", DEFAULT_RETRY_DELAY)
    return Pacing(delays=tuple(scaled(delay * 2**retry, speed).total_seconds() for retry in range(step.retries)),
                  timeout=scaled_timeout(step.timeout, speed).total_seconds() if step.timeout else None)


class Activation(Protocol):
    """What the engine offers a step kind when the step's turn comes (its needs met, its ``when`` true).

    A kind's ``activate`` calls exactly one of ``assign``, ``wait_until``, ``finish``,
    ``fail`` or ``ready``; each is one transition of the step in the run's transaction.
    """

    @property
    def now(self) -> datetime:
        """The moment the step became ready."""

    @property
    def speed(self) -> float:
        """How many times the run's time is compressed (1: real time)."""

    def variables(self) -> dict[str, Any]:
        """The run's template variables (built on first use: they cost more than the rest)."""

    def assign(self) -> None:
        """Give the step to its assignee: due and ladder timers armed, the person paged."""

    def wait_until(self, until: datetime) -> None:
        """Hold the step until ``until`` (a durable timer finishes it)."""

    def finish(self, outputs: dict[str, Any]) -> None:
        """The step is done now, with these outputs."""

    def fail(self, reason: str) -> None:
        """The step failed now, for this reason."""

    def ready(self) -> None:
        """Hand the step to the flow run, which executes it as a Prefect task (``StepKind.execute``)."""


def ready(step: StepBase, act: Activation) -> None:
    """The activation of every automated kind: the step is ready for its Prefect task."""
    act.ready()


class Template(NamedTuple):
    """A value of a step that is a template (or, with ``expression``, a bare expression), at its path in the step."""

    value: Any
    path: tuple[str | int, ...]
    expression: bool = False


def _none(step: Any) -> Iterable[Any]:
    return ()


@dataclass(frozen=True)
class StepKind:
    """One kind of step and every hook the rest of the code calls on it (the table: ``steps.KINDS``)."""

    #: the pydantic model of a step of this kind; its ``kind`` literal names the kind
    model: type[StepBase]
    #: what happens when the step's turn comes (automated kinds: :func:`ready`)
    activate: Callable[[Any, Activation], None]
    #: the one-line description of a step that `sop show` prints
    summary: Callable[[Any], str]
    #: the step's own templates and expressions, checked by `sop validate`
    templates: Callable[[Any], Iterable[Template]] = _none
    #: the notify targets the step names (each with its path), checked against config
    targets: Callable[[Any], Iterable[tuple[str, tuple[str | int, ...]]]] = _none
    #: an automated kind's work, run as a Prefect task: (step, context) → outputs; raises StepFailed
    execute: Callable[[Any, StepContext], dict[str, Any]] | None = None
    #: a step of this kind may leave out ``kind:`` when it has this key
    implied_by: str | None = None
    #: in a drill, what the step would have done instead of doing it (kinds that touch the site's real
    #: systems or send its messages: http, command, notify): (step, context) → outputs, with ``simulated``
    #: and what would have been sent
    simulate: Callable[[Any, StepContext], dict[str, Any]] | None = None
    #: why a step of this kind may fail by its own work ("its call may fail"), failing its run (`sop validate`
    #: tries a follow-up with the steps such a failure leaves unfinished); None: only its deadline
    #: (``on_timeout: fail``), an automated kind's ``timeout`` (``flows.language.unfinished``) or a template that
    #: cannot be rendered fails it
    fails: str | None = None

    def __post_init__(self) -> None:
        if (self.execute is not None) != (self.activate is ready):
            raise TypeError(f"step kind {self.name}: an automated kind (one that executes) activates with "
                            "`ready`, and only an automated kind does")

    @property
    def name(self) -> str:
        """The kind's name, as SOP files write it (``kind: http``)."""
        return self.model.model_fields["kind"].default

    @property
    def automated(self) -> bool:
        """True when the flow run executes the step as a Prefect task (http, command, notify)."""
        return self.execute is not None
