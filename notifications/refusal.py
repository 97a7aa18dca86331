"""The page of a refused signal: an SOP's trigger matched an alert (an event, a metric rule's firing) that could
not start it, and its owner is told what it lacked and how to start the run by hand now.

A refusal belongs to no run, so it has a context of its own (:class:`Refusal`), not the runs' :class:`Context`. Its
template is ``trigger_refused.md.j2``, packaged beside the others and replaced by a site's
``config/templates/trigger_refused.md.j2`` as theirs are (``validate_overrides`` checks it against
:func:`template_fields`). The engine side (who is paged, once an hour) is ``flows.triggers.refusal``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError

from notifications import urgency
from notifications.errors import RenderError
from notifications.message import Message, RecipientInfo, SopInfo, plain

if TYPE_CHECKING:
    from flows.language.config import Site

#: its kind: the template's name, the ``notification`` record's and the ``deliveries`` rows'
REFUSED = "trigger_refused"


@dataclass(frozen=True)
class Refusal:
    """What the owner reads: which trigger of which SOP refused which signal, why (``problems``, as the sender was
    answered; ``why``: the first in a few words), the signal's labels, and how to start the run by hand."""

    trigger: int
    source: str  # alertmanager, grafana, event, metric
    subject: str  # the alert's fingerprint, the event's key or name, the metric series
    problems: tuple[str, ...]
    why: str
    at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    copies: int = 1
    #: how to start the run by hand now: the command and the board's form
    command: str = ""
    url: str = ""


def template_fields() -> dict[str, frozenset[str] | None]:
    """The variables ``trigger_refused.md.j2`` reads, with the names each has (None: a scalar)."""
    return {"kind": None, "priority": None, "desk": None,
            "sop": frozenset(f.name.rstrip("_") for f in fields(SopInfo)),
            "refusal": frozenset(f.name for f in fields(Refusal)),
            "recipient": frozenset(f.name for f in fields(RecipientInfo))}


def refusal_message(sop: SopInfo, refusal: Refusal, recipient: RecipientInfo, site: Site | None = None,
                    overrides_dir: Path | str | None = None) -> Message:
    """The page for ``recipient``: the template's first line the title (after ``[P1]``), the rest the body; as
    urgent as its SOP's work (a refused incident is one nobody handles), never below ``warning``."""
    from notifications.templating import _quiet, _with_timezone, default_overrides_dir, environment, split_title

    folder = Path(overrides_dir) if overrides_dir is not None else default_overrides_dir()
    env = environment(str(folder.resolve()) if folder.is_dir() else None)
    variables = _quiet({"kind": REFUSED, "priority": f"P{sop.priority}", "sop": plain(sop), "refusal": asdict(refusal),
                        "recipient": plain(_with_timezone(recipient, site))})
    try:
        template = env.get_template(f"{REFUSED}.md.j2")
        text = template.render(**variables, desk=True)
    except TemplateSyntaxError as exc:
        raise RenderError(f"template syntax error: {exc.message}", exc.filename or exc.name, exc.lineno) from None
    except TemplateNotFound as exc:
        raise RenderError(f"template not found: {exc.name}") from None
    except (TemplateError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise RenderError(f"{exc} (trigger_refused templates see: {', '.join(template_fields())})") from None
    title, body = split_title(text)
    if not title:
        raise RenderError("the template rendered an empty first line (the title)", template.filename)
    kind = "warning" if urgency.BY_CLASS[sop.class_] == "info" else urgency.BY_CLASS[sop.class_]
    return Message(title=f"{urgency.title_prefix(sop.priority)} {title}", body=body, notify_type=kind,
                   priority=sop.priority, kind=REFUSED)


def sample_refusal() -> tuple[SopInfo, Refusal, RecipientInfo]:
    """A filled-in refusal, to render a site's template once before an alert needs it."""
    from datetime import UTC

    return (SopInfo(id="refund-rate", title="Refund rate too high", class_="complaint"),
            Refusal(trigger=0, source="alertmanager", subject="r0001",
                    problems=("input `brand`: '{{ trigger.labels.brand }}' cannot be rendered from the alert: the "
                              "alert has no label `brand` (its labels: alertname, shop)",),
                    why="the alert has no label `brand`", at=datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
                    labels={"alertname": "RefundRateHigh", "shop": "nova"}, copies=1,
                    command="sop run refund-rate -p brand=…", url="http://127.0.0.1:8000/board/start/refund-rate"),
            RecipientInfo(id="priya-nair", name="Priya Nair", timezone="Europe/London"))


def sample_message(overrides_dir: Path | str | None = None) -> Any:
    """:func:`refusal_message` of :func:`sample_refusal` (``validate_overrides``)."""
    return refusal_message(*sample_refusal(), overrides_dir=overrides_dir)
