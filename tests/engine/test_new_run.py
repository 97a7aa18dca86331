"""Starting a run: what the ledger holds once ``start`` returns (steps, timers, records, outbox).

No Prefect: a real SQLite ledger in the test's folder, the real engine and pager, time on a
manual clock so every instant is known. The expected rows were taken from the engine as it
was before a new run's rows were built in memory and written in a few statements: that
change must not show in the ledger. Since sre-oncall rotates (docs/oncall.md), its
``step_assigned`` record also says who was on call and why.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.audit.verify import verify_chain
from flows.clock import ManualClock
from flows.engine.inputs import InputRefused
from flows.engine.paging import Pager
from flows.engine.store import load_view
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine
from flows.language.library import Library, load_library
from flows.ledger import Ledger
from flows.ledger.schema import outbox, pagers, records, runs, steps, timers
from tests.conftest import TestDatabase
from tests.engine.conftest import as_released_at, make_project

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# Every kind of first step: a human step with a ladder and a stand-in, a wait, a check and
# its two branches, a `when` that is false, an automated step; and a run deadline.
NEWRUN = """\
    id: t-newrun
    title: New run probe
    class: outage
    owner: sre-lead
    deadline: 2h
    inputs:
      level: {type: integer, default: 5}
      service: {type: string, default: web}
    dedup: "{{ inputs.service }}"
    steps:
      - id: ask
        title: Ask the on-call
        assignee: sre-oncall
        due: 10m
        on_timeout: fallback:standby
        escalation:
          - at: 50%
            notify: [assignee]
          - at: 100%
            notify: [lead]
      - id: standby
        title: Stand in for the on-call
        assignee: pr-oncall
        due: 15m
      - id: pause
        kind: wait
        duration: 10m
      - id: gate
        kind: check
        check: "{{ inputs.level > 3 }}"
        then: [high]
        else: [low]
      - id: high
        title: High road
        assignee: sre-lead
        due: 20m
      - id: low
        title: Low road
        assignee: sre-lead
      - id: never
        title: Never asked
        assignee: sre-oncall
        when: "{{ inputs.level > 100 }}"
      - id: ping
        kind: command
        command: ["true"]
"""

# A run whose every step is decided at once: it finishes in the transaction that starts it.
INSTANT = """\
    id: t-instant
    title: Instant probe
    class: routine
    owner: growth-lead
    deadline: 1h
    inputs:
      x: {type: integer, default: 1}
    steps:
      - id: look
        kind: check
        check: "{{ inputs.x > 0 }}"
      - id: maybe
        title: Only for big x
        assignee: growth-lead
        needs: [look]
        when: "{{ inputs.x > 5 }}"
"""


# A person's step that fails when its due passes, beside one that is not asked yet
TIMEOUT = """\
    id: t-timeout
    title: Timeout probe
    class: routine
    owner: growth-lead
    steps:
      - id: ask
        title: Answer in time
        assignee: growth-lead
        due: 10m
        on_timeout: fail
      - id: after
        title: After it
        assignee: growth-lead
        needs: [ask]
"""


@pytest.fixture(scope="module")
def library(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Library:
    root = make_project(repo_root, tmp_path_factory.mktemp("newrun"), only=())
    (root / "sops" / "t-newrun.yaml").write_text(textwrap.dedent(NEWRUN))
    (root / "sops" / "t-instant.yaml").write_text(textwrap.dedent(INSTANT))
    (root / "sops" / "t-timeout.yaml").write_text(textwrap.dedent(TIMEOUT))
    return load_library(root)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def local(database: TestDatabase, library: Library, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A ledger with a pager process alive (pages are left in the outbox for it), and an engine on it."""
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    ledger = Ledger(database.url_at(tmp_path / "ledger.db"), clock=clock)
    ledger.migrate()
    far = datetime.now(UTC) + timedelta(days=1)
    with ledger.transaction() as tx:
        tx.conn.execute(pagers.insert().values(name="other:1", pid=1, started_at=far, beat_at=far))
    engine = Engine(library, ledger, pager=Pager(library.site, ledger), clock=clock)
    yield engine
    engine.pager.close()
    ledger.dispose()


