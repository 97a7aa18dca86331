"""A run's timeline as an SVG Gantt chart: one bar per step, from ready to finished, against its due.

The x axis is SOP time from the run's start (a compressed drill reads in playbook minutes).
A black tick marks each step's due time and the part of a bar past it is red; amber
triangles are escalations (reminders included); white dots are approvals; the dashed
purple line is the run's deadline, the grey line its end. Plain SVG with inline colours,
no script and no external reference, so a chart prints and can be copied out on its own.

Drawn for every run of a report (10,000 in the benchmark), so what depends only on the SOP's
shape (stripes, labels, axis) or on a row's place is formatted once and cached, each
instant is converted to SOP seconds once, x positions are rounded with ``round`` (the same
digits as ``:.0f`` for these non-negative numbers, and faster) and each step's row is one
formatted string. Names are escaped piecewise through caches (``escape`` works character by
character, so the text is the same): step ids, states and actors repeat across runs. The
markup is ASCII (``&#8230;``, ``&#9656;``): valid in HTML and in an SVG file of its own.

Two layouts (:class:`Layout`): :data:`WIDE`, 960 units with the step names in a column left of the bars (reports,
desks); :data:`NARROW`, for a phone's 390 px, drawn at its size: each name on a line of its own above its bar, larger
text, at most four ticks (the wide chart scaled into a phone's width had ~6 px text). The pages carry both
(:func:`page_charts`); their CSS shows the one that fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from html import escape

from flows.audit.model import MISSED, RunAudit, StepAudit
from flows.language.durations import format_duration

STATE_COLOURS = {
    "done": "#2e7d32", "rejected": "#ad1457", "failed": "#b71c1c", "timed_out": "#ef6c00", "blocked": "#9e9e9e",
    "skipped": "#9e9e9e", "cancelled": "#9e9e9e", "active": "#1565c0", "ready": "#1565c0", "running": "#1565c0",
}  # fmt: skip
LATE, DUE, ESCALATION, DEADLINE, END, GRID = "#c62828", "#212121", "#f9a825", "#6a1b9a", "#616161", "#e0e0e0"


@dataclass(frozen=True, eq=False)  # hashed as itself: a key of the caches below, looked up per row
class Layout:
    """Where a chart's parts go, in its ``viewBox`` units; a bar's marks are placed from its top (``bar_top``)."""

    name: str  # a class of the chart's <svg> beside ``gantt`` ("" for the wide one: reports keep their markup)
    width: int
    left: int  # where the time axis starts: right of the names' column, or the left margin
    right: int
    top: int
    row: int
    bar: int
    bar_top: int  # a bar's top, from its row's
    label_x: int
    label_dy: int  # a name's baseline, from its row's top
    label_anchor: str
    label_font: int
    label_chars: int
    axis_font: int
    ticks: int  # at most this many ticks on the axis

    @property
    def span(self) -> int:
        return self.width - self.left - self.right


WIDE = Layout("", 960, 200, 28, 30, 22, 12, 5, 192, 15, "end", 12, 28, 10, 8)
#: a phone's: 360 units shown at about 360 px, each step's name above its bar, 14 and 12 px text
NARROW = Layout("narrow", 360, 12, 24, 30, 40, 12, 22, 12, 16, "start", 14, 44, 12, 4)
_TICKS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000)
_LEGEND = (
    ("done", STATE_COLOURS["done"]), ("late part", LATE), ("open", STATE_COLOURS["active"]),
    ("rejected", STATE_COLOURS["rejected"]), ("failed", STATE_COLOURS["failed"]),
    ("timed out", STATE_COLOURS["timed_out"]), ("skipped / blocked / cancelled", STATE_COLOURS["skipped"]),
)  # fmt: skip
_OPEN = ' fill-opacity="0.55"'  # an unfinished step's bar


@lru_cache(maxsize=8192)
def offset(seconds: int) -> str:
    """``+1h5m`` (SOP time from the start, whole seconds)."""
    return "+" + format_duration(timedelta(seconds=seconds))


@lru_cache(maxsize=4096)
def _esc(text: str) -> str:
    return escape(text)


@lru_cache(maxsize=1024)
def _axis(horizon: float, tick: int, bottom: int, lay: Layout = WIDE) -> str:
    parts = []
    top = lay.top
    for t in range(0, int(horizon) + 1, tick):
        x = lay.left + t / horizon * lay.span
        label = "0" if t == 0 else offset(t)
        parts.append(f'<line x1="{x:.0f}" y1="{top - 6}" x2="{x:.0f}" y2="{bottom}" stroke="{GRID}"/>'
                     f'<text x="{x:.0f}" y="{top - 10}" text-anchor="middle" font-size="{lay.axis_font}" '
                     f'fill="{END}">{label}</text>')
    return "".join(parts)


@lru_cache(maxsize=1024)
def _rows(step_ids: tuple[str, ...], lay: Layout = WIDE) -> str:
    """The zebra stripes and step labels: the same for every run of one SOP text."""
    top, row, most = lay.top, lay.row, lay.label_chars
    parts = [f'<rect x="0" y="{top + i * row}" width="{lay.width}" height="{row}" fill="#f7f7f7"/>'
             for i in range(1, len(step_ids), 2)]
    for i, step_id in enumerate(step_ids):
        label = escape(step_id) if len(step_id) <= most else escape(step_id[:most - 1]) + "&#8230;"  # an ellipsis
        parts.append(f'<text x="{lay.label_x}" y="{top + i * row + lay.label_dy}" text-anchor="{lay.label_anchor}" '
                     f'font-size="{lay.label_font}" fill="#212121">{label}</text>')
    return "".join(parts)


@lru_cache(maxsize=4096)
def _tip(step_id: str, state: str, actor: str | None) -> str:
    """The start of a bar's tooltip: ``step: state by actor, ready ``."""
    return f"{escape(step_id)}: {escape(state)}{' by ' + escape(actor) if actor else ''}, ready "


