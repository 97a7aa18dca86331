"""An auditor checks a ledger written in lanes, on SQLite and on PostgreSQL: every edit, deletion,
reordering, cut tail and forged checkpoint is caught, and many writers at once lose nothing.

Each story writes a small ledger through :class:`flows.ledger.Ledger` (per-run transactions,
checkpoints), changes it with plain SQL as someone with the database would, and verifies.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from flows.audit.queries import text_hash
from flows.audit.verification import Anchor, Verification
from flows.audit.verify import verify_chain
from flows.ledger import _LANE_LOCKS, CHECKPOINT_LANE, LANES, Ledger, lane_of, record_hash
from flows.ledger.schema import records, runs, sop_versions

RUNS = [f"run-{n}" for n in range(6)]
PINNED = text_hash("id: s")


@pytest.fixture(params=["sqlite", "postgresql"])
def lanes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Ledger, Any]]:
    """A ledger with six runs' records over two checkpoints, and a function running SQL on it as an operator."""
    if request.param == "sqlite":
        db = tmp_path / "ledger.db"
        ledger = Ledger(f"sqlite:///{db}")

        def sql(statement: str) -> None:
            with sqlite3.connect(db) as conn:
                conn.execute(statement)
    else:
        cluster = request.getfixturevalue("postgres")
        name = f"lanes_{abs(hash(request.node.name)) % 10**8}"
        ledger = Ledger(cluster.database(name))

        def sql(statement: str) -> None:
            cluster.psql(name, statement)
    ledger.checkpoint_every = None
    ledger.migrate()
    _write(ledger)
    yield ledger, sql
    ledger.dispose()


def _pin(ledger: Ledger) -> None:
    with ledger.transaction() as tx:
        tx.conn.execute(sop_versions.insert().values(hash=PINNED, sop_id="s", text="id: s", first_seen=ledger.clock.now()))


def _write(ledger: Ledger) -> None:
    _pin(ledger)
    for n, run in enumerate(RUNS):
        with ledger.transaction() as tx:
            tx.conn.execute(runs.insert().values(id=run, sop_id="s", sop_hash=PINNED, title="t", sop_class="c",
                                                 priority=1, status="running", inputs="{}",
                                                 started_at=ledger.clock.now()))
        for k in range(3):
            with ledger.transaction(per_run=True) as tx:
                tx.hold_run(run)
                tx.append("note", run, actor="ada", text=f"{run} #{k}")
        if n in (2, 5):
            ledger.checkpoint()


def _verify(ledger: Ledger, anchors: list[Anchor] | None = None) -> Verification:
    with ledger.read() as conn:
        return verify_chain(conn, anchors)


def _row(ledger: Ledger, run: str, k: int) -> Any:
    with ledger.read() as conn:
        return conn.execute(sa.select(records).where((records.c.run_id == run)
                                                     & (records.c.data.contains(f"#{k}")))).one()


def test_an_untouched_ledger_in_lanes_verifies_and_names_its_last_checkpoint(lanes: tuple[Ledger, Any]) -> None:
    ledger, _sql = lanes
    result = _verify(ledger)
    assert result.ok, result.to_dict()
    with ledger.read() as conn:
        last = conn.execute(sa.select(records.c.seq, records.c.hash).where(records.c.chain == CHECKPOINT_LANE)
                            .order_by(records.c.pos.desc()).limit(1)).one()
    assert (result.head_seq, result.head_hash) == (last.seq, last.hash)  # what the auditor notes down


def test_an_edit_is_named(lanes: tuple[Ledger, Any]) -> None:
    ledger, sql = lanes
    row = _row(ledger, "run-1", 1)
    sql(f"UPDATE records SET actor = 'mallory' WHERE seq = {row.seq}")
    first = _verify(ledger).first_break
    assert first is not None and (first.lane, first.place, first.seq, first.kind) == (row.chain, row.pos, row.seq, "edited")
    assert first.where == f"record {row.seq}" and f"record {row.seq} (place {row.pos})" in first.message  # as audit show