def at(value: datetime | None) -> float | None:
    """An instant as seconds after T0 (rows read back from SQLite are naive UTC)."""
    if value is None:
        return None
    return ((value if value.tzinfo else value.replace(tzinfo=UTC)) - T0).total_seconds()


def ledger_rows(engine: Engine, run_id: str) -> dict[str, Any]:
    """What the ledger holds about a run, instants relative to T0 and its id written ``RUN``."""
    with engine.ledger.read() as conn:
        run = dict(conn.execute(sa.select(runs).where(runs.c.id == run_id)).one()._mapping)
        step_rows = {r.step_id: {k: at(v) if isinstance(v, datetime) else v for k, v in r._mapping.items()
                                 if k not in ("run_id", "step_id")}
                     for r in conn.execute(sa.select(steps).where(steps.c.run_id == run_id))}
        timer_rows = sorted((r.step_id, r.kind, r.level, at(r.due_at), at(r.armed_at), at(r.fired_at),
                             at(r.cancelled_at)) for r in conn.execute(sa.select(timers).where(timers.c.run_id == run_id)))
        record_rows = [(r.kind, r.step_id, r.actor, at(r.at), r.data.replace(run_id, "RUN"))
                       for r in conn.execute(sa.select(records).where(records.c.run_id == run_id).order_by(records.c.seq))]
        outbox_rows = [(r.step_id, r.kind, r.targets, r.level, r.claimed_by, r.attempts, r.done_at)
                       for r in conn.execute(sa.select(outbox).where(outbox.c.run_id == run_id).order_by(outbox.c.id))]
    run = {k: at(v) if isinstance(v, datetime) else v for k, v in run.items() if k != "id"}
    return {"run": run, "steps": step_rows, "timers": timer_rows, "records": record_rows, "outbox": outbox_rows}


def chain_ok(engine: Engine) -> bool:
    """Every record's prev_hash is the hash of the record before it."""
    with engine.ledger.read() as conn:
        rows = conn.execute(sa.select(records.c.prev_hash, records.c.hash).order_by(records.c.seq)).all()
    return all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, len(rows)))


#: the rows the engine wrote before a new run was built in memory (at 349dc5e), for the two starts below;
#: since then steps carry their rework round, an outage run arms its first status ask (settings.cadences), and a
#: run names the run whose end started it (parent_run_id, follow_up: none here); a step its `when` skips says so in
#: words ("its condition was not met"), its condition recorded apart (`when`)
EXPECTED = json.loads(Path(__file__).with_name("new_run_rows.json").read_text())


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def test_a_new_run_writes_the_rows_it_always_wrote(local: Engine) -> None:
    run = local.start("t-newrun", {"level": 5}, initiator="monitor", trigger={"kind": "alert", "labels": {"a": "b"}})
    done = local.start("t-instant", {}, initiator="ana")

    assert as_json(ledger_rows(local, run.run_id)) == EXPECTED["t-newrun"]
    assert as_json(ledger_rows(local, done.run_id)) == EXPECTED["t-instant"]
    assert chain_ok(local)


def test_the_first_steps_are_waiting_as_the_sop_says(local: Engine) -> None:
    run = local.start("t-newrun", {"level": 5}, initiator="monitor")
    view = local.view(run.run_id)
    states = {step_id: row["state"] for step_id, row in view.steps.items()}
    assert states == {"ask": "active", "standby": "standby", "pause": "active", "gate": "done", "high": "active",
                      "low": "skipped", "never": "skipped", "ping": "ready"}
    assert view.steps["ask"]["due_at"] == T0 + timedelta(minutes=10)
    assert view.steps["pause"]["due_at"] == T0 + timedelta(minutes=10)
    assert view.run["deadline_at"] == T0 + timedelta(hours=2)