@lru_cache(maxsize=256)
def _row(y: int, lay: Layout = WIDE) -> tuple[str, str, str, str, str, str]:
    """A row's vertical places, as text: bar top, due tick top and bottom, escalation mark top and tip, middle."""
    top = y + lay.bar_top
    return str(top), str(top - 3), str(top + lay.bar + 3), str(top - 5), str(top + 2), str(top + lay.bar // 2)


@lru_cache(maxsize=1024)
def _unreached(y: int, cancelled: bool, lay: Layout = WIDE) -> str:
    why = "cancelled before it was ready" if cancelled else "not reached"
    return (f'<text x="{lay.left + 4}" y="{y + lay.bar_top + lay.bar // 2 + 4}" font-size="{lay.axis_font + 1}" '
            f'font-style="italic" fill="#9e9e9e">{why}</text>')


def page_charts(run: RunAudit, now: datetime) -> str:
    """The run's chart for a page read at any width: the wide one and the phone's (:data:`NARROW`); the pages'
    CSS shows the one that fits (a report on paper draws the wide one alone)."""
    return gantt(run, now) + gantt(run, now, NARROW)


def gantt(run: RunAudit, now: datetime, lay: Layout = WIDE) -> str:
    """The SVG of one run's timeline (fits any width: it scales with its ``viewBox``), in layout ``lay``."""
    start, speed = run.started_at, run.speed
    at_now = (now - start).total_seconds() * speed
    steps = run.steps.values()
    # each step's instants as SOP seconds: (step, ready, end, due, escalations, approvals), ready None if never
    marks: list[tuple[StepAudit, float | None, float, float | None, list[float], list[float]]] = []
    known = 60.0
    for step in steps:
        if step.ready_at is None:
            marks.append((step, None, 0.0, None, [], []))
            continue
        ready = (step.ready_at - start).total_seconds() * speed
        end = at_now if step.finished_at is None else (step.finished_at - start).total_seconds() * speed
        due = None if step.due_at is None else (step.due_at - start).total_seconds() * speed
        escalations = [(e.at - start).total_seconds() * speed for e in step.escalations] if step.escalations else []
        approvals = [(a.at - start).total_seconds() * speed for a in step.approvals] if step.approvals else []
        if ready > known:
            known = ready
        if step.finished_at is not None and end > known:
            known = end
        if due is not None and due > known:
            known = due
        for at in escalations:
            if at > known:
                known = at
        marks.append((step, ready, end, due, escalations, approvals))
    ended = None if run.ended_at is None else (run.ended_at - start).total_seconds() * speed
    deadline = None if run.deadline_at is None else (run.deadline_at - start).total_seconds() * speed
    known = max(known, ended or 0.0, deadline or 0.0)
    cut = run.ended_at is None and at_now > known * 1.25
    reach = known * 1.25 if cut else max(known, at_now if run.ended_at is None else 0.0)
    tick = next((t for t in _TICKS if reach / t <= lay.ticks), _TICKS[-1])
    h = float(math.ceil(reach / tick) * tick)  # the axis ends on a tick
    left, row, width, bar_h, small = lay.left, lay.row, lay.width, str(lay.bar), lay.axis_font
    k = lay.span / h  # x = left + min(h, max(0, seconds)) * k, inlined below: this runs 100,000 times a report

    bottom = lay.top + len(marks) * row
    height = bottom + small + 2
    rid = escape(run.id)
    kind = f"gantt {lay.name}" if lay.name else "gantt"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="{kind}" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" font-family="Helvetica, Arial, sans-serif" aria-label="Timeline of run {rid}">'
           f'<title>Timeline of run {rid} ({_esc(run.sop_id)}), SOP time from its start</title>',
           _rows(tuple(run.steps), lay), _axis(h, tick, bottom, lay)]
    y = lay.top
    for step, ready, end, due, escalations, approvals in marks:
        if ready is None:
            out.append(_unreached(y, step.state == "cancelled", lay))
            y += row
            continue
        verdict = step.deadline(now)
        finished = step.finished_at is not None
        tip = _tip(step.id, step.state, step.actor) + offset(int(ready))
        if finished:
            tip += ", ended " + offset(int(end))
        if due is not None:
            tip += f", due {offset(int(due))} ({verdict})"
        x0 = left + (h if ready > h else 0.0 if ready < 0.0 else ready) * k
        x1 = left + (h if end > h else 0.0 if end < 0.0 else end) * k
        top, y2, y20, mark_top, mark_tip, mid = _row(y, lay)
        opacity = "" if finished else _OPEN
        colour = STATE_COLOURS.get(step.state, END)
        if due is None:
            w = x1 - x0
            out.append(f'<g><title>{tip}</title><rect x="{round(x0)}" y="{top}" width="{round(w) if w > 2.0 else 2}" '
                       f'height="{bar_h}" fill="{colour}"{opacity}/>')
        else:
            xd = left + (h if due > h else 0.0 if due < 0.0 else due) * k
            tick = round(xd)
            if verdict == MISSED and end > due:  # the part past the due time in red
                w, late = xd - x0, x1 - xd
                out.append(f'<g><title>{tip}</title><rect x="{round(x0)}" y="{top}" width="{round(w) if w > 2.0 else 2}" '
                           f'height="{bar_h}" fill="{colour}"{opacity}/><rect x="{tick}" y="{top}" '
                           f'width="{round(late) if late > 2.0 else 2}" height="{bar_h}" fill="{LATE}"{opacity}/>'
                           f'<line x1="{tick}" y1="{y2}" x2="{tick}" y2="{y20}" stroke="{DUE}" stroke-width="2"/>')
            else:
                w = x1 - x0
                out.append(f'<g><title>{tip}</title><rect x="{round(x0)}" y="{top}" width="{round(w) if w > 2.0 else 2}" '
                           f'height="{bar_h}" fill="{colour}"{opacity}/><line x1="{tick}" y1="{y2}" '
                           f'x2="{tick}" y2="{y20}" stroke="{DUE}" stroke-width="2"/>')
        for at in escalations:
            xe = left + (h if at > h else 0.0 if at < 0.0 else at) * k
            out.append(f'<polygon points="{round(xe - 4)},{mark_top} {round(xe + 4)},{mark_top} {round(xe)},{mark_tip}" '
                       f'fill="{ESCALATION}" stroke="#5d4037" stroke-width="0.5"/>')
        for at in approvals:
            out.append(f'<circle cx="{round(left + (h if at > h else 0.0 if at < 0.0 else at) * k)}" cy="{mid}" '
                       f'r="3" fill="#ffffff" stroke="{DUE}"/>')
        out.append("</g>")
        y += row
    if ended is not None:
        xe = left + min(h, max(0.0, ended)) * k
        out.append(f'<line x1="{round(xe)}" y1="{lay.top - 4}" x2="{round(xe)}" y2="{bottom}" stroke="{END}" stroke-width="1.5"/>'
                   f'<text x="{round(xe + 3)}" y="{bottom + small}" font-size="{small}" fill="{END}">{_esc(run.outcome_text[:30])}</text>')
    if cut:
        out.append(f'<text x="{width - 4}" y="{bottom + small}" text-anchor="end" font-size="{small}" fill="{END}">'
                   f'still open at {offset(int(at_now))} &#9656;</text>')
    if deadline is not None:
        xd = left + min(h, max(0.0, deadline)) * k
        out.append(f'<line x1="{round(xd)}" y1="{lay.top - 4}" x2="{round(xd)}" y2="{bottom}" stroke="{DEADLINE}" stroke-width="2" '
                   f'stroke-dasharray="6 4"><title>run deadline {offset(int(deadline))} ({run.deadline(now)})</title></line>'
                   f'<text x="{round(xd - 3)}" y="{bottom + small}" text-anchor="end" font-size="{small}" fill="{DEADLINE}">deadline</text>')
    out.append("</svg>")
    return "".join(out)


