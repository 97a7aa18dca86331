"""The audit report as one self-contained HTML file: figures, definitions, every run's timeline.

No script, no external stylesheet, font or image: the file opens anywhere, can be mailed
or archived as evidence, and prints on A4 landscape (a run's timeline never splits across
pages, table headers repeat).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from typing import Any, overload

from jinja2 import Environment
from markupsafe import Markup, escape

from flows.audit.gantt import gantt, legend
from flows.audit.model import RunAudit
from flows.audit.queries import paused_gc
from flows.audit.report import DEFINITIONS, SOP_TIME_NOTE, Compliance, ComplianceReport
from flows.audit.scope import Window
from flows.audit.verification import Verification
from flows.language.durations import format_duration

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SOP audit report &#8212; {{ period }}</title>
<style>
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; box-sizing: border-box; }
body { margin: 24px; color: #212121; font: 13px/1.45 Helvetica, Arial, sans-serif; max-width: 1200px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 22px 0 6px; color: #1f3a5f; }
.meta, .note { color: #555; margin: 2px 0; }
.chain { margin: 8px 0; padding: 6px 10px; border-radius: 4px; }
.chain.ok { background: #e8f5e9; color: #1b5e20; } .chain.broken { background: #ffebee; color: #b71c1c; font-weight: bold; }
.kpis { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.kpi { border: 1px solid #d0d7de; border-radius: 4px; padding: 6px 12px; min-width: 130px; }
.kpi b { display: block; font-size: 20px; color: #1f3a5f; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 10px; }
th { background: #1f3a5f; color: #ffffff; text-align: left; padding: 5px 8px; font-weight: 600; }
td { padding: 4px 8px; border-bottom: 1px solid #e0e0e0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #f6f8fa; }
.missed { color: #c62828; font-weight: 600; } .met { color: #2e7d32; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; margin: 4px 0; }
dt { font-weight: 600; } dd { margin: 0; }
section.run { break-inside: avoid; page-break-inside: avoid; border-top: 1px solid #d0d7de; padding: 6px 0 10px; }
section.run h3 { font-size: 13px; margin: 0 0 4px; font-weight: 600; }
section.run h3 span { font-weight: normal; color: #555; }
svg.gantt, svg.legend { display: block; width: 100%; height: auto; max-width: 960px; }
@page { size: A4 landscape; margin: 12mm; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } thead { display: table-header-group; }
  tr { break-inside: avoid; } .kpi { border-color: #999; } }
</style></head>
<body>
<header>
<h1>SOP audit report</h1>
<p class="meta">{{ period }} &#183; {{ filters }}generated {{ generated }} UTC &#183; {{ report.runs|length }} run(s)</p>
{% if chain %}<p class="chain {{ 'ok' if chain.ok else 'broken' }}" id="chain">{{ chain.text }}</p>{% endif %}
<p class="note">{{ sop_time_note }} Times are UTC.</p>
</header>
<div class="kpis" id="kpis">
<div class="kpi">runs<b>{{ o.runs }}</b></div>
<div class="kpi">deadline met<b>{{ pct(o.on_time_pct) }}</b>{{ o.met }} of {{ o.met + o.missed }}</div>
<div class="kpi">time to acknowledge<b>{{ dur(o.tta_median_s) }}</b>median &#183; p90 {{ dur(o.tta_p90_s) }}</div>
<div class="kpi">time to complete<b>{{ dur(o.ttc_median_s) }}</b>median &#183; p90 {{ dur(o.ttc_p90_s) }}</div>
<div class="kpi">escalations per run<b>{{ num(o.escalations_per_run) }}</b>{{ o.escalations }} in all</div>
{% if o.rework_rounds or o.handovers or o.status_asked %}<div class="kpi">rework rounds<b>{{ o.rework_rounds }}</b>{{ o.handovers }} hand-overs</div>
<div class="kpi">status updates<b>{{ o.status_updates }}</b>{{ o.status_missed }} missed of {{ o.status_asked }} asked</div>{% endif %}
<div class="kpi">late steps<b>{{ o.late_steps }}</b>of {{ o.timed_steps }} with a due time</div>
{% if o.holds or o.met_wall != o.met or o.missed_wall != o.missed or o.late_steps_wall != o.late_steps %}<div class="kpi">on time on wall time<b>{{ pct(o.on_time_wall_pct) }}</b>{{ o.met_wall }} met, {{ o.missed_wall }} missed (calendars round the clock)</div>
<div class="kpi">time on hold<b>{{ dur(o.held_s) }}</b>{{ o.holds }} holds &#183; late {{ o.late_steps_counting_holds }} counting hold time, {{ o.late_steps_wall }} on wall time</div>{% endif %}
</div>
{% for title, ident, rows, label in tables %}
<h2>{{ title }}</h2>
<table class="compliance" id="{{ ident }}"><thead><tr><th>{{ label }}</th><th class="num">runs</th><th class="num">finished</th>
<th class="num">cancelled</th><th class="num">open</th><th class="num">deadline met</th><th class="num">TTA median</th>
<th class="num">TTA p90</th><th class="num">TTC median</th><th class="num">TTC p90</th><th class="num">escalations / run</th>
<th class="num">late steps</th></tr></thead><tbody>
{% for r in rows %}<tr><td>{{ r.key }}</td><td class="num">{{ r.runs }}</td><td class="num">{{ r.finished }}</td>
<td class="num">{{ r.cancelled }}</td><td class="num">{{ r.open }}</td>
<td class="num{{ ' missed' if r.missed else '' }}">{{ pct(r.on_time_pct) }} ({{ r.met }}/{{ r.met + r.missed }})</td>
<td class="num">{{ dur(r.tta_median_s) }}</td><td class="num">{{ dur(r.tta_p90_s) }}</td><td class="num">{{ dur(r.ttc_median_s) }}</td>
<td class="num">{{ dur(r.ttc_p90_s) }}</td><td class="num">{{ num(r.escalations_per_run) }}</td>
<td class="num">{{ r.late_steps }}/{{ r.timed_steps }}</td></tr>
{% else %}<tr><td colspan="12">no runs</td></tr>{% endfor %}
</tbody></table>
{% endfor %}
<h2>Late steps by role</h2>
<table class="roles" id="by-role"><thead><tr><th>role</th><th class="num">steps with a due time</th><th class="num">late</th>
<th class="num">late %</th></tr></thead><tbody>
{% for r in report.by_role %}<tr><td>{{ r.key }}</td><td class="num">{{ r.timed_steps }}</td>
<td class="num{{ ' missed' if r.late_steps else '' }}">{{ r.late_steps }}</td><td class="num">{{ pct(r.late_pct) }}</td></tr>
{% else %}<tr><td colspan="4">no steps with a due time</td></tr>{% endfor %}
</tbody></table>
<h2>Silenced triggers</h2>
<table class="silences" id="silences"><thead><tr><th>silence</th><th>made by</th><th>why</th><th>matchers</th>
<th class="num">triggers silenced</th><th>per SOP</th><th>ended</th></tr></thead><tbody>
{% for s in report.silences %}<tr><td>{{ s.silence }}</td><td>{{ s.created_by }}</td><td>{{ s.reason }}</td><td>{{ s.matchers }}</td>
<td class="num">{{ s.silenced }}</td><td>{% for sop, n in s.by_sop | dictsort %}{{ sop }} {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td>{% if s.ended_by %}{{ s.ended_by }}: {{ s.end_reason }}{% elif s.ends_at %}until {{ s.ends_at[:19] }}{% endif %}</td></tr>
{% else %}<tr><td colspan="7">no trigger was silenced</td></tr>{% endfor %}
</tbody></table>
<h2>Follow-ups done within their window</h2>
<table class="follow-ups" id="follow-ups"><thead><tr><th>started by the end of</th><th>follow-up</th><th class="num">count</th>
<th class="num">on time</th><th class="num">late</th><th class="num">open</th><th class="num">overdue</th><th class="num">not done</th>
<th class="num">on time %</th></tr></thead><tbody>
{% for f in report.follow_ups %}<tr><td>{{ f.parent_sop }}</td><td>{{ f.sop }}</td><td class="num">{{ f.count }}</td>
<td class="num">{{ f.on_time }}</td><td class="num{{ ' missed' if f.late else '' }}">{{ f.late }}</td><td class="num">{{ f.open }}</td>
<td class="num{{ ' missed' if f.overdue else '' }}">{{ f.overdue }}</td><td class="num">{{ f.not_done }}</td><td class="num">{{ pct(f.on_time_pct) }}</td></tr>
{% else %}<tr><td colspan="9">no follow-up was started</td></tr>{% endfor %}
</tbody></table>
<h2>Definitions</h2>
<dl>{% for name, text in definitions %}<dt>{{ name }}</dt><dd>{{ text }}</dd>{% endfor %}</dl>
<h2>Run timelines</h2>
<p class="note">One chart per run, SOP time from the run's start: a bar from when a step was ready to when it ended.</p>
{{ legend }}
{{ charts }}
{% if hidden %}<p class="note">{{ hidden }} more run(s) not drawn (see <code>sop audit show RUN</code>).</p>{% endif %}
</body></html>
"""