def test_the_timers_of_a_new_run_fire_at_their_instants(local: Engine, clock: ManualClock) -> None:
    run = local.start("t-newrun", {"level": 5}, initiator="monitor")
    service = TimerService(local)
    assert service.next_instant() == T0 + timedelta(minutes=5)  # the first ladder level of `ask`, at 50 %
    service.advance_to(T0 + timedelta(minutes=11))
    fired = sorted((f.step_id, f.kind, f.level) for f in service.fired)
    # at 10 min `ask`'s second ladder level fires, then its deadline times it out (one instant: the deadline last,
    # so the rung at 100% reaches its people before the step closes)
    assert fired == [("ask", "due", ""), ("ask", "ladder", "1"), ("ask", "ladder", "2"), ("pause", "wait", "")]
    states = {step_id: row["state"] for step_id, row in local.view(run.run_id).steps.items()}
    assert states["pause"] == "done"  # the wait is over
    assert states["ask"] == "timed_out" and states["standby"] == "active"  # its stand-in took over


def test_a_run_decided_at_once_leaves_no_timer_armed(local: Engine) -> None:
    run = local.start("t-instant", {}, initiator="ana")
    view = local.view(run.run_id)
    assert view.run["status"] == "finished" and view.run["outcome"] == "done"
    with local.ledger.read() as conn:
        armed = conn.execute(sa.select(sa.func.count()).select_from(timers).where(
            timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None))).scalar_one()
    assert armed == 0  # its deadline was armed and disarmed in the same transaction
    assert TimerService(local).next_instant() is None


def test_the_view_built_in_memory_is_what_the_ledger_reads_back(local: Engine, library: Library) -> None:
    """The engine decides a new run's first steps on a view it builds without reading the run back."""
    for sop_id, inputs, key in (("t-newrun", {"level": 5, "service": "web"}, "web"),
                                ("t-newrun", {"level": 1, "service": "db"}, "db"), ("t-instant", {"x": 1}, None)):
        loaded = library.get(sop_id)
        with local.ledger.batch(), local.ledger.read() as conn:  # the run read back in its own transaction
            result, _plan, built = local._insert_run(loaded, inputs, key, "monitor", {"kind": "alert"}, 2.0, None)
            assert built is not None
            read = load_view(conn, result.run_id)
        assert (built.run, built.steps) == (read.run, read.steps)


def test_a_repeat_attaches_to_the_open_run(local: Engine) -> None:
    first = local.start("t-newrun", {"service": "web"}, initiator="monitor", trigger={"n": 1})
    again = local.start("t-newrun", {"service": "web"}, initiator="monitor", trigger={"n": 2})
    other = local.start("t-newrun", {"service": "db"}, initiator="monitor")
    assert again.attached and again.run_id == first.run_id and again.repeats == 1
    assert not other.attached and other.run_id != first.run_id
    assert local.view(first.run_id).run["repeats"] == 1
    kinds = [r[0] for r in ledger_rows(local, first.run_id)["records"]]
    assert kinds.count("run_started") == 1 and kinds[-1] == "trigger_repeated"
    assert chain_ok(local)
    # an alert whose key renders empty (a label it lacks) still dedups: its repeats attach, no run (and page) each
    alert = {"kind": "alert", "alertname": "ServiceDown"}
    blank = local.start("t-newrun", {"service": ""}, initiator="alertmanager", trigger=alert, rendered=True)
    blank_again = local.start("t-newrun", {"service": " "}, initiator="alertmanager", trigger=alert, rendered=True)
    assert not blank.attached and blank_again.attached and blank_again.run_id == blank.run_id
    assert blank.run_id not in (first.run_id, other.run_id)
    # a start that is no signal, whose key renders empty, has nothing to repeat: a run of its own (two starts, two
    # runs); a person cannot give the input blank (refused: leave it out for its default)
    by_hand = [local.start("t-newrun", {"service": ""}, initiator="ana", trigger={"kind": "manual", "by": "ana"},
                           rendered=True) for _ in range(2)]
    with pytest.raises(InputRefused, match="`service` was given empty"):
        local.start("t-newrun", {"service": ""}, initiator="ana", trigger={"kind": "manual", "by": "ana"})
    assert not any(r.attached for r in by_hand) and len({r.run_id for r in by_hand} | {blank.run_id}) == 3


