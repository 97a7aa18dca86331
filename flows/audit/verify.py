"""``sop audit verify``: recompute the hash chain and name the first record that breaks it.

Each record's hash covers its predecessor's hash and its own fields, sequence number
included (see :func:`flows.ledger.record_hash`). Walking the chain from the genesis hash,
the first record whose stored hash or link does not check out is the break; looking at
how it fails tells what was done:

- *edited*: its fields no longer hash to its stored hash (or, re-hashed, the next record
  still links to its original hash);
- *deleted*: the sequence jumps, or a record was written under a higher number (the later
  records were renumbered to close the gap);
- *inserted*: the next record links over it to its predecessor, or a record was written
  under a lower number (the later records were renumbered to make room);
- *reordered*: it links to a record that now comes after it.

Since lanes (docs/audit.md, "How the chain is kept") there are several chains: the records
written before lanes (``chain`` NULL, in ``seq`` order, as above) and one per lane (in ``pos``
order, each record hashing its seq, lane and place too). Each is walked the same way; a break
in a lane says which (``lane``, and ``seq`` is then the place in that lane). The checkpoints
(lane 0) fold every lane's head: a lane that no longer reaches a head a checkpoint saw was cut
(*truncated*), one whose record there hashes otherwise was *rewritten*.

What chains alone cannot show (records cut off the end since the last checkpoint, or the
checkpoints' own tail rewritten), the anchors a person noted down do. What the walk finds,
and what to note down, is a :class:`~flows.audit.verification.Verification`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from json.encoder import encode_basestring
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.audit.queries import at_column, record_time, text_hash
from flows.audit.tail import tail_of
from flows.audit.verification import Anchor, Break, Verification, head_of
from flows.ledger import CHECKPOINT_LANE, GENESIS, record_hash, utc
from flows.ledger.schema import records, sop_versions

_RENUMBER_REACH = 8  # how far a renumbered record is looked for (records deleted or inserted at once)


def _hash(row: Any, prev_hash: str, seq: int) -> str:
    """The record's hash were it at ``seq`` (in a lane: at that place)."""
    if row.lane is None:
        return record_hash(prev_hash, seq, row.at, row.run_id, row.step_id, row.kind, row.actor, row.data)
    return record_hash(prev_hash, row.gseq, row.at, row.run_id, row.step_id, row.kind, row.actor, row.data,
                       row.lane, seq)


def _origin(row: Any, written_at: dict[str, int]) -> int | None:
    """The sequence number a record was written under (its own, unless it was moved); None if edited."""
    if _hash(row, row.prev_hash, row.seq) == row.hash:
        return row.seq
    linked_to = written_at.get(row.prev_hash)
    tries = [linked_to + 1] if linked_to is not None else []
    tries += [row.seq + d * s for d in range(1, _RENUMBER_REACH + 1) for s in (1, -1) if row.seq + d * s > 0]
    for seq in dict.fromkeys(tries):
        if seq != row.seq and _hash(row, row.prev_hash, seq) == row.hash:
            return seq
    return None