_env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_template = _env.from_string(_TEMPLATE)


_NONE = Markup("&#8212;")  # an em dash: no figure


def _dur(seconds: float | None) -> str:
    return _NONE if seconds is None else format_duration(timedelta(seconds=seconds))


def _pct(value: float | None) -> str:
    return _NONE if value is None else f"{value:g}%"


def _num(value: float | None) -> str:
    return _NONE if value is None else f"{value:g}"


def _chain(verification: Verification | None) -> dict[str, Any] | None:
    if verification is None:
        return None
    if verification.ok:
        anchors = " ".join(f"--anchor {a}" for a in verification.anchors)  # whole: an auditor re-checks from this page
        past = f" {verification.tail.words}" if verification.tail.records else ""
        return {"ok": True, "text": f"✓ Hash chain verified: {verification.records:,} records intact, head record "
                                    f"{verification.head_seq} (hash {verification.head_hash}); "
                                    f"{verification.texts_checked} pinned SOP text(s) match their hashes.{past} Later, "
                                    f"`sop audit verify {anchors}` proves nothing was cut off the end or "
                                    "rewritten since."}
    first = verification.first_break
    what = f"{first.where} ({first.kind}): {first.message}" if first else "pinned SOP texts do not match their hashes"
    return {"ok": False, "text": f"✗ The ledger does not verify — {what}. The figures below rest on it."}