def _paged(engine: Engine, run_id: str) -> list[str]:
    with engine.ledger.read() as conn:
        return [row.kind for row in conn.execute(sa.select(outbox.c.kind).where(outbox.c.run_id == run_id)
                                                  .order_by(outbox.c.id))]


def test_an_automated_step_that_fails_pages_the_owner_and_a_persons_timeout_does_not(local: Engine,
                                                                                    clock: ManualClock) -> None:
    run = local.start("t-newrun", {"service": "fails"}, initiator="monitor").run_id
    local.mark_running(run, "ping")
    local.complete(run, "ping", {}, error="exit code 1")
    assert _paged(local, run).count("step_failed") == 1  # the run goes on: its people are still working

    timed = local.start("t-timeout", {}, initiator="monitor").run_id
    TimerService(local, name="t").advance_to(clock.now() + timedelta(minutes=11))
    assert local.view(timed).state("ask") == "failed"
    kinds = _paged(local, timed)
    assert "step_timed_out" in kinds and "step_failed" not in kinds  # a person's step: it timed out, not "automated"


def test_a_drill_and_a_real_run_of_the_same_key_never_attach_to_each_other(local: Engine) -> None:
    """A drill of the SOP while a real incident of the same key is open starts a run of its own (its simulated
    responders must not finish the real one), and a real alert during a drill starts a real run (not lost as a
    drill's repeat); each attaches only to its own kind."""
    drill = {"kind": "drill", "late": []}
    real = local.start("t-newrun", {"service": "web"}, initiator="monitor", trigger={"kind": "alert"})
    rehearsal = local.start("t-newrun", {"service": "web"}, initiator="drill", trigger=drill)
    assert not rehearsal.attached and rehearsal.run_id != real.run_id
    again = local.start("t-newrun", {"service": "web"}, initiator="monitor", trigger={"kind": "alert"})
    assert again.attached and again.run_id == real.run_id
    second_drill = local.start("t-newrun", {"service": "web"}, initiator="drill", trigger=drill)
    assert second_drill.attached and second_drill.run_id == rehearsal.run_id
    assert local.open_run("t-newrun", {"service": "web"}, {"kind": "alert"}) == real.run_id
    assert local.open_run("t-newrun", {"service": "web"}, drill) == rehearsal.run_id
    assert local.view(real.run_id).run["repeats"] == 1 and local.view(rehearsal.run_id).run["repeats"] == 1
    assert chain_ok(local)


def test_a_run_its_schedule_started_says_which_firing_it_was(local: Engine) -> None:
    """A flow run Prefect's scheduler created reaches the ledger with the instant it was planned for, so an auditor
    can tell a Monday 10:00 run from one a stale schedule fired on a Sunday evening."""
    import uuid
    from types import SimpleNamespace

    from flows.prefect.flow_run import _run_id_for

    planned = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Asia/Shanghai
    flow_run = SimpleNamespace(id=uuid.uuid4(), tags=[], auto_scheduled=True, expected_start_time=planned)
    run_id = _run_id_for(local, "t-newrun", {"service": "cron"}, flow_run)
    trigger = json.loads(local.view(run_id).run["trigger"])
    assert trigger == {"kind": "schedule", "flow_run": str(flow_run.id), "scheduled_for": planned.isoformat()}
    by_hand = SimpleNamespace(id=uuid.uuid4(), tags=[], auto_scheduled=False, expected_start_time=planned)
    assert "scheduled_for" not in json.loads(local.view(_run_id_for(local, "t-newrun", {"service": "ui"}, by_hand)
                                                        ).run["trigger"])