def legend() -> str:
    """The key to the colours and marks, drawn once per report."""
    out = ['<svg xmlns="http://www.w3.org/2000/svg" class="legend" viewBox="0 0 1000 24" width="1000" height="24" '
           'font-family="Helvetica, Arial, sans-serif" role="img" aria-label="Legend">']
    x = 0
    for name, colour in _LEGEND:
        out.append(f'<rect x="{x}" y="6" width="14" height="12" fill="{colour}"/>'
                   f'<text x="{x + 18}" y="16" font-size="11" fill="#212121">{name}</text>')
        x += 28 + 6 * len(name)
    out.append(f'<line x1="{x + 6}" y1="4" x2="{x + 6}" y2="20" stroke="{DUE}" stroke-width="2"/>'
               f'<text x="{x + 12}" y="16" font-size="11">step due</text>')
    x += 70
    out.append(f'<polygon points="{x},6 {x + 8},6 {x + 4},13" fill="{ESCALATION}" stroke="#5d4037" stroke-width="0.5"/>'
               f'<text x="{x + 12}" y="16" font-size="11">escalation</text>')
    x += 84
    out.append(f'<circle cx="{x + 4}" cy="12" r="3" fill="#ffffff" stroke="{DUE}"/><text x="{x + 12}" y="16" '
               f'font-size="11">approval</text>')
    x += 76
    out.append(f'<line x1="{x}" y1="4" x2="{x}" y2="20" stroke="{DEADLINE}" stroke-width="2" stroke-dasharray="6 4"/>'
               f'<text x="{x + 6}" y="16" font-size="11">run deadline</text></svg>')
    return "".join(out)


