"""Reading runs for an audit, from the chain: ``run_started`` records pick the runs, the rest fill them in.

Read-only: nothing here writes to the ledger. Every function takes a connection from
:meth:`flows.ledger.Ledger.read`, so one audit reads one consistent snapshot.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.audit.builder import HANDLERS, SUMMARY_DATA, SUMMARY_KINDS, RunBuilder
from flows.audit.facts import Entry
from flows.audit.model import Outline, RunAudit, is_drill, parse_time
from flows.audit.scope import AuditError, NotFound, Window, check_class, check_drills, drills_kept
from flows.language.library import pinned_sop
from flows.ledger import utc
from flows.ledger.schema import records, sop_versions


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pinned_texts(conn: Connection, hashes: Iterable[str]) -> dict[str, str]:
    """The pinned SOP texts with these hashes (hashes with no text are left out)."""
    wanted = sorted(set(hashes))
    out: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for row in conn.execute(sa.select(sop_versions.c.hash, sop_versions.c.text).where(sop_versions.c.hash.in_(chunk))):
            out[row.hash] = row.text
    return out


def outlines(texts: dict[str, str]) -> dict[str, Outline]:
    """The outline of each pinned SOP text that still parses (an edited one may not: verify reports it)."""
    out = {}
    for digest, text in texts.items():
        try:
            out[digest] = Outline.of(pinned_sop(digest, text))
        except Exception:
            continue
    return out


def resolve_run(conn: Connection, run_id: str) -> str:
    """The full id of a run from its id or a unique prefix; AuditError otherwise."""
    started = sa.select(records.c.run_id).where(records.c.kind == "run_started")
    if conn.execute(started.where(records.c.run_id == run_id)).first():
        return run_id
    # a prefix, not a pattern: `%` and `_` in what a user typed match themselves
    found = [r.run_id for r in conn.execute(started.where(records.c.run_id.startswith(run_id, autoescape=True))
                                            .limit(3))] if run_id else []
    if len(found) == 1:
        return found[0]
    if found:
        raise AuditError(f"run id `{run_id}` is ambiguous (matches {', '.join(found)}…)", "give more characters")
    raise NotFound(f"no run `{run_id}` in the ledger", "list runs with `sop audit runs`")


#: at most this many runs open at a cut are looked up by id after it (an index lookup each)
OPEN_BY_ID = 500


@dataclass(frozen=True)
class Part:
    """A slice of a report's runs for one process, by start order: the runs whose ``run_started``
    record's seq is in [``first``, ``stop``) (either end open), read from records up to ``max_seq``.

    A run's records follow its ``run_started`` record (the engine writes it first), so a part
    needs no record before ``first``; the records before ``stop`` are the part's own (and
    those of runs still open at ``first``, which readers skip); after ``stop`` only the runs
    still open at the cut add records, found by run id (an index lookup per run).
    """

    first: int | None = None
    stop: int | None = None
    max_seq: int | None = None  # the snapshot every part reads (one consistent report across processes)

    def starts(self) -> Any:
        """Which ``run_started`` records are this part's."""
        return _seq_range(self.first, self._end(self.stop))

    def segments(self, builders: dict[str, RunBuilder]) -> list[Any]:
        """Where this part's runs' records are, in chain order: one range, or two when ``stop`` cuts it.

        The second is a callable, asked once the first is read: the records after the cut
        of the runs still open by then (most often none, and then nothing is read).
        """
        if self.stop is None:
            return [_seq_range(self.first, self._end())]
        return [self.starts(), lambda: self._after_cut(builders)]

    def _after_cut(self, builders: dict[str, RunBuilder]) -> Any:
        open_ids = [run_id for run_id, b in builders.items() if b.run.status == "open"]
        if not open_ids:
            return None
        if len(open_ids) > OPEN_BY_ID:  # many: name them by the part's run_started records instead
            mine = sa.select(records.c.run_id).where(records.c.kind == "run_started", self.starts())
            return sa.and_(_seq_range(self.stop, self._end()), records.c.run_id.in_(mine))
        return sa.and_(_seq_range(self.stop, self._end()), records.c.run_id.in_(open_ids))

    def _end(self, stop: int | None = None) -> int | None:
        """The one upper bound (exclusive) of ``stop`` and ``max_seq``: SQLite ranges over the
        primary key by one bound of each side and filters by any other, row by row."""
        ends = [end for end in (stop, None if self.max_seq is None else self.max_seq + 1) if end is not None]
        return min(ends) if ends else None