def test_a_drill_open_when_the_release_arrives_no_longer_takes_real_alerts(local: Engine) -> None:
    """Migration 0016: a drill opened before drills had keys of their own (``t-newrun:web``) gets one, so a real alert
    of the same key starts a real run instead of attaching to the drill."""
    drill = local.start("t-newrun", {"service": "web"}, initiator="drill", trigger={"kind": "drill", "late": []})
    real_before = local.start("t-newrun", {"service": "db"}, initiator="monitor", trigger={"kind": "alert"})
    as_released_at(local.ledger, "0015_attach_alone")  # as a release before 2026-12-06 left them
    with local.ledger.engine.begin() as conn:
        conn.execute(sa.update(runs).where(runs.c.id == drill.run_id).values(open_key="t-newrun:web"))

    local.ledger.migrate()

    with local.ledger.read() as conn:
        keys = dict(conn.execute(sa.select(runs.c.id, runs.c.open_key)).all())
    assert keys[drill.run_id] == "drill|t-newrun:web" and keys[real_before.run_id] == "t-newrun:db"
    real = local.start("t-newrun", {"service": "web"}, initiator="monitor", trigger={"kind": "alert"})
    assert not real.attached and real.run_id != drill.run_id


def test_a_repeat_in_a_batch_attaches_and_a_run_another_writer_holds_is_refused_at_once(local: Engine) -> None:
    """The intake thread's group commit: a repeat attaches; on PostgreSQL a run held elsewhere is an error at once
    (NOWAIT: the batch's calls then run again one by one), never a wait that holds the whole batch."""
    first = local.start("t-newrun", {"service": "web"}, initiator="monitor")
    with local.ledger.batch(per_run=True):
        again = local.start("t-newrun", {"service": "web"}, initiator="monitor")
    assert again.attached and again.run_id == first.run_id and again.repeats == 1
    assert local.view(first.run_id).run["repeats"] == 1
    with local.ledger.read() as conn:
        assert verify_chain(conn).ok  # two writers: two lanes, each chained (chain_ok reads one chain)
    if local.ledger.is_sqlite:
        return  # one writer at a time: no other can hold the run
    refused: list[BaseException] = []

    def repeat_in_a_batch() -> None:
        try:
            with local.ledger.batch(per_run=True):
                local.start("t-newrun", {"service": "web"}, initiator="monitor")
        except Exception as exc:  # noqa: BLE001 - what the batch raised is the test's subject
            refused.append(exc)

    with local.ledger.engine.connect() as other:  # another writer, holding the run
        other.execution_options(isolation_level="READ COMMITTED")
        with other.begin():
            other.execute(sa.text("SELECT 1 FROM runs WHERE id = :id FOR UPDATE"), {"id": first.run_id})
            batch = threading.Thread(target=repeat_in_a_batch)
            batch.start()
            batch.join(10)
            waited = batch.is_alive()
    batch.join(10)
    assert not waited, "the batch waited for the run instead of being refused at once"
    assert len(refused) == 1 and isinstance(refused[0], sa.exc.OperationalError), refused
    assert "could not obtain lock" in str(refused[0])
    assert local.view(first.run_id).run["repeats"] == 1  # the refused batch wrote nothing


#: a trigger that writes to the table ``gone`` before each page is queued, in each database's dialect
REFUSE_PAGES = {
    "sqlite": ["CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN INSERT INTO gone VALUES (1); END"],
    "postgresql": ["CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN INSERT INTO gone VALUES (1); RETURN NEW; END $$",
                   "CREATE TRIGGER refuse BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse()"],
}