def test_an_edit_with_its_hash_recomputed_is_caught_by_the_next_record(lanes: tuple[Ledger, Any]) -> None:
    ledger, sql = lanes
    row = _row(ledger, "run-1", 1)
    fake = record_hash(row.prev_hash, row.seq, row.at, row.run_id, row.step_id, row.kind, "mallory", row.data,
                       row.chain, row.pos)
    sql(f"UPDATE records SET actor = 'mallory', hash = '{fake}' WHERE seq = {row.seq}")
    first = _verify(ledger).first_break
    assert first is not None and (first.lane, first.place, first.seq, first.kind) == (row.chain, row.pos, row.seq, "edited")
    assert first.where == f"record {row.seq}" and f"record {row.seq} (place {row.pos})" in first.message  # as audit show


def test_a_deleted_record_is_named(lanes: tuple[Ledger, Any]) -> None:
    ledger, sql = lanes
    row = _row(ledger, "run-2", 1)
    sql(f"DELETE FROM records WHERE seq = {row.seq}")
    first = _verify(ledger).first_break
    assert first is not None and (first.lane, first.place, first.seq, first.kind) == (row.chain, row.pos, None, "deleted")
    assert first.where == f"lane {row.chain}, place {row.pos}"  # it is gone: no record number to name


def test_two_swapped_records_are_named_as_reordered(lanes: tuple[Ledger, Any]) -> None:
    ledger, sql = lanes
    a, b = _row(ledger, "run-3", 0), _row(ledger, "run-3", 1)
    assert a.chain == b.chain
    sql(f"UPDATE records SET pos = -1 WHERE seq = {a.seq}")
    sql(f"UPDATE records SET pos = {a.pos} WHERE seq = {b.seq}")
    sql(f"UPDATE records SET pos = {b.pos} WHERE seq = {a.seq}")
    first = _verify(ledger).first_break
    assert first is not None and (first.lane, first.kind) == (a.chain, "reordered")


def test_a_tail_cut_after_a_checkpoint_saw_it_is_named_truncated(lanes: tuple[Ledger, Any]) -> None:
    ledger, sql = lanes
    row = _row(ledger, "run-5", 2)  # the last record written before the last checkpoint
    sql(f"DELETE FROM records WHERE chain = {row.chain} AND pos >= {row.pos - 1}")
    result = _verify(ledger)
    kinds = {(b.lane, b.kind) for b in result.breaks}
    assert (row.chain, "truncated") in kinds, result.to_dict()


def test_a_tail_cut_before_any_checkpoint_saw_it_needs_the_next_checkpoint(lanes: tuple[Ledger, Any]) -> None:
    ledger, sql = lanes
    with ledger.transaction(per_run=True) as tx:
        tx.hold_run("run-0")
        tx.append("note", "run-0", actor="ada", text="after the last checkpoint")
        lane = tx.lane
    sql("DELETE FROM records WHERE data LIKE '%after the last checkpoint%'")
    assert _verify(ledger).ok  # the window: nothing saw it yet
    with ledger.transaction(per_run=True) as tx:  # the same again, and this time a checkpoint follows
        tx.hold_run("run-0")
        tx.append("note", "run-0", actor="ada", text="seen by a checkpoint")
        lane = tx.lane
    ledger.checkpoint()
    sql("DELETE FROM records WHERE data LIKE '%seen by a checkpoint%'")
    result = _verify(ledger)
    assert (lane, "truncated") in {(b.lane, b.kind) for b in result.breaks}, result.to_dict()


def test_records_past_the_last_checkpoint_are_counted_and_an_anchor_on_the_newest_catches_them_cut(
        lanes: tuple[Ledger, Any]) -> None:
    """A drill's end came after the last checkpoint (its process stopped: none came after). Verify said "intact" and
    offered the checkpoint alone to note down, and that anchor still stood once the end was cut. Now it says how many
    records are past the head and offers the newest of each lane too, whose anchor does not stand without them."""
    ledger, sql = lanes
    assert _verify(ledger).anchors == [f"{_verify(ledger).head_seq}:{_verify(ledger).head_hash}"]  # none past it
    for k in range(2):
        with ledger.transaction(per_run=True) as tx:
            tx.hold_run("run-0")
            tx.append("note", "run-0", actor="ada", text=f"drill end {k}")
    result = _verify(ledger)
    assert result.ok and result.tail.records == 2, result.to_dict()
    assert result.anchors[0] == f"{result.head_seq}:{result.head_hash}" and len(result.anchors) >= 2
    assert result.tail.words.startswith("2 record(s) were written after the head, in no checkpoint yet")
    assert result.to_dict()["past_head"] == 2 and result.to_dict()["anchors"] == result.anchors

    sql("DELETE FROM records WHERE data LIKE '%drill end%'")
    assert _verify(ledger, [Anchor.parse(result.anchors[0])]).ok  # the head alone: the window, as before
    cut = _verify(ledger, [Anchor.parse(anchor) for anchor in result.anchors])
    assert not cut.ok and "truncated" in {b.kind for b in cut.breaks}, cut.to_dict()