def _seq_range(low: int | None, high: int | None) -> Any:
    """Records with ``low`` <= seq < ``high`` (either open)."""
    seq = records.c.seq
    return sa.and_(sa.true(), *([seq >= low] if low is not None else []), *([seq < high] if high is not None else []))


def load_runs(conn: Connection, *, within: Window | None = None, sop_id: str | None = None,
              sop_class: str | None = None, run_ids: list[str] | None = None, full: bool = False,
              part: Part | None = None, progress: Callable[[int], None] | None = None,
              drills: str = "include") -> list[RunAudit]:
    """Runs in start order, each rebuilt from its records.

    ``full`` keeps every record as a timeline entry and reads notifications and pinned
    texts too (``sop audit show``); without it only the records figures and timelines
    need are decoded (fast enough for tens of thousands of runs). ``part`` reads a slice
    (see :mod:`flows.audit.parallel`). ``progress`` is told, every 10,000 records read for a
    report, the seq of the run_started record of the run the last one belongs to. ``drills``:
    ``include`` them (the default), ``exclude`` them or keep ``only`` them (:func:`~flows.audit.model.is_drill`).
    """
    check_class(sop_class)
    drills = check_drills(drills)
    within = within or Window()
    with paused_gc():
        builders = _builders(conn, within, sop_id, sop_class, run_ids, full, part, drills)
        if builders:
            filtered = sop_id is not None or sop_class is not None or run_ids is not None or drills != "include"
            _fill(conn, builders, within, filtered, full, part, progress)
    return [b.run for b in builders.values()]


def _builders(conn: Connection, within: Window, sop_id: str | None, sop_class: str | None,
              run_ids: list[str] | None, full: bool, part: Part | None = None,
              drills: str = "include") -> dict[str, RunBuilder]:
    """A builder per run whose ``run_started`` record is in the window and fits the filters."""
    starts = sa.select(records.c.seq, at_column(conn), records.c.run_id, records.c.actor, records.c.data).where(
        records.c.kind == "run_started")
    if within.since is not None:
        starts = starts.where(records.c.at >= within.since)
    if within.until is not None:
        starts = starts.where(records.c.at < within.until)
    if run_ids is not None:
        starts = starts.where(records.c.run_id.in_(run_ids))
    if part is not None:
        starts = starts.where(part.starts())
    heads = [(seq, record_time(at), run_id, actor, json.loads(data))
             for chunk in _chunks(conn, starts.order_by(records.c.seq)) for seq, at, run_id, actor, data in chunk]
    texts = pinned_texts(conn, (data.get("sop_hash") or "" for *_, data in heads))
    shapes = outlines(texts)
    builders: dict[str, RunBuilder] = {}
    for seq, at, run_id, actor, data in heads:
        sop = shapes.get(data.get("sop_hash") or "")
        if sop_id is not None and data.get("sop") != sop_id:
            continue
        if sop_class is not None and (sop.sop_class if sop else None) != sop_class:
            continue
        if drills != "include" and not drills_kept(drills, is_drill(data.get("trigger"))):
            continue
        builder = RunBuilder(seq, at, actor, data, run_id, sop, keep_entries=full)  # type: ignore[arg-type]
        if full:
            text = texts.get(builder.run.sop_hash)
            builder.run.sop_text = text
            builder.run.sop_text_ok = None if text is None else text_hash(text) == builder.run.sop_hash
        builders[run_id] = builder
    return builders


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while building many small acyclic objects: its passes would walk
    them all, again and again, and find nothing to free."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def record_time(value: Any) -> datetime:
    """A record's time as the driver hands it back: a datetime, or SQLite's naive UTC text (parsed fast)."""
    if isinstance(value, datetime):
        return utc(value)  # type: ignore[return-value]
    try:
        return datetime.fromisoformat(value + "+00:00")
    except ValueError:  # text written by other means, with an offset of its own
        return parse_time(value)  # type: ignore[return-value]