def _classify(row: Any, following: Any, prev_seq: int, prev_hash: str, written_at: dict[str, int],
              name: Callable[[int], str] = lambda place: f"record {place}") -> Break | None:
    """What breaks at ``row`` (places: seqs before lanes, pos in a lane), its message naming places by ``name``."""
    expected = prev_seq + 1
    origin = _origin(row, written_at)
    linked = row.prev_hash == prev_hash
    if origin == row.seq and linked and row.seq == expected:
        return None
    if origin is not None and origin != row.seq:
        target = written_at.get(row.prev_hash)
        if target is not None and target >= row.seq:
            return Break(row.seq, "reordered", f"{name(row.seq)} is the record written as {origin}: it links to "
                                               f"{name(target)}, which now comes after it (records were reordered)")
        if origin > row.seq:
            return Break(row.seq, "deleted", f"{origin - row.seq} record(s) before {name(row.seq)} were deleted and the "
                                             f"later records renumbered to close the gap ({name(row.seq)} was written as {origin})")
        first = target + 1 if target is not None else origin
        return Break(first, "inserted", f"{name(first)} was inserted: {name(row.seq)} was written as {origin} and "
                                        f"links to {name(target) if target is not None else 'record ?'}")
    if row.seq > expected:
        missing = name(expected) if row.seq == expected + 1 else f"{name(expected)}–{row.seq - 1}".replace("record", "records", 1)
        return Break(expected, "deleted", f"{missing} deleted: the chain jumps from {name(prev_seq).removeprefix('record ')} "
                                          f"to {name(row.seq).removeprefix('record ')}")
    if following is not None and following.prev_hash == prev_hash:
        return Break(row.seq, "inserted", f"{name(row.seq)} was inserted: {name(following.seq)} links straight "
                                          f"past it to {'the genesis' if prev_seq == 0 else name(prev_seq)}")
    if origin == row.seq and not linked:
        if prev_seq == 0:
            return Break(row.seq, "edited", f"{name(row.seq)} does not start from the genesis hash")
        return Break(prev_seq, "edited", f"{name(prev_seq)} was changed and its hash recomputed: {name(row.seq)} "
                                         f"still links to its original hash")
    return Break(row.seq, "edited", f"{name(row.seq)} does not match its hash: its fields were edited "
                                    f"(or it was written outside the ledger)")


def _in_lane(place: int, seq_at: dict[int, int]) -> str:
    """A place of a lane as a message names it: ``record 123 (place 92)``, or ``place 92`` when it is gone."""
    seq = seq_at.get(place)
    return f"record {seq} (place {place})" if seq is not None else f"place {place}"


def _place(lane: int | None) -> Any:
    """The column a chain is in order of: seq before lanes, pos in a lane."""
    return records.c.seq if lane is None else records.c.pos


def _in(lane: int | None) -> Any:
    return records.c.chain.is_(None) if lane is None else records.c.chain == lane


def _rows(conn: Connection, low: int | None = None, lane: int | None = None) -> Iterator[tuple[Any, ...]]:
    """A chain's records' columns in its order from place ``low`` on, streamed (times as the driver hands
    them back): place, at, run, step, kind, actor, data, prev_hash, hash, then seq and lane."""
    place = _place(lane)
    columns = [place, at_column(conn), *(records.c[n] for n in ("run_id", "step_id", "kind", "actor", "data",
                                                                 "prev_hash", "hash", "seq", "chain"))]
    query = sa.select(*columns).where(_in(lane)).order_by(place)
    result = conn.execute(query if low is None else query.where(place >= low))
    source = getattr(result, "cursor", None) if conn.dialect.name == "sqlite" else None  # plain tuples: no row objects
    try:
        while chunk := (source or result).fetchmany(5000):
            yield from chunk
    finally:
        result.close()


def _record(columns: tuple[Any, ...]) -> _Record:
    seq, at, run_id, step_id, kind, actor, data, prev_hash, digest, gseq, lane = columns
    return _Record(seq, record_time(at), run_id, step_id, kind, actor, data, prev_hash, digest, gseq, lane)


_STR = encode_basestring  # how flows.ledger.dumps (ensure_ascii=False) writes a string, in C


def _json(value: str | None) -> str:
    return "null" if value is None else _STR(value)


def _iso(at: Any) -> str:
    """A record's time as :func:`flows.ledger.record_hash` writes it (``datetime.isoformat`` in UTC),
    straight from SQLite's text when it has the usual shape (``YYYY-MM-DD HH:MM:SS.ffffff``)."""
    if type(at) is str and len(at) == 26 and at[10] == " " and at[19] == ".":
        return f"{at[:10]}T{at[11:19]}+00:00" if at.endswith(".000000") else f"{at[:10]}T{at[11:]}+00:00"
    return utc(record_time(at)).isoformat()  # type: ignore[union-attr]