def section(run: RunAudit, now: datetime) -> str:
    """One run's heading and timeline chart, as text (:func:`run_section` as Markup).

    Our own markup is ASCII (``&#183;`` for the middle dot), so 10,000 of them join, travel
    between processes and encode as plain bytes.
    """
    verdict = _escaped(run.deadline(now))
    rid = escape(run.id)
    esc = f" &#183; {run.escalations} escalation(s)" if run.escalations else ""
    return (f'<section class="run" id="run-{rid}"><h3>{rid} &#183; {_escaped(run.sop_id)}<span> '
            f"v{_escaped(run.version or '?')} {_escaped(run.sop_hash[:12])} &#183; {_escaped(run.sop_class)} &#183; "
            f"{escape(run.trigger_text())} &#183; started {run.started_at.isoformat(' ', 'seconds')[:19]} &#183; "
            f"{escape(run.outcome_text)} &#183; deadline <b class=\"{verdict}\">{verdict}</b>{esc}</span></h3>"
            f"{gantt(run, now)}</section>")


def run_section(run: RunAudit, now: datetime) -> Markup:
    """One run's heading and timeline chart."""
    return Markup(section(run, now))


@lru_cache(maxsize=4096)
def _escaped(text: str) -> str:
    return str(escape(text))


class Sections(Sequence[Markup]):
    """The run sections of a report, in start order, kept as a few long texts (one per process
    that drew them), each section followed by a newline, with where each section ends.

    Handing 5,000 sections from one process to another, and joining 10,000 into the page,
    costs more than slicing one out when it is asked for: :func:`render_html` writes the
    texts as they are.
    """

    def __init__(self, blocks: Iterable[tuple[str, list[int]]] = ()):
        self.blocks = [(text, ends) for text, ends in blocks if ends]

    @classmethod
    def draw(cls, runs: Sequence[RunAudit], now: datetime, progress: Callable[[float], None] | None = None) -> Sections:
        """Each run's :func:`section`, as one block (``progress``: told the share drawn every 500 runs)."""
        texts: list[str] = []
        for start in range(0, len(runs), 500):
            texts += [section(run, now) for run in runs[start:start + 500]]
            if progress is not None:
                progress(min(1.0, (start + 500) / len(runs)))
        ends = list(accumulate(len(text) + 1 for text in texts))
        texts.append("")
        return cls([("\n".join(texts), ends)])

    def head(self, count: int) -> Sections:
        """The first ``count`` sections."""
        blocks = []
        for text, ends in self.blocks:
            if count <= 0:
                break
            if count < len(ends):
                text, ends = text[:ends[count - 1]], ends[:count]
            blocks.append((text, ends))
            count -= len(ends)
        return Sections(blocks)

    def texts(self) -> list[str]:
        return [text for text, _ in self.blocks]

    def __len__(self) -> int:
        return sum(len(ends) for _, ends in self.blocks)

    @overload
    def __getitem__(self, index: int) -> Markup: ...

    @overload
    def __getitem__(self, index: slice) -> list[Markup]: ...

    def __getitem__(self, index: int | slice) -> Markup | list[Markup]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        for text, ends in self.blocks:
            if 0 <= index < len(ends):
                return Markup(text[ends[index - 1] if index else 0:ends[index] - 1])
            index -= len(ends)
        raise IndexError("section index out of range")