def test_a_forged_checkpoint_is_caught_by_the_next_one_or_by_the_anchor(lanes: tuple[Ledger, Any]) -> None:
    ledger, sql = lanes
    anchor = Anchor(_verify(ledger).head_seq, _verify(ledger).head_hash)
    with ledger.read() as conn:
        first, last = conn.execute(sa.select(records).where(records.c.chain == CHECKPOINT_LANE)
                                   .order_by(records.c.pos)).all()
    # cut a lane back past what the first checkpoint saw, and forge the last checkpoint to match
    # (its hash recomputed: it still links to the first)
    lane, heads = next(iter(json.loads(first.data)["lanes"].items()))
    sql(f"DELETE FROM records WHERE chain = {lane} AND pos >= {heads[0]}")
    data = json.loads(last.data)
    with ledger.read() as conn:
        head = conn.execute(sa.select(records.c.pos, records.c.hash).where(records.c.chain == int(lane))
                            .order_by(records.c.pos.desc()).limit(1)).one()
    data["lanes"][lane] = [head.pos, head.hash]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    forged = record_hash(last.prev_hash, last.seq, last.at, None, None, "checkpoint", last.actor, text,
                         CHECKPOINT_LANE, last.pos)
    sql(f"UPDATE records SET data = '{text}', hash = '{forged}' WHERE seq = {last.seq}")
    result = _verify(ledger)
    # the earlier checkpoint saw the lane further than the forged one says: cut between them
    assert not result.ok and "truncated" in {b.kind for b in result.breaks}, result.to_dict()
    # and the anchor noted after the last audit no longer matches
    anchored = _verify(ledger, [anchor])
    assert "rewritten" in {b.kind for b in anchored.breaks}
    assert first.kind == "checkpoint"


def test_many_writers_of_different_runs_at_once_lose_nothing_and_use_several_lanes(postgres: Any) -> None:
    """PostgreSQL: 16 threads, each changing its own runs 40 times, at once; every record is there,
    the lanes verify, and writers were not one at a time (more than one lane was written)."""
    ledger = Ledger(postgres.database("lanes_many"))
    ledger.checkpoint_every = 0.05
    ledger.migrate()
    names = [f"w{n}" for n in range(16)]
    _pin(ledger)
    with ledger.transaction() as tx:
        for name in names:
            tx.conn.execute(runs.insert().values(id=name, sop_id="s", sop_hash=PINNED, title="t", sop_class="c",
                                                 priority=1, status="running", inputs="{}", repeats=0,
                                                 started_at=ledger.clock.now()))
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for k in range(40):
                with ledger.transaction(per_run=True) as tx:
                    tx.hold_run(name)
                    repeats = tx.conn.execute(sa.select(runs.c.repeats).where(runs.c.id == name)).scalar_one()
                    tx.conn.execute(runs.update().where(runs.c.id == name).values(repeats=repeats + 1))
                    tx.append("note", name, actor="ada", k=k)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    ledger.checkpoint()
    assert not errors, errors
    with ledger.read() as conn:
        notes = conn.execute(sa.select(records.c.run_id, records.c.chain).where(records.c.kind == "note")).all()
        counts = dict(conn.execute(sa.select(runs.c.id, runs.c.repeats)).all())
    assert len(notes) == 16 * 40
    assert counts == {name: 40 for name in names}  # each run's read-modify-write was alone
    assert len({chain for _run, chain in notes}) > 1
    result = _verify(ledger)
    assert result.ok, result.to_dict()
    ledger.dispose()



def _two_open_runs(postgres: Any, database: str) -> tuple[Ledger, list[str]]:
    """A new ledger on ``database`` with two open runs (their open keys ``s:<id>``), and their ids."""
    ledger = Ledger(postgres.database(database))
    ledger.checkpoint_every = None
    ledger.migrate()
    _pin(ledger)
    shared = ["shared-a", "shared-b"]
    with ledger.transaction() as tx:
        for name in shared:
            tx.conn.execute(runs.insert().values(id=name, sop_id="s", sop_hash=PINNED, title="t", sop_class="c",
                                                 priority=1, status="running", inputs="{}", repeats=0,
                                                 open_key=f"s:{name}", started_at=ledger.clock.now()))
    return ledger, shared