def test_a_failure_while_starting_leaves_nothing(local: Engine) -> None:
    """The transition's last write fails: no run, no steps, no timers, no records, no page."""
    sqlite = local.ledger.is_sqlite
    with local.ledger.transaction() as tx:  # writing a page now fails in the database (a table it needs is gone)
        tx.conn.exec_driver_sql("CREATE TABLE gone (x integer)")
        for statement in REFUSE_PAGES["sqlite" if sqlite else "postgresql"]:
            tx.conn.exec_driver_sql(statement)
        tx.conn.exec_driver_sql("DROP TABLE gone")
    with pytest.raises(sa.exc.DBAPIError, match="no such table: (main.)?gone" if sqlite else 'relation "gone" does not exist'):
        local.start("t-newrun", {}, initiator="monitor")
    with local.ledger.read() as conn:
        counts = {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                  for t in (runs, steps, timers, records, outbox)}
    assert counts == {"runs": 0, "steps": 0, "timers": 0, "records": 0, "outbox": 0}
    with local.ledger.transaction() as tx:
        tx.conn.exec_driver_sql("DROP TRIGGER refuse" if sqlite else "DROP TRIGGER refuse ON outbox")
    run = local.start("t-newrun", {}, initiator="monitor")  # the next start is whole, its chain sound
    assert ledger_rows(local, run.run_id)["records"][0][0] == "run_started" and chain_ok(local)


class Launcher:
    """Stands in for Prefect: launching a run's flow run first looks the run up, as the real one does."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.launched: dict[str, bool] = {}

    def launch(self, run_id: str) -> None:
        with self.ledger.reader.connect() as conn:  # another connection: sees only what is committed
            self.launched[run_id] = conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is not None


def test_a_start_inside_a_batch_launches_its_flow_run_after_the_batch_commits(local: Engine) -> None:
    launcher = Launcher(local.ledger)
    local.launcher = launcher
    with local.ledger.batch():
        run = local.start("t-newrun", {}, initiator="monitor")
        assert launcher.launched == {}  # not before the commit
    assert launcher.launched == {run.run_id: True}


class TickingClock(ManualClock):
    """Time that passes while the engine works: every reading is 3 ms after the last."""

    def now(self) -> datetime:
        self.at += timedelta(milliseconds=3)
        return self.at


def test_on_a_compressed_run_the_audit_reads_the_sops_own_deadline_and_due(database: TestDatabase, library: Library, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A drill at 120×: a few milliseconds between reading the clock for the deadline and writing the
    run_started record would be a few SOP seconds short (an auditor read "due after 1h59m59s")."""
    from flows.audit import Audit

    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    clock = TickingClock(T0)
    ledger = Ledger(database.url_at(tmp_path / "ledger.db"), clock=clock)
    ledger.migrate()
    engine = Engine(library, ledger, pager=Pager(library.site, ledger), clock=clock)
    run_id = engine.start("t-newrun", initiator="li-wei", speed=120, launch=False).run_id
    run = Audit(ledger, now=clock.now()).run(run_id)
    assert run.sop_deadline_seconds == 2 * 3600  # deadline: 2h
    ask = run.steps["ask"]
    assert run.sop_seconds(ask.ready_at, ask.due_at) == 10 * 60  # due: 10m
    assert Audit(ledger, now=clock.now()).show(run_id)["deadline_s"] == 7200.0  # what `sop audit show` prints as 2h
    engine.pager.close()
    ledger.dispose()


#: what a trigger may carry that JSON escapes or that is more than one byte in UTF-8: quotes, backslashes, control
#: characters, DEL, line and paragraph separators, accents, characters past the BMP
HOSTILE = "a \"quoted\" \\ back\\slash\n\t\r\b\f \x01\x1f \x7f é ü \u2028\u2029 😀 𝄞 </script> 'single' %s %(x)s $1 ||"