_SLOT = "<!--sop-audit-charts-->"  # where the charts go (escaped text can hold no "<")


def render_html(report: ComplianceReport, charts: Sequence[Markup], *, verification: Verification | None = None) -> str:
    """The whole report around the charts of its first runs (drawn by
    :func:`flows.audit.parallel.report_with_sections` as :class:`Sections`, or :func:`run_section` each)."""
    now = report.generated_at
    # the window's ends with their zone (UTC, as every time of the page): the title is what is filed as evidence
    period = Window(report.since, report.until).describe("UTC")
    period = period[0].upper() + period[1:]
    filters = "".join(f"{name} {escape(value)} &#183; " for name, value in (("SOP", report.sop), ("class", report.sop_class))
                      if value)
    if note := report.drills_note():
        filters += f"{escape(note)} &#183; "
    tables: list[tuple[str, str, list[Compliance], str]] = [
        ("Compliance by SOP", "by-sop", report.by_sop, "SOP"), ("Compliance by class", "by-class", report.by_class, "class")]
    with paused_gc():
        page = _template.render(
            report=report, o=report.overall, period=period, filters=Markup(filters),
            generated=now.strftime("%Y-%m-%d %H:%M:%S"), chain=_chain(verification), sop_time_note=SOP_TIME_NOTE,
            tables=tables, definitions=[(k.replace("_", " "), v) for k, v in DEFINITIONS.items() if k != "time"],
            legend=Markup(legend()), charts=Markup(_SLOT), hidden=len(report.runs) - len(charts),
            dur=_dur, pct=_pct, num=_num)
        before, after = page.split(_SLOT)
        texts = charts.texts() if isinstance(charts, Sections) else [f"{chart}\n" for chart in charts]
        return "".join([before, *texts, after])  # one copy of the charts, however many


__all__ = ["Sections", "render_html", "run_section", "section"]