def _eight_at_once(work: Any) -> None:
    """``work(n)`` for n = 0…7, each in a thread of its own, all at once; fails with whatever any raised."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors

def test_writers_taking_turns_on_one_run_leave_its_records_in_the_order_they_wrote_them(postgres: Any) -> None:
    """PostgreSQL: 8 threads change the same two runs 30 times each, in lanes of their own; each record notes
    the run's count as its writer saw it, under the run's lock. Read in seq order (as the audit reads a run's
    story), every run's records come in the order they were written: seqs are taken once the run is held."""
    ledger, shared = _two_open_runs(postgres, "lanes_one_run")

    def writer(n: int) -> None:
        for k in range(30):
            name = shared[(n + k) % 2]
            with ledger.transaction(per_run=True) as tx:
                tx.hold_run(name)
                count = tx.conn.execute(sa.select(runs.c.repeats).where(runs.c.id == name)).scalar_one()
                tx.conn.execute(runs.update().where(runs.c.id == name).values(repeats=count + 1))
                tx.append("note", name, actor="ada", count=count)

    _eight_at_once(writer)
    with ledger.read() as conn:
        notes = conn.execute(sa.select(records.c.run_id, records.c.data, records.c.chain)
                             .where(records.c.kind == "note").order_by(records.c.seq)).all()
    for name in shared:
        counts = [json.loads(data)["count"] for run, data, _lane in notes if run == name]
        assert counts == list(range(120))
    assert len({lane for *_rest, lane in notes}) > 1
    assert _verify(ledger).ok
    ledger.dispose()