def test_a_repeats_record_is_the_record_python_writes_whatever_its_trigger_holds(local: Engine,
                                                                                  clock: ManualClock) -> None:
    """On PostgreSQL a repeat's record is appended in the statement that attaches it, its data and hash completed by
    the server (``Tx.hold_and_append``). It must be, byte for byte, the record the chain's own code writes, or the
    audit would call an honest ledger tampered with: whatever the trigger holds, at whole seconds and between them,
    in a batch and alone, with ``copies`` (a key before ``repeats``) and without."""
    from flows.audit.verify import verify_chain
    from flows.ledger import record_hash
    from flows.ledger.tx import dumps

    trigger = {"kind": "alert", "labels": {"note": HOSTILE, HOSTILE: "a key"}, "values": [1, 2.5, None, True, HOSTILE],
               "aaa": HOSTILE, "zzz": {"deep": {"deeper": HOSTILE}}}
    first = local.start("t-newrun", {"service": "web"}, initiator="monitor")
    expected = []
    clock.set(T0 + timedelta(seconds=1, microseconds=123456))
    with local.ledger.batch(per_run=True):  # twice in one transaction: the second follows the first's head
        for copies in (1, 3):
            local.start("t-newrun", {"service": "web"}, initiator="monitor", trigger=trigger, copies=copies)
            expected.append({"trigger": trigger, "repeats": len(expected) + copies, **({"copies": copies} if copies > 1 else {})})
    clock.set(T0 + timedelta(seconds=2))
    again = local.start("t-newrun", {"service": "web"}, initiator=HOSTILE, trigger=trigger)
    expected.append({"trigger": trigger, "repeats": again.repeats})
    assert again.repeats == 5 and again.run_id == first.run_id

    with local.ledger.read() as conn:
        rows = conn.execute(sa.select(records).where((records.c.run_id == first.run_id)
                                                     & (records.c.kind == "trigger_repeated")).order_by(records.c.seq)).all()
        verified = verify_chain(conn)
    assert [r.data for r in rows] == [dumps(data) for data in expected]
    assert [r.actor for r in rows] == ["monitor", "monitor", HOSTILE]
    assert [at(r.at) for r in rows] == [1.123456, 1.123456, 2.0]
    for r in rows:
        assert r.hash == record_hash(r.prev_hash, r.seq, r.at, r.run_id, r.step_id, r.kind, r.actor, r.data, r.chain,
                                     r.pos)
    assert verified.ok, verified.to_dict()


def test_two_first_alerts_of_one_key_at_once_make_one_run_and_the_later_attaches(local: Engine,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes' first alerts of one key: the later one's look for the open run finds none (the first's run is
    not committed yet), yet it ends attached to that run, its repeat counted and recorded, not a second run (on
    PostgreSQL its insert waits for the first's commit and fails on the key's unique index; it attaches then)."""
    other = Engine(local.library, Ledger(local.ledger.url, clock=local.clock), pager=Pager(local.library.site,
                   local.ledger), clock=local.clock)  # another process's engine: a ledger of its own
    inserted, later = threading.Event(), threading.Event()
    opened = Engine.open_run_in

    def first_holds_its_run_open(self: Engine, *args: Any, **kwargs: Any) -> Any:
        found = opened(self, *args, **kwargs)
        if self is local and not inserted.is_set():  # the first: its run inserted, its transaction still open
            inserted.set()
            later.wait(10)
            time.sleep(0.5)  # the other is now at its own insert (PostgreSQL) or waits for the write lock (SQLite)
        return found

    monkeypatch.setattr(Engine, "open_run_in", first_holds_its_run_open)
    results: dict[str, Any] = {}

    def second() -> None:
        assert inserted.wait(10)
        later.set()
        results["second"] = other.start("t-newrun", {"service": "db"}, initiator="monitor")

    thread = threading.Thread(target=second)
    thread.start()
    results["first"] = local.start("t-newrun", {"service": "db"}, initiator="monitor")
    thread.join(30)
    other.pager.close()
    other.ledger.dispose()

    first, again = results["first"], results["second"]
    assert not first.attached and again.attached and again.run_id == first.run_id and again.repeats == 1
    with local.ledger.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one() == 1
        kinds = [r.kind for r in conn.execute(sa.select(records.c.kind).where(records.c.run_id == first.run_id))]
    assert kinds.count("run_started") == 1 and kinds.count("trigger_repeated") == 1
    assert local.view(first.run_id).run["repeats"] == 1
    with local.ledger.read() as conn:
        assert verify_chain(conn).ok  # two writers: two lanes, each chained (chain_ok reads one chain)
