"""A run's timeline as an SVG Gantt chart: one bar per step, from ready to finished, against its due.

The x axis is SOP time from the run's start (a compressed drill reads in playbook minutes).
A black tick marks each step's due time and the part of a bar past it is red; amber
triangles are escalations (reminders included); white dots are approvals; the dashed
purple line is the run's deadline, the grey line its end. Plain SVG with inline colours,
no script and no external reference, so a chart prints and can be copied out on its own.

Drawn for every run of a report (10,000 runs in well under a second), so the axis is
cached per shape and each instant is converted once.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from functools import lru_cache
from html import escape

from flows.audit.model import MISSED, RunAudit, StepAudit
from flows.durations import format_duration

STATE_COLOURS = {
    "done": "#2e7d32", "rejected": "#ad1457", "failed": "#b71c1c", "timed_out": "#ef6c00", "blocked": "#9e9e9e",
    "skipped": "#9e9e9e", "cancelled": "#9e9e9e", "active": "#1565c0", "ready": "#1565c0", "running": "#1565c0",
}  # fmt: skip
LATE, DUE, ESCALATION, DEADLINE, END, GRID = "#c62828", "#212121", "#f9a825", "#6a1b9a", "#616161", "#e0e0e0"
WIDTH, LABEL, RIGHT, TOP, ROW, BAR = 960, 200, 28, 30, 22, 12
SPAN = WIDTH - LABEL - RIGHT
_TICKS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000)
_LEGEND = (
    ("done", STATE_COLOURS["done"]), ("late part", LATE), ("open", STATE_COLOURS["active"]),
    ("rejected", STATE_COLOURS["rejected"]), ("failed", STATE_COLOURS["failed"]),
    ("timed out", STATE_COLOURS["timed_out"]), ("skipped / blocked / cancelled", STATE_COLOURS["skipped"]),
)  # fmt: skip


@lru_cache(maxsize=8192)
def offset(seconds: int) -> str:
    """``+1h5m`` (SOP time from the start, whole seconds)."""
    return "+" + format_duration(timedelta(seconds=seconds))


@lru_cache(maxsize=1024)
def _axis(horizon: float, tick: int, bottom: int) -> str:
    parts = []
    for t in range(0, int(horizon) + 1, tick):
        x = LABEL + t / horizon * SPAN
        label = "0" if t == 0 else offset(t)
        parts.append(f'<line x1="{x:.0f}" y1="{TOP - 6}" x2="{x:.0f}" y2="{bottom}" stroke="{GRID}"/>'
                     f'<text x="{x:.0f}" y="{TOP - 10}" text-anchor="middle" font-size="10" fill="{END}">{label}</text>')
    return "".join(parts)


@lru_cache(maxsize=1024)
def _rows(step_ids: tuple[str, ...]) -> str:
    """The zebra stripes and step labels: the same for every run of one SOP text."""
    parts = [f'<rect x="0" y="{TOP + i * ROW}" width="{WIDTH}" height="{ROW}" fill="#f7f7f7"/>'
             for i in range(1, len(step_ids), 2)]
    for i, step_id in enumerate(step_ids):
        label = step_id if len(step_id) <= 28 else step_id[:27] + "…"
        parts.append(f'<text x="{LABEL - 8}" y="{TOP + i * ROW + ROW // 2 + 4}" text-anchor="end" font-size="12" '
                     f'fill="#212121">{escape(label)}</text>')
    return "".join(parts)


class _Scale:
    """SOP seconds to x. An open run long past everything it recorded is cut: its bars run off the edge.

    Each step's instants are converted to SOP seconds once, here: ``marks`` holds, per step,
    (ready, end, due, escalations, approvals), None where the step was never ready.
    """

    def __init__(self, run: RunAudit, now: datetime):
        start, speed = run.started_at, run.speed
        self.now = (now - start).total_seconds() * speed
        self.marks: list[tuple[float, float, float | None, list[float], list[float]] | None] = []
        known = 60.0
        for step in run.steps.values():
            if step.ready_at is None:
                self.marks.append(None)
                continue
            ready = (step.ready_at - start).total_seconds() * speed
            end = (step.finished_at - start).total_seconds() * speed if step.finished_at is not None else None
            due = (step.due_at - start).total_seconds() * speed if step.due_at is not None else None
            escalations = [(e.at - start).total_seconds() * speed for e in step.escalations]
            approvals = [(a.at - start).total_seconds() * speed for a in step.approvals]
            known = max(known, ready, end or 0.0, due or 0.0, *escalations)
            self.marks.append((ready, self.now if end is None else end, due, escalations, approvals))
        self.ended = (run.ended_at - start).total_seconds() * speed if run.ended_at is not None else None
        self.deadline = (run.deadline_at - start).total_seconds() * speed if run.deadline_at is not None else None
        known = max(known, self.ended or 0.0, self.deadline or 0.0)
        self.cut = run.ended_at is None and self.now > known * 1.25
        reach = known * 1.25 if self.cut else max(known, self.now if run.ended_at is None else 0.0)
        self.tick = next((t for t in _TICKS if reach / t <= 8), _TICKS[-1])
        self.horizon = float(math.ceil(reach / self.tick) * self.tick)  # the axis ends on a tick
        self.k = SPAN / self.horizon

    def x(self, seconds: float) -> float:
        return LABEL + min(self.horizon, max(0.0, seconds)) * self.k


def _step_row(out: list[str], step: StepAudit, y: int, scale: _Scale, marks: tuple | None, now: datetime) -> None:
    mid = y + ROW // 2
    if marks is None:
        why = "cancelled before it was ready" if step.state == "cancelled" else "not reached"
        out.append(f'<text x="{LABEL + 4}" y="{mid + 4}" font-size="11" font-style="italic" fill="#9e9e9e">{why}</text>')
        return
    ready, end, due, escalations, approvals = marks
    verdict = step.deadline(now)
    tip = f"{step.id}: {step.state}{f' by {step.actor}' if step.actor else ''}, ready {offset(int(ready))}"
    if step.finished_at is not None:
        tip += f", ended {offset(int(end))}"
    if due is not None:
        tip += f", due {offset(int(due))} ({verdict})"
    h, k = scale.horizon, scale.k  # x = LABEL + clamp(seconds) * k, inlined: this runs 100,000 times a report
    x0 = LABEL + min(h, max(0.0, ready)) * k
    x1 = LABEL + min(h, max(0.0, end)) * k
    xd = LABEL + min(h, max(0.0, due)) * k if due is not None else 0.0
    top = y + (ROW - BAR) // 2
    opacity = "" if step.finished_at is not None else ' fill-opacity="0.55"'
    late = due is not None and verdict == MISSED and end > due
    stop = xd if late else x1
    out.append(f'<g><title>{escape(tip)}</title><rect x="{x0:.0f}" y="{top}" width="{max(2.0, stop - x0):.0f}" '
               f'height="{BAR}" fill="{STATE_COLOURS.get(step.state, END)}"{opacity}/>')
    if late:
        out.append(f'<rect x="{stop:.0f}" y="{top}" width="{max(2.0, x1 - stop):.0f}" height="{BAR}" fill="{LATE}"{opacity}/>')
    if due is not None:
        out.append(f'<line x1="{xd:.0f}" y1="{y + 2}" x2="{xd:.0f}" y2="{y + ROW - 2}" stroke="{DUE}" stroke-width="2"/>')
    for at in escalations:
        xe = LABEL + min(h, max(0.0, at)) * k
        out.append(f'<polygon points="{xe - 4:.0f},{top - 5} {xe + 4:.0f},{top - 5} {xe:.0f},{top + 2}" '
                   f'fill="{ESCALATION}" stroke="#5d4037" stroke-width="0.5"/>')
    for at in approvals:
        out.append(f'<circle cx="{LABEL + min(h, max(0.0, at)) * k:.0f}" cy="{mid}" r="3" fill="#ffffff" stroke="{DUE}"/>')
    out.append("</g>")


def gantt(run: RunAudit, now: datetime) -> str:
    """The SVG of one run's timeline (fits any width: it scales with its ``viewBox``)."""
    scale = _Scale(run, now)
    steps = list(run.steps.values())
    bottom = TOP + len(steps) * ROW
    height = bottom + 12
    rid = escape(run.id)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
           f'height="{height}" role="img" font-family="Helvetica, Arial, sans-serif" aria-label="Timeline of run {rid}">'
           f'<title>Timeline of run {rid} ({escape(run.sop_id)}), SOP time from its start</title>']
    out.append(_rows(tuple(run.steps)))
    out.append(_axis(scale.horizon, scale.tick, bottom))
    for i, (step, marks) in enumerate(zip(steps, scale.marks, strict=True)):
        _step_row(out, step, TOP + i * ROW, scale, marks, now)
    if scale.ended is not None:
        xe = scale.x(scale.ended)
        out.append(f'<line x1="{xe:.0f}" y1="{TOP - 4}" x2="{xe:.0f}" y2="{bottom}" stroke="{END}" stroke-width="1.5"/>'
                   f'<text x="{xe + 3:.0f}" y="{bottom + 10}" font-size="10" fill="{END}">{escape(run.outcome_text[:30])}</text>')
    if scale.cut:
        out.append(f'<text x="{WIDTH - 4}" y="{bottom + 10}" text-anchor="end" font-size="10" fill="{END}">'
                   f'still open at {offset(int(scale.now))} ▸</text>')
    if scale.deadline is not None:
        at = scale.deadline
        xd = scale.x(at)
        out.append(f'<line x1="{xd:.0f}" y1="{TOP - 4}" x2="{xd:.0f}" y2="{bottom}" stroke="{DEADLINE}" stroke-width="2" '
                   f'stroke-dasharray="6 4"><title>run deadline {offset(int(at))} ({run.deadline(now)})</title></line>'
                   f'<text x="{xd - 3:.0f}" y="{bottom + 10}" text-anchor="end" font-size="10" fill="{DEADLINE}">deadline</text>')
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