def test_attaches_in_one_statement_taking_turns_with_other_writers_keep_a_runs_records_in_order(
        postgres: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: as above, with the one-statement attach (``Tx.hold_and_append``: the run held and counted and its
    record appended, the record's hash made by the server) alone, in NOWAIT batches (refused and run again while
    another holds the run), as a transaction of its own (``Ledger.attach``: ``sop_attach`` takes the locks too)
    and beside writers holding the run and appending from Python. Read in seq order, each run's counts come 1, 2,
    3…: the attach's seqs too are taken once the run is held; the chain verifies. Every writer prefers lane 1, so
    they meet there and take the next free lanes."""
    from flows.engine.store import _ATTACH

    ledger, shared = _two_open_runs(postgres, "lanes_one_statement")
    monkeypatch.setattr("flows.ledger.lane_of", lambda _key: 1)

    def attach(tx: Any, name: str, wait: str) -> None:
        row = tx.hold_and_append(_ATTACH[wait], {"_key": f"s:{name}", "_copies": 1, "_now": ledger.clock.now()},
                                 "trigger_repeated", "ada", ledger.clock.now(), {"trigger": {"n": "é\\n"}}, "repeats")
        assert row is not None and row[0] == name

    def writer(n: int) -> None:
        for k in range(30):
            name, way = shared[(n + k) % 2], (n + k) % 4
            while True:
                try:
                    if way == 0:  # held, read, counted and appended from Python
                        with ledger.transaction(per_run=True) as tx:
                            tx.hold_run(name)
                            count = tx.conn.execute(sa.select(runs.c.repeats).where(runs.c.id == name)).scalar_one()
                            tx.conn.execute(runs.update().where(runs.c.id == name).values(repeats=count + 1))
                            tx.append("trigger_repeated", name, actor="ada", repeats=count + 1)
                    elif way == 1:
                        with ledger.transaction(per_run=True) as tx:
                            attach(tx, name, "")
                    elif way == 2:
                        with ledger.batch(per_run=True), ledger.transaction(per_run=True) as tx:
                            attach(tx, name, " NOWAIT")
                    else:
                        found = ledger.attach(f"s:{name}", 1, ledger.clock.now(), "trigger_repeated", "ada",
                                              {"trigger": {"n": "é\\n"}})
                        assert found is not None and found[0] == name
                    break
                except sa.exc.OperationalError as exc:  # NOWAIT: the run is another's; run it again
                    assert way == 2 and "could not obtain lock" in str(exc), exc

    _eight_at_once(writer)
    with ledger.read() as conn:
        rows = conn.execute(sa.select(records.c.run_id, records.c.data, records.c.chain)
                            .where(records.c.kind == "trigger_repeated").order_by(records.c.seq)).all()
    for name in shared:
        assert [json.loads(data)["repeats"] for run, data, _lane in rows if run == name] == list(range(1, 121))
    assert len({lane for *_rest, lane in rows}) > 1
    result = _verify(ledger)
    assert result.ok, result.to_dict()
    ledger.dispose()

def test_a_writer_whose_lane_another_holds_writes_in_a_free_lane_and_the_chain_verifies(postgres: Any) -> None:
    """PostgreSQL: a per-run transaction sends BEGIN and its locks with its first statement. While another
    connection holds the lane this thread asks for, its transactions (one appending first, one holding its
    run first) go to another lane, chained from that lane's own head; the chain verifies."""
    ledger = Ledger(postgres.database("lanes_busy"))
    ledger.checkpoint_every = None
    ledger.migrate()
    _pin(ledger)
    with ledger.transaction() as tx:
        tx.conn.execute(runs.insert().values(id="r", sop_id="s", sop_hash=PINNED, title="t", sop_class="c",
                                             priority=1, status="running", inputs="{}", started_at=ledger.clock.now()))
    ours = lane_of(f"{os.getpid()}:{threading.get_ident()}")
    for k in range(2):  # our lane has a head of its own: place 2
        with ledger.transaction(per_run=True) as tx:
            tx.append("note", "r", actor="ada", k=k)
    other = psycopg.connect(host="127.0.0.1", port=postgres.port, user="sop", dbname="lanes_busy", autocommit=True)
    other.execute(f"BEGIN; SELECT pg_advisory_xact_lock({_LANE_LOCKS}, {ours})")
    try:
        with ledger.transaction(per_run=True) as tx:
            tx.append("note", "r", actor="ada", k=2)
        with ledger.transaction(per_run=True) as tx:
            tx.hold_run("r")
            tx.append("note", "r", actor="ada", k=3)
    finally:
        other.execute("ROLLBACK")
        other.close()
    with ledger.read() as conn:
        placed = conn.execute(sa.select(records.c.chain, records.c.pos).where(records.c.kind == "note")
                              .order_by(records.c.seq)).all()
    assert [tuple(p) for p in placed[:2]] == [(ours, 1), (ours, 2)]
    assert placed[2].chain != ours and placed[2].pos == 1 and placed[3].chain == placed[2].chain
    assert placed[3].pos == 2
    result = _verify(ledger)
    assert result.ok, result.to_dict()
    ledger.dispose()


def _lane_holders(postgres: Any, database: str, lanes: list[int]) -> list[psycopg.Connection]:
    """A connection per lane, each in a transaction holding that writers' lane."""
    holders = []
    for lane in lanes:
        holder = psycopg.connect(host="127.0.0.1", port=postgres.port, user="sop", dbname=database, autocommit=True)
        holder.execute(f"BEGIN; SELECT pg_advisory_xact_lock({_LANE_LOCKS}, {lane})")
        holders.append(holder)
    return holders


def _let_go(holders: list[psycopg.Connection]) -> None:
    for holder in holders:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_attach_of_its_own_takes_a_free_lane_or_waits_for_its_own_when_all_are_busy(
        postgres: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL, ``Ledger.attach`` (``sop_attach`` takes the writers' locks itself): while another connection
    holds the lane this thread prefers, the repeat is recorded in another lane, after that lane's head; while
    every lane is held, it waits, and goes on in its own lane once that one is let go. The chain verifies."""
    ledger, (name, _other) = _two_open_runs(postgres, "lanes_attach_alone")
    ours = lane_of(f"{os.getpid()}:{threading.get_ident()}")

    def repeat_in_a_thread(done: list[Any]) -> threading.Thread:
        thread = threading.Thread(target=lambda: done.append(ledger.attach(
            f"s:{name}", 1, ledger.clock.now(), "trigger_repeated", "ada", {})), daemon=True)
        thread.start()
        return thread

    assert ledger.attach(f"s:{name}", 1, ledger.clock.now(), "trigger_repeated", "ada", {}) == (name, 1)
    holders = _lane_holders(postgres, "lanes_attach_alone", [ours])
    monkeypatch.setattr("flows.ledger.lane_of", lambda _key: ours)  # the thread's, as ours
    done: list[Any] = []
    try:
        repeat_in_a_thread(done).join(10)
        assert done == [(name, 2)]  # at once, though its lane is held
    finally:
        _let_go(holders)
    monkeypatch.undo()
    holders = _lane_holders(postgres, "lanes_attach_alone", list(range(1, LANES + 1)))
    done = []
    try:
        waiting = repeat_in_a_thread(done)
        waiting.join(0.5)
        assert done == []  # every lane busy: it waits
        _let_go([h for lane, h in enumerate(holders, 1) if lane != lane_of(f"{os.getpid()}:{waiting.ident}")])
        waiting.join(0.5)
        assert done == []  # for its own lane, not for any
    finally:
        _let_go([h for h in holders if not h.closed])
    waiting.join(30)
    assert done == [(name, 3)]
    with ledger.read() as conn:
        placed = conn.execute(sa.select(records.c.chain, records.c.pos).where(records.c.kind == "trigger_repeated")
                              .order_by(records.c.seq)).all()
    theirs = lane_of(f"{os.getpid()}:{waiting.ident}")
    before = [(ours, 1), (ours % LANES + 1, 1)]
    assert [tuple(p) for p in placed] == [*before, (theirs, 1 + sum(lane == theirs for lane, _pos in before))]
    result = _verify(ledger)
    assert result.ok, result.to_dict()
    ledger.dispose()


def test_a_checkpoint_on_postgresql_does_not_wait_for_writers_in_flight_and_never_sees_less(postgres: Any) -> None:
    """A checkpoint is written beside the per-run writers, not instead of them: it does not wait for one still
    in flight (its record is folded by the next checkpoint). Two processes' checkpoints (two ledgers here),
    written all through 8 writers' work, never see a lane shorter than the checkpoint before them saw."""
    url = postgres.database("lanes_checkpoint_beside")
    first, second = Ledger(url), Ledger(url)
    first.migrate()
    for ledger in (first, second):
        ledger.checkpoint_every = None
    names = [f"c{n}" for n in range(8)]
    _pin(first)
    with first.transaction() as tx:
        for name in names:
            tx.conn.execute(runs.insert().values(id=name, sop_id="s", sop_hash=PINNED, title="t", sop_class="c",
                                                 priority=1, status="running", inputs="{}",
                                                 started_at=first.clock.now()))
    in_flight, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with first.transaction(per_run=True) as tx:
            tx.hold_run("c0")
            tx.append("note", "c0", actor="ada", text="still being written")
            in_flight.set()
            release.wait(30)

    slow = threading.Thread(target=slow_writer)
    slow.start()
    assert in_flight.wait(10)
    done: list[int | None] = []
    checkpointing = threading.Thread(target=lambda: done.append(second.checkpoint()))
    checkpointing.start()
    checkpointing.join(10)
    waited = checkpointing.is_alive()
    release.set()
    slow.join(10)
    checkpointing.join(10)
    assert not waited, "the checkpoint waited for a writer still in flight"
    assert done and done[0] is not None
    assert first.checkpoint() is not None  # the next one folds the record that was in flight
    assert _verify(first).ok

    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(ledger: Ledger, name: str) -> None:
        try:
            for k in range(30):
                with ledger.transaction(per_run=True) as tx:
                    tx.hold_run(name)
                    tx.append("note", name, actor="ada", k=k)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def checkpointer(ledger: Ledger) -> None:
        try:
            while not stop.is_set():
                ledger.checkpoint()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=((first, second)[n % 2], name)) for n, name in enumerate(names)]
    checkpointers = [threading.Thread(target=checkpointer, args=(ledger,)) for ledger in (first, second)]
    for thread in [*checkpointers, *writers]:
        thread.start()
    for thread in writers:
        thread.join(120)
    stop.set()
    for thread in checkpointers:
        thread.join(30)
    assert not errors, errors
    with first.read() as conn:
        written = conn.execute(sa.select(sa.func.count()).select_from(records)
                               .where(records.c.kind == "checkpoint")).scalar_one()
    assert written > 3
    result = _verify(first)  # a checkpoint that saw a lane shorter than the one before it is "truncated"
    assert result.ok, result.to_dict()
    for ledger in (first, second):
        ledger.dispose()