def at_column(conn: Connection) -> Any:
    # SQLite keeps times as text: skip SQLAlchemy's per-row conversion and parse them in record_time
    return sa.type_coerce(records.c.at, sa.String) if conn.dialect.name == "sqlite" else records.c.at


def _fill(conn: Connection, builders: dict[str, RunBuilder], within: Window, filtered: bool, full: bool,
          part: Part | None = None, progress: Callable[[int], None] | None = None) -> None:
    query = sa.select(records.c.seq, at_column(conn), records.c.run_id, records.c.kind, records.c.step_id,
                      records.c.actor, records.c.data).where(records.c.kind != "run_started")
    if not full:
        query = query.where(records.c.kind.in_(SUMMARY_KINDS))
    if len(builders) <= 500:
        query = query.where(records.c.run_id.in_(list(builders)))
    elif within.since is not None or within.until is not None or filtered:
        chosen = sa.select(records.c.run_id).where(records.c.kind == "run_started")
        if within.since is not None:
            chosen = chosen.where(records.c.at >= within.since)
        if within.until is not None:
            chosen = chosen.where(records.c.at < within.until)
        query = query.where(records.c.run_id.in_(chosen))
    else:
        query = query.where(records.c.run_id.is_not(None))
    segments = part.segments(builders) if part is not None else [sa.true()]  # each in chain order, one after the other
    if not full:
        _fill_summary(conn, builders, query, segments, progress)
        return
    get, handlers, empty, parse = builders.get, HANDLERS, {}, datetime.fromisoformat
    for segment in _in_turn(segments):
        for chunk in _chunks(conn, query.where(segment).order_by(records.c.seq)):
            for seq, at, run_id, kind, step_id, actor, data in chunk:
                builder = get(run_id)
                if builder is None:
                    continue
                when = parse(at + "+00:00") if type(at) is str and len(at) == 26 else record_time(at)
                values = empty if data is None else _decode(data)
                builder.run.entries.append(Entry(seq, when, kind, step_id, actor, values))
                handler = handlers.get(kind)
                if handler is not None:
                    handler(builder, seq, when, step_id, actor, values)


def _in_turn(segments: list[Any]) -> Iterator[Any]:
    """Each segment's clause, a callable one asked only when its turn comes (see :meth:`Part.segments`);
    one that answers None has nothing to read."""
    for segment in segments:
        clause = segment() if callable(segment) else segment
        if clause is not None:
            yield clause


def _decode(data: str) -> Any:
    try:  # json.loads without its Python layers (canonical JSON: no surrounding blanks)
        values, end = _scan(data, 0)
    except StopIteration:
        end = -1
    if end != len(data):
        values = json.loads(data)  # not canonical: decode (or fail) as usual
    return values