def _intact(columns: tuple[Any, ...], prev_seq: int, prev_hash: str) -> bool:
    """The record follows ``prev_seq``, links to ``prev_hash`` and matches its own hash: what
    :func:`_classify` finds for nearly every record, at a fraction of the cost."""
    seq, at, run_id, step_id, kind, actor, data, linked, digest, gseq, lane = columns
    if seq != prev_seq + 1 or linked != prev_hash:
        return False
    try:
        # flows.ledger.dumps([seq, at, run_id, step_id, kind, actor, data(, lane, pos)]), written out: the same text
        tail = "]" if lane is None else f",{int(lane)},{int(seq)}]"
        first = seq if lane is None else int(gseq)
        body = f"[{first},{_STR(_iso(at))},{_json(run_id)},{_json(step_id)},{_STR(kind)},{_json(actor)},{_STR(data)}{tail}"
    except (TypeError, ValueError):  # a value of a type the ledger never writes (a number, bytes): looked at closely
        return False
    return sha256(f"{prev_hash}|{body}".encode()).hexdigest() == digest


@dataclass
class _Record:
    seq: int
    at: datetime
    run_id: str | None
    step_id: str | None
    kind: str
    actor: str | None
    data: str
    prev_hash: str
    hash: str
    gseq: int = 0  # the record's seq (``seq`` above is its place: in a lane, its pos)
    lane: int | None = None


@dataclass
class Walk:
    """What walking a stretch of the chain found: its breaks and suspects as the walk of the
    whole chain finds them when nothing before the stretch broke, and ``unsound``: every
    record of it that does not match its own hash (its suspects when something before did)."""

    breaks: list[Break] = field(default_factory=list)
    suspects: list[int] = field(default_factory=list)
    unsound: list[int] = field(default_factory=list)


#: how many records a walk goes between two words to its ``progress``
PROGRESS_EVERY = 20_000


def walk(conn: Connection, low: int | None = None, stop: int | None = None, after: tuple[int, str] = (0, GENESIS),
         head: int | None = None, progress: Callable[[int], None] | None = None, lane: int | None = None,
         expect: dict[int, tuple[str, int]] | None = None) -> Walk:
    """Walk the records with ``low`` <= seq < ``stop`` and seq <= ``head`` (either end open),
    from the record before them (``after``: its seq and stored hash; the genesis before the first).
    ``lane``: walk that lane instead (places are its pos), and check the places ``expect`` names
    (a checkpoint's heads: pos → hash and the checkpoint's seq).

    The records are streamed in order, never held. Each is first checked the quick way (it
    follows its predecessor, links to it and hashes right); only a record that fails is
    looked at closely, with one of lookahead (the record after the stretch, if any) and an
    index of every (hash, seq), read then, to tell a moved record from an edited one.
    ``progress`` is told the seq reached every :data:`PROGRESS_EVERY` records.
    """
    found = Walk()
    countdown = PROGRESS_EVERY
    written_at: dict[str, int] | None = None  # hash -> place, read at the first break
    seq_at: dict[int, int] = {}  # place -> seq (in a lane, the record's number), read with it
    prev_seq, prev_hash = after
    end = min(math.inf if stop is None else stop, math.inf if head is None else head + 1)
    rows = _rows(conn, low, lane)
    pending = next(rows, None)
    while pending is not None and pending[0] < end:
        columns, pending = pending, next(rows, None)
        countdown -= 1
        if not countdown:
            countdown = PROGRESS_EVERY
            if progress is not None:
                progress(columns[0])
        if not _intact(columns, prev_seq, prev_hash):
            sound = _intact(columns, columns[0] - 1, columns[7])  # right against its own link and number
            if not sound:
                found.unsound.append(columns[9])  # the record's seq (in a lane its place is columns[0])
            if found.breaks:
                if not sound:
                    found.suspects.append(columns[9])
            else:
                if written_at is None:  # the chain's every (place, hash, seq), read once
                    index = conn.execute(sa.select(_place(lane), records.c.hash, records.c.seq)
                                         .where(_in(lane)).order_by(_place(lane))).all()
                    written_at = {digest: place for place, digest, _seq in index}
                    seq_at = {place: seq for place, _digest, seq in index}
                following = None if pending is None or (head is not None and pending[0] > head) else _record(pending)
                if lane is None:
                    broke = _classify(_record(columns), following, prev_seq, prev_hash, written_at)
                else:  # a lane's places are not the records' numbers: name both
                    broke = _classify(_record(columns), following, prev_seq, prev_hash, written_at,
                                      name=functools.partial(_in_lane, seq_at=seq_at))
                    if broke is not None:
                        broke.lane, broke.place, broke.seq = lane, broke.seq, seq_at.get(broke.seq)  # type: ignore[arg-type]
                        broke.message = f"lane {lane}: {broke.message}"
                if broke is not None:
                    found.breaks.append(broke)
        if expect and columns[0] in expect:
            _check_head(found, lane, columns, *expect[columns[0]])
        prev_seq, prev_hash = columns[0], columns[8]
    rows.close()
    for place in sorted(p for p in expect or {} if p > prev_seq):
        digest, checkpoint = expect[place]  # type: ignore[index]
        found.breaks.append(Break(None, "truncated", f"lane {lane}: checkpoint {checkpoint} saw its place {place} "
                                  f"(hash {digest[:12]}…) but the lane ends at place {prev_seq}: records were cut off "
                                  "its end", lane, prev_seq + 1))
        break
    return found


