"""Rendering a notification: one Jinja2 template per kind, a site file replaces the packaged one.

Templates live in ``notifications/templates/<kind>.md.j2``; a site puts its own in
``config/templates/<kind>.md.j2``. The first line a template renders is the title, the rest
(markdown) the body. The ``[P1]`` prefix and the notify type are added here, not by the
template, so an override cannot drop the urgency. The environment is sandboxed and strict:
an unknown variable is an error (and ``validate_overrides`` finds it before a run does). Every
printed value reads as the pages show it (``flows.language.presentation``): yes / no, — for
nothing, a list's items joined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    pass_context,
)
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flows.language.expressions import default
from flows.language.library import project_root
from flows.language.presentation import Labelled, finalized, named, unmentioned
from notifications import urgency
from notifications.actions import action_for
from notifications.errors import RenderError
from notifications.message import KINDS, Context, Message, RecipientInfo, plain

if TYPE_CHECKING:
    from flows.language.config import Site
    from notifications.addressing import Recipient

PACKAGE_TEMPLATES = Path(__file__).parent / "templates"
SUFFIX = ".md.j2"
_BLANK_RUNS = re.compile(r"\n{3,}")


#: the fields the SOP's author wrote (its titles, a step's instructions, a status cadence's ask): a mention in them
#: is meant; every other text a template reads is a value (a note, a topic, an alert's label, a status update, a
#: reported field, a run's subject) whose mentions must ping nobody in a chat (:func:`unmentioned`)
AUTHORED = frozenset({"title", "short_title", "description", "ask", "fallback", "needed_by"})


def _quiet(value: Any, authored: frozenset[str] = AUTHORED) -> Any:
    """``value`` (a template variable: plain dicts and lists) with the mentions of every value in it made ones nobody
    is pinged by; the :data:`AUTHORED` fields, and a choice's label (the SOP's too), as they are. A step's reported
    ``values`` are values whatever their names."""
    if isinstance(value, Labelled):
        return value
    if isinstance(value, str):
        return unmentioned(value)
    if isinstance(value, dict):
        return {k: v if k in authored else _quiet(v, frozenset() if k == "values" else authored)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_quiet(item, authored) for item in value]
    return value


#: the fields that hold a person's or a role's id, by the variable they are in: each prints as the name or title
#: config gives it and compares as the id (:func:`_by_name`)
PEOPLE_FIELDS: dict[str, tuple[str, ...]] = {
    "run": ("initiator", "cancelled_by"),
    "step": ("assignee", "actor", "holder", "handed_by", "fallback_assignee"),
    "level": ("asked_by", "held_by", "by"),
    "hold": ("by",),
}


def _by_name(variables: dict[str, Any], site: Site | None) -> dict[str, Any]:
    """``variables`` with every person and role in them named as config names them (``sara-lopez`` prints "Sara
    Lopez", ``cs-lead`` "Customer Service Lead"; :func:`flows.language.presentation.named`): a phone's reader should
    not have to know config's ids. Without a site, the ids as they are."""
    if site is None:
        return variables
    for key, names in PEOPLE_FIELDS.items():
        value = variables.get(key)
        if value is not None:
            variables[key] = {**value, **{name: named(site, value.get(name)) for name in names if name in value}}
    approval = (variables.get("step") or {}).get("approval")
    if approval is not None:
        variables["step"]["approval"] = {**approval, "approvers": [named(site, r) for r in approval["approvers"]]}
    if variables.get("summary") is not None:
        variables["summary"] = [{**row, "actor": named(site, row["actor"])} for row in variables["summary"]]
    return variables


def template_vars(ctx: Context, site: Site | None = None) -> dict[str, Any]:
    """The variables templates see: plain dicts and lists, ``sop.class`` spelled as in SOP files, people and roles
    by the names ``site`` gives them (:data:`PEOPLE_FIELDS`); a mention in a value pings nobody (``AUTHORED``).
    What the reader is asked to do (``action``: commands, links) is as it is."""
    action = ctx.action or action_for(ctx)
    out: dict[str, Any] = _quiet(_by_name({
        "kind": ctx.kind,
        "priority": f"P{ctx.sop.priority}",
        "about": ctx.about,
        "sop": plain(ctx.sop),
        "run": plain(ctx.run),
        "recipient": plain(ctx.recipient),
        "step": plain(ctx.step),
        "level": plain(ctx.level),
        "summary": [plain(row) for row in ctx.summary] if ctx.summary is not None else None,
        "hold": plain(ctx.hold),
        "yours": [plain(step) for step in ctx.yours],
    }, site))
    return {**out, "api_base_url": ctx.api_base_url.rstrip("/"), "action": plain(action)}


def template_name(kind: str) -> str:
    """The file name of a kind's template: ``assigned.md.j2``."""
    return f"{kind}{SUFFIX}"


def default_overrides_dir() -> Path:
    """Where a site's templates live: ``config/templates`` under ``$SOP_HOME`` (else the current folder)."""
    return project_root() / "config" / "templates"


@lru_cache(maxsize=16)
def environment(overrides_dir: str | None) -> ImmutableSandboxedEnvironment:
    """The sandboxed, strict environment; ``overrides_dir`` (if any) is searched before the package."""
    loaders = [FileSystemLoader(overrides_dir)] if overrides_dir else []
    env = ImmutableSandboxedEnvironment(
        loader=ChoiceLoader([*loaders, FileSystemLoader(str(PACKAGE_TEMPLATES))]),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=finalized,  # a reported True reads "yes", as on the step's page; `{% if %}` still tests the value
    )
    env.filters["default"] = env.filters["d"] = default  # None too (flows.language.expressions.default)
    env.filters["local"] = _local
    env.filters["tojson"] = _tojson
    env.filters["yesno"] = _yesno
    return env


def drill_note(speed: float) -> str:
    """The line a drill's page begins with, before anything its template says."""
    pace = f" (time runs {speed:g}× faster)" if speed != 1 else ""
    return f"**This is a drill**{pace}: act as you would in a real incident; nothing real is at stake.\n\n"


def render_message(kind: str, ctx: Context, site: Site | None = None, overrides_dir: Path | str | None = None) -> Message:
    """Render the ``kind`` template for ``ctx`` into a :class:`Message`.

    A page that carries the reader's personal link is rendered twice: for a desk (``desk`` true: e-mail, a webhook)
    and for a phone (``desk`` false: its ``phone_body``, without the terminal's and the API's ways, which
    ``parts.terminal()`` leaves out there); :func:`notifications.markup.for_channel` hands each channel its one.

    ``kind`` picks the template (the context's kind is set to it). Times are shown in the
    recipient's time zone: the context's, else the person's in ``site``, else the site's,
    else UTC. ``overrides_dir`` defaults to ``config/templates`` of the project. Raises
    :class:`RenderError` with the template file and line when the template fails.
    """
    if kind not in KINDS:
        raise RenderError(f"unknown notification kind `{kind}` (expected one of {', '.join(KINDS)})")
    if ctx.kind != kind:
        ctx = replace(ctx, kind=kind)  # type: ignore[arg-type]
    ctx = ctx.for_recipient(_with_timezone(ctx.recipient, site))
    folder = Path(overrides_dir) if overrides_dir is not None else default_overrides_dir()
    env = environment(str(folder.resolve()) if folder.is_dir() else None)
    try:
        template = env.get_template(template_name(kind))
        variables = template_vars(ctx, site)
        text = template.render(**variables, desk=True)
        # a page with the reader's own link: on a phone that link is the way, the terminal's ways are noise there
        phone = template.render(**variables, desk=False) if variables["action"].get("link") else text
    except TemplateSyntaxError as exc:
        raise RenderError(f"template syntax error: {exc.message}", exc.filename or exc.name, exc.lineno) from None
    except TemplateNotFound as exc:
        raise RenderError(f"template not found: {exc.name}") from None
    except (TemplateError, TypeError, ValueError, KeyError, AttributeError) as exc:
        file, line = template_line(exc.__traceback__)
        raise RenderError(_describe(exc), file, line) from None
    title, body = split_title(text)
    phone_body = split_title(phone)[1]
    if not title:
        raise RenderError("the template rendered an empty first line (the title)", template.filename)
    if ctx.run.drill:  # the first words read, whatever the template (a site's own too): a title can be cut
        body, phone_body = drill_note(ctx.run.speed) + body, drill_note(ctx.run.speed) + phone_body
    title = f"{urgency.DRILL_MARK + ' ' if ctx.run.drill else ''}{urgency.title_prefix(ctx.sop.priority)} {title}"
    return Message(
        title=title,
        body=body,
        phone_body=phone_body if phone_body != body else None,
        notify_type=urgency.notify_type(ctx.sop.class_, kind, ctx.run.status),
        priority=ctx.sop.priority,
        kind=kind,
    )


def render_for(
    kind: str, ctx: Context, site: Site | None = None, overrides_dir: Path | str | None = None
) -> Callable[[Recipient], Message]:
    """A function rendering ``kind`` for each recipient (their name, id and time zone).

    Give it to :func:`notifications.deliver` or ``Dispatcher.submit`` in place of a message:
    each recipient then reads their own personal link, ``--as`` and local times.
    """

    def message_for(recipient: Recipient) -> Message:
        info = RecipientInfo(id=recipient.id, name=recipient.name, timezone=recipient.timezone)
        return render_message(kind, ctx.for_recipient(info), site=site, overrides_dir=overrides_dir)

    return message_for


def split_title(text: str) -> tuple[str, str]:
    """The first non-blank line (markdown ``#`` removed) is the title; the rest is the body."""
    lines = text.strip().splitlines()
    if not lines:
        return "", ""
    title = lines[0].strip().lstrip("#").strip()
    body = _BLANK_RUNS.sub("\n\n", "\n".join(lines[1:]).strip())
    return title, body


def template_line(tb: TracebackType | None) -> tuple[str | None, int | None]:
    """The innermost template frame of a traceback: (file, line). Jinja maps frames to template lines."""
    found: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(SUFFIX):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return (
        f"{text} (templates see: kind, priority, about, api_base_url, sop, run, recipient, step, level, summary, action, hold, yours, desk)"
        if "undefined" in text
        else text
    )


def _with_timezone(recipient: RecipientInfo, site: Site | None) -> RecipientInfo:
    if recipient.timezone:
        return recipient
    tz = "UTC"
    if site is not None:
        person = site.people.get(recipient.id)
        tz = person.zone_or(site.settings.timezone) if person is not None else site.settings.timezone
    return replace(recipient, timezone=tz)


@pass_context
def _local(context: JinjaContext, value: Any) -> str:
    """``{{ step.due_at | local }}`` → ``2025-03-01 14:05 (Asia/Shanghai)`` in the recipient's zone."""
    if value is None:
        return "—"
    if not isinstance(value, datetime):
        return str(value)
    name = (context.get("recipient") or {}).get("timezone") or "UTC"
    try:
        zone: Any = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        zone, name = UTC, "UTC"
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return f"{aware.astimezone(zone):%Y-%m-%d %H:%M} ({name})"


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _yesno(value: Any, words: str = "yes,no,—") -> str:
    yes, no, unknown = (words.split(",") + ["—"])[:3]
    return unknown if value is None else (yes if value else no)