def _fill_summary(conn: Connection, builders: dict[str, RunBuilder], query: Any, segments: list[Any],
                  progress: Callable[[int], None] | None = None) -> None:
    """The records figures and timelines need, with only what they read of each: the hot loop of a
    10,000-run report.

    Every value the driver hands back is an object to build, so the database leaves out what
    no handler reads: the kind comes as one letter (CPython keeps one object per one-letter
    string), seq only for the kinds that keep it, the actor only for the kinds that record
    who, the data only for the kinds whose handler reads it, and of a report's data only
    its deadline verdict (canonical JSON sorts keys, so it comes first), as ``t``/``f``/``n``.
    """
    kind, data = records.c.kind, records.c.data
    verdict_prefix = sa.func.substr(data, 1, len(_VERDICT) + 4)
    query = query.with_only_columns(
        sa.case((kind.in_(_SEQ_KINDS), records.c.seq), else_=sa.null()),
        *query.selected_columns[1:3],
        sa.case(_CODES, value=kind, else_=sa.null()),  # CASE kind WHEN …: reads the kind once
        records.c.step_id,
        sa.case((kind.in_(_ACTOR_KINDS), records.c.actor), else_=sa.null()),
        sa.case((kind.in_(_REPORTED), sa.case((verdict_prefix.in_(_VERDICT_PREFIXES),
                                               sa.func.substr(data, len(_VERDICT) + 1, 1)), else_=data)),
                (kind.in_(SUMMARY_DATA), data), else_=sa.null()))
    get, handlers, empty, parse, verdicts = builders.get, _CODED_HANDLERS, {}, datetime.fromisoformat, _VERDICTS
    for segment in _in_turn(segments):
        for chunk in _chunks(conn, query.where(segment).order_by(records.c.seq)):
            for seq, at, run_id, code, step_id, actor, text in chunk:
                builder = get(run_id)
                if builder is None:
                    continue
                when = parse(at + "+00:00") if type(at) is str and len(at) == 26 else record_time(at)
                if text is None:
                    values = empty
                elif len(text) == 1:
                    values = verdicts[text]
                else:
                    values = _decode(text)
                handlers[code](builder, seq, when, step_id, actor, values)
            if progress is not None and (last := get(chunk[-1][2])) is not None:
                progress(last.run.started_seq)


def _chunks(conn: Connection, query: Any, size: int = 10_000) -> Iterator[Sequence[Any]]:
    """The rows of a query, a chunk at a time. On SQLite straight from the driver's cursor: these
    columns need no conversion (times come as text, see :func:`at_column`), and building SQLAlchemy's
    row objects is a large share of reading a long report."""
    result = conn.execute(query)
    try:
        source = getattr(result, "cursor", None) if conn.dialect.name == "sqlite" else None
        fetch = (source or result).fetchmany
        while chunk := fetch(size):
            yield chunk
    finally:
        result.close()


_scan = json.JSONDecoder().scan_once  # the C scanner json.loads ends in (same decoder settings)


_REPORTED = ("step_done", "step_rejected")
_VERDICT = '{"deadline_met":'
_VERDICTS = {"t": {"deadline_met": True}, "f": {"deadline_met": False}, "n": {"deadline_met": None}}
_VERDICT_PREFIXES = tuple(_VERDICT + word for word in ("true", "fals", "null"))
#: each summary kind's one-letter code, and the handler of each code
_CODES = {name: chr(ord("a") + i) for i, name in enumerate(k for k in SUMMARY_KINDS if k != "run_started")}
_CODED_HANDLERS = {code: HANDLERS[name] for name, code in _CODES.items()}
#: the kinds whose handler keeps the record's seq, and those whose handler reads its actor
_SEQ_KINDS = ("escalation", "approval")
_ACTOR_KINDS = ("approval", "run_cancelled", *(k for k in SUMMARY_KINDS if HANDLERS[k].__class__ is partial))

def load_run(conn: Connection, run_id: str) -> RunAudit:
    """One run in full (every record, notifications, the pinned text); AuditError when unknown."""
    full_id = resolve_run(conn, run_id)
    [run] = load_runs(conn, run_ids=[full_id], full=True)
    return run


__all__ = ["OPEN_BY_ID", "Part", "load_run", "load_runs", "outlines", "paused_gc", "pinned_texts", "resolve_run",
           "text_hash"]