def _check_head(found: Walk, lane: int | None, columns: tuple[Any, ...], digest: str, checkpoint: int) -> None:
    if columns[8] != digest:
        found.breaks.append(Break(columns[9], "rewritten", f"lane {lane}: record {columns[9]} (place {columns[0]}) no "
                                  f"longer has the hash checkpoint {checkpoint} saw ({digest[:12]}…): the lane was "
                                  "rewritten at or before it", lane, columns[0]))


def legacy_head(conn: Connection) -> int:
    """The seq of the last record written before lanes (0 when none)."""
    return conn.execute(sa.select(sa.func.max(records.c.seq)).where(records.c.chain.is_(None))).scalar() or 0


def record_before(conn: Connection, seq: int) -> tuple[int, str]:
    """The seq and stored hash of the last record written before lanes that comes before ``seq`` (0 and the genesis if none)."""
    row = conn.execute(sa.select(records.c.seq, records.c.hash).where(records.c.chain.is_(None) & (records.c.seq < seq))
                       .order_by(records.c.seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def verify_chain(conn: Connection, anchors: list[Anchor] | None = None,
                 progress: Callable[[float], None] | None = None) -> Verification:
    """Walk every chain (and the pinned SOP texts); report the first break and every suspect.
    ``progress`` is told the share of the records written before lanes walked, now and then."""
    head_seq, head_hash, count = head_of(conn)
    old = legacy_head(conn)
    return conclude(conn, Verification(records=count, head_seq=head_seq, head_hash=head_hash),
                    [walk(conn, head=old, progress=share(progress, 0, old + 1))], anchors)


def walk_lanes(conn: Connection) -> list[Walk]:
    """Walk every lane (checkpoints first), checking each lane against every head a checkpoint saw
    and the checkpoints' heads never going back (a lane cut, then a checkpoint written)."""
    checkpoints = walk(conn, lane=CHECKPOINT_LANE)
    expect: dict[int, dict[int, tuple[str, int]]] = {}
    reached: dict[str, int] = {}
    for seq, pos, data in conn.execute(sa.select(records.c.seq, records.c.pos, records.c.data)
                                       .where((records.c.chain == CHECKPOINT_LANE) & (records.c.kind == "checkpoint"))
                                       .order_by(records.c.pos)):
        try:
            heads = json.loads(data)
            lanes = {int(lane): (int(head[0]), str(head[1])) for lane, head in heads.get("lanes", {}).items()}
        except (ValueError, TypeError, AttributeError, IndexError):
            continue  # an edited checkpoint: its lane's walk names it
        for lane, (place, digest) in lanes.items():
            if place < reached.get(str(lane), 0):
                checkpoints.breaks.append(Break(seq, "truncated", f"checkpoint {seq} saw lane {lane} end at place "
                                                f"{place}, an earlier one at {reached[str(lane)]}: the lane was cut "
                                                "between them", CHECKPOINT_LANE, pos))
            reached[str(lane)] = max(place, reached.get(str(lane), 0))
            expect.setdefault(lane, {})[place] = (digest, seq)
        old = heads.get("legacy")
        if old:
            expect.setdefault(-1, {})[int(old[0])] = (str(old[1]), seq)
    lanes = sorted(set(expect) - {-1} | {lane for (lane,) in conn.execute(
        sa.select(records.c.chain).where(records.c.chain > CHECKPOINT_LANE).distinct())})
    found = [checkpoints]
    for lane in lanes:
        found.append(walk(conn, lane=lane, expect=expect.get(lane)))
    for place, (digest, seq) in expect.get(-1, {}).items():  # the records written before lanes
        stored = conn.execute(sa.select(records.c.hash).where(records.c.chain.is_(None) & (records.c.seq == place))).scalar()
        if stored != digest:
            found.append(Walk(breaks=[Break(place, "truncated" if stored is None else "rewritten",
                                            f"checkpoint {seq} saw record {place} as the last one written before lanes "
                                            f"(hash {digest[:12]}…): it is {'gone' if stored is None else 'changed'}")]))
    return found


def share(progress: Callable[[float], None] | None, low: int, high: int) -> Callable[[int], None] | None:
    """``progress`` told the share of [low, high) a seq has reached, never less than it was told
    before (a report's read tells the start of the run at hand, and runs overlap)."""
    if progress is None:
        return None
    span = max(high - low, 1)
    reached = 0.0

    def told(seq: int) -> None:
        nonlocal reached
        reached = max(reached, min(1.0, (seq - low) / span))
        progress(reached)

    return told


def conclude(conn: Connection, result: Verification, stretches: list[Walk], anchors: list[Anchor] | None) -> Verification:
    """The verification of a chain walked in consecutive stretches (in chain order), with its anchors and texts:
    the first stretch that breaks gives the breaks; every record after it that is unsound is a suspect."""
    for stretch in stretches:
        if result.breaks:
            result.suspects += stretch.unsound
        else:
            result.breaks += stretch.breaks
            result.suspects += stretch.suspects
    for lane in walk_lanes(conn):  # each lane is a chain of its own: its breaks count whatever the others found
        result.breaks += lane.breaks
        result.suspects += lane.suspects
    for anchor in anchors or []:
        stored = conn.execute(sa.select(records.c.hash).where(records.c.seq == anchor.seq)).scalar()
        if stored is None:
            last = conn.execute(sa.select(sa.func.max(records.c.seq)).where(records.c.seq < anchor.seq)).scalar() or 0
            result.breaks.append(Break(last + 1, "truncated", f"the anchor names record {anchor.seq}, which is gone "
                                                              f"(the records end at {last} before it): records were cut off the end"))
        else:
            if stored != anchor.hash:
                result.breaks.append(Break(anchor.seq, "rewritten", f"record {anchor.seq} no longer has the anchor's hash "
                                                                    f"{anchor.hash[:12]}…: the chain was rewritten at or before it"))
    _check_texts(conn, result)
    result.tail = tail_of(conn, result.head_seq)
    return result


def _check_texts(conn: Connection, result: Verification) -> None:
    """Every pinned text hashes to its name, and every run's start names a text that is kept. The starts are
    read first: on PostgreSQL each statement sees what is committed when it runs, and a text is committed with
    (or before) the first start naming it, so a run started between the two reads is no missing text."""
    used: set[tuple[str, str]] = set()
    for (raw,) in conn.execute(sa.select(records.c.data).where(records.c.kind == "run_started")):
        try:
            data = json.loads(raw)
        except ValueError:
            continue  # an edited record: the chain walk reports it
        used.add((str(data.get("sop")), str(data.get("sop_hash"))))
    stored = {r.hash: (r.sop_id, r.text) for r in conn.execute(sa.select(sop_versions.c.hash, sop_versions.c.sop_id,
                                                                           sop_versions.c.text))}
    result.texts_checked = len(stored)
    result.bad_texts = sorted(f"{sop_id} {digest[:12]}" for digest, (sop_id, text) in stored.items()
                              if text_hash(text) != digest)
    result.missing_texts = sorted(f"{sop_id} {digest[:12]}" for sop_id, digest in used if digest not in stored)


__all__ = ["Walk", "conclude", "legacy_head", "record_before", "share", "verify_chain", "walk", "walk_lanes"]
