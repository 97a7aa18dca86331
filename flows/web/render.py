"""The pages' Jinja2 environment: one template per page (``flows/web/templates``), escaped by default.

Filters the templates share: ``md`` (an SOP's markdown, raw HTML off, bare links made links),
``when`` (an instant in the reader's time zone, UTC on hover, machine-readable for the live
clock), ``left`` (the time left before a due instant, in SOP time, kept live by
``static/live.js``), ``person`` and ``role`` (an id of config as a person reads it: a name, a role's title),
``as_role`` (a person with the role they answer for: "Chen Jie (PR Lead)").
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from flows.clock import in_zone, local_time, sop_time
from flows.engine.page_context import time_left
from flows.language.durations import format_duration
from flows.language.fields import FieldSpec, field_label
from flows.language.ladder import level_words
from flows.language.outline import more_text
from flows.language.presentation import channel_kind, names_in, page_kind, person_as, person_name, role_title, shown

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


@cache
def _markdown() -> MarkdownIt:
    md = (MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
          .enable(["linkify", "table"])
          .disable("image"))  # no remote images: a run's values fill instructions in, a pixel could track readers

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:  # a rule is a method
        tokens[idx].attrSet("rel", "noopener noreferrer")  # links leave the page in a new tab
        tokens[idx].attrSet("target", "_blank")
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


def markdown(text: str | None) -> Markup:
    """An SOP's markdown as HTML (no raw HTML passes through; links open in a new tab)."""
    return Markup(_markdown().render(text or ""))  # noqa: S704 - rendered with html off: escaped by markdown-it


def when(value: datetime | None, tz: str = "UTC", short: bool = False) -> Markup:
    """``<time>`` in the reader's zone (``2026-12-05 14:20 CST (UTC+8)``), the UTC instant on hover; ``short``: its
    day and time alone (``05 Dec 14:20``), for a line of a list on a phone, the rest on hover."""
    if value is None:
        return Markup("—")
    utc = value.astimezone(UTC)
    local, hover = local_time(utc, tz), f"{utc:%Y-%m-%d %H:%M:%S} UTC"
    if short:
        local, hover = f"{in_zone(utc, tz):%d %b %H:%M}", f"{local} · {hover}"
    return Markup('<time datetime="{iso}" title="{hover}">{local}</time>').format(iso=utc.isoformat(), hover=hover,
                                                                                  local=local)


def left(due: datetime | None, now: datetime, speed: float, *, live: bool = True) -> Markup:
    """"18m left" / "12m overdue" in SOP time; ``live`` lets the page's clock keep it current."""
    if due is None:
        return Markup("—")
    text = time_left(due, now, speed) or ""
    over = text.endswith("overdue")
    if not live:
        return Markup('<span class="{cls}">{text}</span>').format(cls="overdue" if over else "left", text=text)
    return Markup('<span class="{cls}" data-due="{due}" data-speed="{speed}" aria-live="off">{text}</span>').format(
        cls="overdue" if over else "left", due=due.astimezone(UTC).isoformat(), speed=speed, text=text)


def drill_tag(drill: bool, speed: float) -> Markup:
    """The mark of a drill (``drill ×100``) wherever a run or its step is shown, so that nobody takes a game day's
    P1 for a real one (nor a real one for a drill); nothing for any other run, compressed or not."""
    if not drill:
        return Markup("")
    return Markup('<span class="tag drill" title="a drill: time runs {speed}× faster">drill ×{speed}</span>').format(
        speed=f"{speed:g}")


def playbook(at: datetime | None, started_at: datetime | None, speed: float) -> Markup:
    """`` (+15m)``: how long after the run's start ``at`` is in the run's own time, beside its wall-clock instant on a
    compressed run (a drill at ×100 does two hours in 72 s: every due read the same minute); nothing at ×1."""
    if at is None or started_at is None or speed == 1:
        return Markup("")
    return Markup(' <span class="muted offset" title="after the run\'s start, in its time">(+{})</span>').format(
        format_duration(sop_time(at - started_at, speed)))


def label(name: str, spec: FieldSpec | None = None) -> str:
    """A reported value's heading: its form field's ``label`` (``spec``), else its name in words."""
    return field_label(name, spec)


def reported_rows(result: dict[str, Any], form: dict[str, FieldSpec]) -> list[tuple[str, str | None, str]]:
    """A step's reported values as its page lists them: in its form's order (the ledger keeps them A-Z), each with
    the label and help its form field shows (:func:`field_label`, its ``description``) and the value as a person
    reads it; a value its form no longer has (an older version of the SOP) after them. Evidence and approvers are
    listed apart."""
    names = [n for n in form if n in result] + sorted(n for n in result if n not in form)
    return [(label(n, form.get(n)), form[n].description if n in form else None, answer(result[n], form.get(n)))
            for n in names if n not in ("evidence", "approvers")]


def answer(value: Any, spec: FieldSpec | None = None) -> str:
    """A reported value as a person reads it (:func:`shown`); one of its field's choices (``spec``) by its label."""
    return shown(spec.labelled(value) if spec is not None else value)


def evidence_link(item: str) -> str | None:
    """Where a piece of evidence opens: a kept file (``sha256:<hex> name (n bytes)``: its download, under its name)
    or a web link; None otherwise."""
    if item.startswith("sha256:"):
        digest, _, rest = item[7:].partition(" ")
        name = rest.rsplit(" (", 1)[0].strip()
        return f"/evidence/{digest}" + (f"?{urlencode({'name': name})}" if name else "")
    if item.startswith(("https://", "http://")) and " " not in item:
        return item
    return None


def evidence_name(item: str) -> str:
    """A piece of evidence as its reader looks for it: a kept file by its name and size (``report.pdf (18 bytes)``,
    its sha256 is for the auditor), anything else as recorded."""
    if item.startswith("sha256:") and " " in item:
        return item.split(" ", 1)[1]
    return item


@pass_context
def person(context: Any, pid: str | None) -> str:
    """The page's ``person`` filter: :func:`flows.language.presentation.person_name` of the page's site."""
    return person_name(context["site"], pid)


@pass_context
def role(context: Any, rid: str | None) -> str:
    """The page's ``role`` filter: :func:`flows.language.presentation.role_title` of the page's site."""
    return role_title(context["site"], rid)


@pass_context
def as_role(context: Any, pid: str | None, rid: str | None) -> str:
    """The page's ``as_role`` filter (``pid | as_role(rid)``): :func:`flows.language.presentation.person_as`."""
    return person_as(context["site"], pid, rid)


@pass_context
def names(context: Any, text: str | None) -> str:
    """The page's ``names`` filter: an audit's text in names and titles (:func:`flows.language.presentation.names_in`)."""
    return names_in(context["site"], text)


@cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(md=markdown, when=when, duration=format_duration, shown=shown, label=label, answer=answer,
                       stage=level_words, person=person, role=role, as_role=as_role, names=names,
                       page_kind=page_kind, channel=channel_kind)
    env.globals.update(left=left, drill_tag=drill_tag, playbook=playbook, escape=escape, evidence_link=evidence_link,
                       evidence_name=evidence_name,
                       more_text=more_text, reported_rows=reported_rows)
    return env


def page(name: str, **context: Any) -> str:
    """Render the page template ``name`` (``step.html.j2``…)."""
    return environment().get_template(name).render(**context)