#: the marks of the legend beyond the colours, each drawn from its entry's top left corner
_MARKS = (
    ("step due", lambda x, y: f'<line x1="{x + 7}" y1="{y + 2}" x2="{x + 7}" y2="{y + 18}" stroke="{DUE}" stroke-width="2"/>'),
    ("escalation", lambda x, y: f'<polygon points="{x + 3},{y + 5} {x + 11},{y + 5} {x + 7},{y + 12}" fill="{ESCALATION}" '
                                f'stroke="#5d4037" stroke-width="0.5"/>'),
    ("approval", lambda x, y: f'<circle cx="{x + 7}" cy="{y + 11}" r="3" fill="#ffffff" stroke="{DUE}"/>'),
    ("run deadline", lambda x, y: f'<line x1="{x + 7}" y1="{y + 2}" x2="{x + 7}" y2="{y + 18}" stroke="{DEADLINE}" '
                                  f'stroke-width="2" stroke-dasharray="6 4"/>'),
)


def page_legend() -> str:
    """The key for a page read at any width: the wide one, and the phone's (:data:`NARROW`'s width, two columns of
    13 px text, where the wide one's single line scaled to ~4 px); the pages' CSS shows the one that fits."""
    box = '<rect x="{x}" y="{y}" width="14" height="12" fill="{c}"/>'
    entries = [(name, lambda x, y, c=colour: box.format(x=x, y=y + 5, c=c)) for name, colour in _LEGEND[:-1]]
    entries += _MARKS
    entries.append((_LEGEND[-1][0], lambda x, y: box.format(x=x, y=y + 5, c=_LEGEND[-1][1])))  # the long one: a line
    half, line = NARROW.width // 2, 24
    height = (len(entries) + 1) // 2 * line
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="legend narrow" viewBox="0 0 {NARROW.width} {height}" '
           f'width="{NARROW.width}" height="{height}" font-family="Helvetica, Arial, sans-serif" role="img" '
           'aria-label="Legend">']
    for i, (name, mark) in enumerate(entries):
        x, y = (i % 2) * half, (i // 2) * line
        out.append(f'{mark(x, y)}<text x="{x + 20}" y="{y + 16}" font-size="13" fill="#212121">{escape(name)}</text>')
    out.append("</svg>")
    return legend() + "".join(out)
