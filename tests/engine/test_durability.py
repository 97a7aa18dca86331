"""What must survive: a killed `sop serve`, two timer services racing, priority under load."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.ledger import Ledger, utc
from flows.ledger.schema import records as records_table
from flows.ledger.schema import runs as runs_table
from flows.ledger.schema import steps, timers
from tests.conftest import SOP_COMMAND, TestDatabase
from tests.engine.conftest import make_project, wait_for
from tests.support import children_of, free_port


def _env(root: Path, database: TestDatabase, **extra: str) -> dict[str, str]:
    """The environment of a `sop` command of the project at ``root``, on this test's database."""
    return {**os.environ, "SOP_HOME": str(root), "SOP_DATABASE_URL": database.url_at(root / "var" / "ledger.db"),
            "SOP_INBOX_DIR": str(root / "var" / "inbox"), "SOP_API_PORT": str(free_port()), "NO_COLOR": "1",
            "COLUMNS": "300", **extra}


def _escalations(ledger: Ledger, run_id: str) -> list[tuple[str, dict, object]]:
    import json

    with ledger.read() as conn:
        rows = conn.execute(sa.select(records_table).where((records_table.c.run_id == run_id)
                                                           & (records_table.c.kind == "escalation")).order_by(records_table.c.seq))
        return [(json.loads(r.data)["level"], json.loads(r.data), utc(r.at)) for r in rows]


def _serve(root: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    child = subprocess.Popen([*SOP_COMMAND, "serve", "--workers", "1"], env=env, cwd=root, stdout=out,
                             stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "serving" in log.read_text() or child.poll() is not None, 120, "sop serve to be ready")
        assert child.poll() is None, log.read_text()
    except BaseException:  # never leave a stack running behind a failed test: it would slow every later one
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        raise
    return child


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    return [pid, *(member for child in children_of(pid) for member in _family(child))]


def _dump_threads(pid: int) -> None:
    """Every `sop` process of ``pid``'s family writes its threads' stacks to its stderr (`kill -USR1`)."""
    for member in _family(pid):
        try:
            argv = Path(f"/proc/{member}/cmdline").read_bytes().split(b"\0")
            if any(part.endswith(b"/sop") for part in argv) or b"flows" in argv:  # `sop …` and `python -m flows …`
                os.kill(member, signal.SIGUSR1)
        except OSError:
            pass
    time.sleep(1.0)


def _stopped(child: subprocess.Popen, timeout: float, log: Path | None = None) -> str:
    """The output of a service told to stop (piped, or in ``log`` and its project's var/log/). One that does not
    stop within ``timeout`` fails the test with its output and every thread's stack (`kill -USR1`), then is
    killed; in the `finally` of a test already failing, it is killed without hiding that failure."""
    failing = sys.exc_info()[0] is not None
    try:
        return child.communicate(timeout=timeout)[0] or ""
    except subprocess.TimeoutExpired:
        _dump_threads(child.pid)
        child.kill()
        output = child.communicate()[0] or ""
        if failing:
            return output  # that failure is the one to read
        if log is not None:
            output += "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-20000:]}"
                                for p in [log, *sorted((log.parent / "site" / "var" / "log").glob("*.log"))]
                                if p.exists())
        pytest.fail(f"`{' '.join(map(str, child.args))}` did not stop {timeout:g} s after SIGINT; its output and "
                    f"threads:\n{output}")


def test_kill_9_of_serve_while_a_run_waits_then_restart(stack, database, repo_root, tmp_path):
    """`sop serve` killed -9 while a run waits for a person: its ladder's level 1 comes due while nothing runs and
    fires late, once, when `sop serve` is started again; level 2 fires on time after the restart (7.5 s after it at
    this ``speed``: `sop serve` starts in seconds) or, on a machine too busy for that, late; none twice."""
    speed = 30
    root = make_project(repo_root, tmp_path / "site", only=("t-ladder",))
    env = _env(root, database, PREFECT_API_URL=stack.api_url, SOP_PREFECT_POOL=f"kill-{os.getpid()}")
    log = tmp_path / "serve.log"
    serve = _serve(root, env, log)
    started = subprocess.run([*SOP_COMMAND, "run", "t-ladder", "--speed", str(speed), "--as", "li-wei", "--json"],
                             env=env, cwd=root, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    import json

    run_id = json.loads(started.stdout)["run"]
    ledger = Ledger(env["SOP_DATABASE_URL"])
    with ledger.read() as conn:
        ready_at = utc(conn.execute(sa.select(steps.c.ready_at).where(steps.c.run_id == run_id)).scalar_one())
    level_1 = ready_at + timedelta(minutes=5) / speed  # +10 s
    level_2 = ready_at + timedelta(minutes=10) / speed  # +20 s

    os.kill(serve.pid, signal.SIGKILL)
    serve.wait(timeout=10)
    time.sleep(max(0.0, (level_1 - ledger.clock.now()).total_seconds()) + 2.5)  # level 1 comes due while down
    assert _escalations(ledger, run_id) == []
    serve = _serve(root, env, log)
    try:
        wait_for(lambda: len(_escalations(ledger, run_id)) >= 2, 60, "levels 1 and 2 after the restart")
        done = subprocess.run([*SOP_COMMAND, "done", run_id, "respond", "--actor", "zhao-lei", "-f", "answer=ok"],
                              env=env, cwd=root, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        serve.send_signal(signal.SIGINT)
        _stopped(serve, 30, log)
    fired = _escalations(ledger, run_id)
    assert [level for level, _, _ in fired] == ["1", "2"]  # each level exactly once, none after the report
    first, second = fired[0][1], fired[1][1]
    assert first["late"] is True and first["late_ms"] >= 2000  # came due while everything was down
    lateness = (fired[1][2] - level_2).total_seconds()
    assert (0 <= lateness <= 1.0) or second["late"] is True, lateness
    with ledger.read() as conn:
        armed = conn.execute(sa.select(sa.func.count()).select_from(timers).where(
            (timers.c.run_id == run_id) & timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None))).scalar_one()
    assert armed == 0  # the report disarmed the rest of the ladder


def test_sop_deploy_reloads_a_running_sop_serve_and_a_broken_library_changes_nothing(stack, database, repo_root,
                                                                                      tmp_path):
    """An SOP added after `sop serve` started: `sop deploy` rings it, it reloads (its API then starts runs of the
    new SOP, its executor runs them); a half-edited file then: the reload is refused, saying where, and what was
    loaded before goes on."""
    import httpx

    root = make_project(repo_root, tmp_path / "site", only=("t-approval",))
    token = "reload-" + os.urandom(8).hex()
    env = _env(root, database, PREFECT_API_URL=stack.api_url, SOP_PREFECT_POOL=f"reload-{os.getpid()}",
               SOP_TOKEN_OPERATOR=token)
    log = tmp_path / "serve.log"
    serve = _serve(root, env, log)

    def start(sop_id: str) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{env['SOP_API_PORT']}/v1/runs", json={"sop": sop_id}, timeout=30,
                          headers={"Authorization": f"Bearer {token}"})

    def deploy() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SOP_COMMAND, "deploy"], env=env, cwd=root, capture_output=True, text=True, timeout=120)

    try:
        text = (root / "sops" / "t-approval.yaml").read_text()
        (root / "sops" / "t-added.yaml").write_text(text.replace("id: t-approval", "id: t-added", 1))
        assert start("t-added").status_code == 404  # the library it loaded at its start
        deployed = deploy()
        assert deployed.returncode == 0, deployed.stderr
        assert f"`sop serve` (pid {serve.pid}) told to reload" in deployed.stdout, deployed.stdout
        wait_for(lambda: "serve: reloaded" in log.read_text(), 120, "sop serve to reload")
        started = start("t-added")
        assert started.status_code == 201, started.text
        ledger = Ledger(env["SOP_DATABASE_URL"])
        run_id = started.json()["run"]
        wait_for(lambda: _suspended(ledger, run_id), 60, "the new SOP's flow run to run on the executor")

        (root / "sops" / "t-added.yaml").write_text(text.replace("id: t-approval", "id: t-added", 1)
                                                    .replace("due: ", "due: soon ", 1))
        assert deploy().returncode == 1  # `sop deploy` refuses it too, and rings nobody
        serve.send_signal(signal.SIGHUP)  # as `systemctl reload` would
        wait_for(lambda: "reload refused" in log.read_text(), 60, "sop serve to refuse the reload")
        refused = log.read_text().split("reload refused", 1)[1]
        assert "still serving the library loaded before" in refused and "t-added.yaml:" in refused, refused
        assert serve.poll() is None and start("t-added").status_code == 201  # what it loaded before goes on

        # valid files, but a token sharing another's secret: the API could not start on them, so nothing stops
        (root / "sops" / "t-added.yaml").write_text(text.replace("id: t-approval", "id: t-added", 1))
        with open(root / "config" / "tokens.yaml", "a") as tokens:
            tokens.write("  second-console:\n    env: SOP_TOKEN_OPERATOR\n    role: operator\n    person: li-wei\n")
        assert deploy().returncode == 0
        wait_for(lambda: log.read_text().count("reload refused") == 2, 60, "sop serve to refuse the shared secret")
        assert "the API cannot start" in log.read_text().rsplit("reload refused", 1)[1]
        assert serve.poll() is None and start("t-added").status_code == 201
    finally:
        serve.send_signal(signal.SIGINT)
        _stopped(serve, 60, log)
    assert not (root / "var" / "serve.pid").exists()


def _suspended(ledger: Ledger, run_id: str) -> bool:
    """The run's flow run has run on an executor up to its first wait for a person."""
    with ledger.read() as conn:
        return bool(conn.execute(sa.select(runs_table.c.suspends).where(runs_table.c.id == run_id)).scalar_one())


def test_two_timer_services_never_fire_a_timer_twice(database, repo_root, tmp_path, monkeypatch):
    from flows import runtime

    root = make_project(repo_root, tmp_path / "site")
    env = _env(root, database)
    monkeypatch.setenv("SOP_DATABASE_URL", env["SOP_DATABASE_URL"])
    engine = runtime.engine(root, prefect=False)
    runs = [engine.start("t-ladder", initiator="li-wei", speed=600).run_id for _ in range(20)]
    services = [subprocess.Popen([*SOP_COMMAND, "timers"], env=env, cwd=root, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for _ in range(2)]

    def fired_rows() -> list:
        """The runs' fired timers but their status cadence's (each fired ask arms the next: as many as time allows)."""
        with engine.ledger.read() as conn:
            rows = conn.execute(sa.select(timers).where(timers.c.run_id.in_(runs) & timers.c.fired_at.isnot(None)))
            return [r for r in rows if r.kind not in ("cadence", "cadence_check")]

    try:  # every timer comes due within 6 s; the services' start-up is what a busy machine makes slow
        wait_for(lambda: len(fired_rows()) >= 20 * 6 + 20, 90, "every ladder level, due timer and run deadline")
    finally:
        for service in services:
            service.send_signal(signal.SIGINT)
        outputs = [_stopped(s, 60) for s in services]
        engine.pager.close()

    with engine.ledger.read() as conn:
        escalations = conn.execute(sa.select(records_table.c.run_id, records_table.c.data).where(
            records_table.c.kind == "escalation")).all()
    fired = fired_rows()
    assert len(fired) == 20 * 6 + 20, outputs  # 5 ladder levels + the due timer each, + the run deadline (6 s)
    assert len({r.fired_by for r in fired}) == 2, outputs  # both services took part in the race
    import json
    from collections import Counter

    per_level = Counter((run_id, json.loads(data)["level"]) for run_id, data in escalations)
    assert len(per_level) == 20 * 5 and set(per_level.values()) == {1}


@contextlib.contextmanager
def _pool_of_its_own(stack, project, tag: str, sops: tuple[str, ...] = (), concurrency: int = 8):
    """An engine on a ledger and a pool of their own (at most ``concurrency`` flow runs at once), with the t-prio-*
    SOPs (and ``sops``) deployed, and
    ``spawn(slots, log)``: a `sop executor` of ``slots`` threads on the pool (its output in ``log``), stopped after
    (yielded beside the engine). A ledger of its own: the package stack's nudger sweeps its own ledger's runs into
    its own pool (a run whose launch is slow would be started there, on the stack's executor, beside the test's)."""
    from flows.engine.build import build_engine
    from flows.prefect.deployments import deploy, ensure_pool
    from flows.prefect.launcher import Launcher, prefect_client
    from flows.runtime.serve import prefect_env

    pool = f"{tag}-{os.getpid()}"
    database = f"sqlite:///{project / 'var' / f'{tag}-{os.getpid()}.db'}"
    ledger = Ledger(database)
    ledger.migrate()
    engine = build_engine(stack.library, ledger=ledger, launcher=Launcher(ledger, stack.api_url, pool))
    env = {**prefect_env(project, None), "SOP_DATABASE_URL": database}
    with prefect_client(stack.api_url) as client:
        ensure_pool(client, concurrency=concurrency, pool=pool)
        # only the SOPs these tests run: the whole library is 27 deployments (and three schedules) more
        wanted = {sop_id: loaded for sop_id, loaded in engine.library.sops.items()
                  if sop_id.startswith("t-prio-") or sop_id in sops}
        deploy(client, dataclasses.replace(engine.library, sops=wanted), env, pool=pool)
    executor_env = {**os.environ, **env, "PREFECT_API_URL": stack.api_url, "SOP_PREFECT_POOL": pool}
    started: list[tuple[subprocess.Popen, object]] = []

    def spawn(slots: int, log: Path | None = None) -> subprocess.Popen:
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
        started.append((subprocess.Popen([*SOP_COMMAND, "executor", "--slots", str(slots)], env=executor_env,
                                         stdout=out, stderr=subprocess.STDOUT), out))
        return started[-1][0]

    try:
        yield engine, spawn
    finally:
        for executor, out in started:
            executor.terminate()
            executor.wait(timeout=60)
            if out is not subprocess.DEVNULL:
                out.close()
        engine.pager.close()


@contextlib.contextmanager
def _executor_of_its_own(stack, project, slots: int, tag: str, log: Path | None = None):
    """:func:`_pool_of_its_own` with one `sop executor` of ``slots`` threads on it (yielded beside the engine)."""
    with _pool_of_its_own(stack, project, tag, concurrency=slots) as (engine, spawn):
        yield engine, spawn(slots, log)


def test_an_executor_told_to_stop_lets_the_flow_run_in_hand_finish_through_its_client(stack, project, tmp_path):
    """SIGTERM while a flow run's command step runs: the executor takes no more and waits (its drain) for the run to
    reach a stopping point, which it reports to Prefect through the executor's client, still open."""
    from flows.prefect.launcher import prefect_client

    log = tmp_path / "executor.log"
    with _executor_of_its_own(stack, project, 1, "drain", log=log) as (engine, executor):
        gate = tmp_path / "gate"
        run_id = engine.start("t-prio-blocker", {"gate": str(gate)}, initiator="li-wei").run_id
        wait_for(lambda: engine.view(run_id).state("work") == "running", 90, "the run's step to start")
        executor.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the executor is draining: the step still runs
        assert executor.poll() is None, log.read_text()
        gate.touch()
        executor.wait(timeout=30)
        flow_run_id = engine.view(run_id).run["flow_run_id"]
    output = log.read_text()
    assert "client has been closed" not in output and "cannot be started again" not in output, output
    assert engine.view(run_id).run["outcome"] == "done", output
    with prefect_client(stack.api_url) as client:
        assert client.read_flow_run(flow_run_id).state.type.value == "COMPLETED", output


def test_an_executor_told_to_stop_while_a_step_waits_to_retry_stops_at_once_and_the_step_runs_again(
        stack, project, tmp_path, gateway):
    """SIGTERM while an http step waits 20 s for its next attempt: the executor stops at once, saying so in one line,
    without making that attempt; it puts the flow run back in its queue, and the next executor makes the call again
    (the step was left running in the ledger), so the run goes on: nothing lost, nothing waited for."""
    from tests.engine.conftest import records

    gateway.failures = 1_000  # the gateway fails every call until the test mends it
    first_log, second_log = tmp_path / "executor-1.log", tmp_path / "executor-2.log"
    with _pool_of_its_own(stack, project, "retry", sops=("t-retrying",)) as (engine, spawn):
        first = spawn(1, first_log)
        run_id = engine.start("t-retrying", {}, initiator="li-wei").run_id
        wait_for(lambda: records(engine, run_id, "step_attempt_failed"), 90, "the step's first attempt to fail",
                 explain=lambda: first_log.read_text())
        signalled = time.monotonic()
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
        took = time.monotonic() - signalled
        said = first_log.read_text()
        assert took < 5.0, f"stopped after {took:.1f} s:\n{said}"
        stopped = [line for line in said.splitlines() if "stopped in" in line]
        assert len(stopped) == 1 and "1 put back in their queue" in stopped[0], said
        assert len(gateway.requests) == 1, "the stopping executor made the next attempt"
        assert engine.view(run_id).state("call") == "running"

        gateway.failures = 0  # mended: the next call succeeds
        spawn(1, second_log)
        wait_for(lambda: engine.view(run_id).run["outcome"] == "done", 90, "the step to run again on the next executor",
                 explain=lambda: second_log.read_text())
    assert len(gateway.requests) == 2
    rescued = records(engine, run_id, "flow_run_rescued")
    assert len(rescued) == 1 and rescued[0]["data"]["by"].startswith("executor-"), rescued


def test_a_step_put_back_between_attempts_goes_on_counting_its_attempts_on_the_next_executor(
        stack, project, tmp_path, gateway):
    """An http step of `retries: 3` (4 attempts at most) whose gateway always fails, on a run at 8x (its retries wait
    2.5 s, 5 s, 10 s): the first executor makes attempts 1 and 2 and is stopped (SIGTERM) while the step waits for
    the third; the next executor makes attempts 3 and 4 only, and the step fails after the 4th, not after 4 more.
    The run's story reads attempt 1 of 4, 2 of 4, the flow run put back by the first executor, 3 of 4, 4 of 4, then
    the failure."""
    from flows.audit import Audit
    from tests.engine.conftest import records

    gateway.failures = 1_000
    first_log, second_log = tmp_path / "executor-1.log", tmp_path / "executor-2.log"
    with _pool_of_its_own(stack, project, "recount", sops=("t-retrying",)) as (engine, spawn):
        first = spawn(1, first_log)
        run_id = engine.start("t-retrying", {}, initiator="li-wei", speed=8).run_id
        wait_for(lambda: len(records(engine, run_id, "step_attempt_failed")) == 2, 90, "the step's second attempt to "
                 "fail", explain=lambda: first_log.read_text())
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
        assert "1 put back in their queue" in first_log.read_text(), first_log.read_text()
        spawn(1, second_log)
        wait_for(lambda: engine.view(run_id).state("call") == "failed", 90, "the step to fail on the next executor",
                 explain=lambda: second_log.read_text())
        time.sleep(1.0)  # an attempt more would come at once (the 3rd of a count started again: 2.5 s at most)
    failed = [(r["data"].get("attempt"), r["data"].get("of")) for r in records(engine, run_id, "step_attempt_failed")]
    assert len(gateway.requests) == 4 and failed == [(1, 4), (2, 4), (3, 4), (4, 4)], (failed, second_log.read_text())
    texts = [e["text"] for e in Audit(engine.ledger).show(run_id)["timeline"] if e["step"] == "call" or
             e["kind"] == "flow_run_rescued"]
    said = [t.split(": ")[0] for t in texts if t.startswith(("attempt", "its flow run", "failed"))]
    assert said == ["attempt 1 of 4 failed", "attempt 2 of 4 failed",
                    "its flow run put back in its queue by " + records(engine, run_id, "flow_run_rescued")[0]["data"]
                    ["by"] + ", stopped before the step's next attempt", "attempt 3 of 4 failed",
                    "attempt 4 of 4 failed", "failed"], texts


def _step_started(engine, run_id: str):
    with engine.ledger.read() as conn:
        return conn.execute(sa.select(records_table.c.at).where(
            (records_table.c.run_id == run_id) & (records_table.c.kind == "step_started"))).scalar_one_or_none()


def test_with_the_executor_busy_a_complaint_run_starts_before_older_runs(stack, project):
    """Priority under load: one slot, held; 30 routine runs and an outage run queued before a complaint run.
    When the slot frees, the complaint run's automated step starts first, then the outage's, then the rest."""
    with _executor_of_its_own(stack, project, 1, "prio") as (engine, _):
        gate = project / "var" / f"gate-{os.getpid()}"
        busy = engine.start("t-prio-blocker", {"gate": str(gate)}, initiator="li-wei").run_id
        wait_for(lambda: engine.view(busy).state("work") == "running", 90, "the first run to hold the executor")
        queued = [engine.start(sop, initiator="li-wei").run_id
                  for sop in ["t-prio-routine"] * 30 + ["t-prio-outage", "t-prio-complaint"]]  # oldest first
        assert engine.view(busy).state("work") == "running"
        gate.touch()  # the slot frees now, with all 32 runs queued
        wait_for(lambda: all(not engine.view(r).is_open for r in queued), 240, "the queued runs to finish")
    started = {run_id: _step_started(engine, run_id) for run_id in queued}
    order = [engine.view(run_id).run["sop_id"] for run_id in sorted(started, key=started.get)]
    assert order[:2] == ["t-prio-complaint", "t-prio-outage"], order
    assert set(order[2:]) == {"t-prio-routine"}


def test_routine_runs_leave_a_thread_free_for_a_complaint_run(stack, project):
    """Headroom: with two threads, routine runs may hold one; the other waits for higher classes. Two routine
    runs that hold their thread until a gate opens: one runs, one waits; a complaint run started then runs at
    once, on the thread kept free, while the gate is still shut."""
    with _executor_of_its_own(stack, project, 2, "headroom") as (engine, _):
        gate = project / "var" / f"headroom-gate-{os.getpid()}"
        routine = [engine.start("t-prio-blocker", {"gate": str(gate)}, initiator="li-wei").run_id for _ in range(2)]
        try:
            wait_for(lambda: any(engine.view(r).state("work") == "running" for r in routine), 90,
                     "a routine run to hold a thread")
            time.sleep(3)  # the executor has seen both runs queued (it is rung at once, and looks every second)
            holding = [r for r in routine if engine.view(r).state("work") == "running"]
            assert len(holding) == 1, "both routine runs took a thread: none was kept for higher classes"
            complaint = engine.start("t-prio-complaint", initiator="li-wei").run_id
            wait_for(lambda: not engine.view(complaint).is_open, 60,
                     "the complaint run to finish on the thread kept free, the routine runs still holding theirs")
            assert not gate.exists() and engine.view(holding[0]).state("work") == "running"
            waiting = next(r for r in routine if r not in holding)
            assert _step_started(engine, waiting) is None, "the second routine run took the complaint's thread"
        finally:
            gate.touch()
        wait_for(lambda: all(not engine.view(r).is_open for r in routine), 120, "the routine runs to finish")


@pytest.fixture(autouse=True)
def _quiet_prefect_logs(monkeypatch):
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")


@contextlib.contextmanager
def _split_processes(stack, project, tmp_path, roles: tuple[str, ...]):
    """docs/team.md's processes of ``roles`` (``api``: the uvicorn command) on a ledger and a pool of their own and the
    package stack's Prefect server, each up (it said so); yields role → (process, its log). Killed after if still
    running."""
    from tests.support import free_port

    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = {**os.environ, "SOP_DATABASE_URL": database, "SOP_PREFECT_POOL": f"split-{os.getpid()}",
           "PREFECT_API_URL": stack.api_url, "NO_COLOR": "1", "COLUMNS": "300"}
    Ledger(database).migrate()
    commands = {role: [*SOP_COMMAND, role] for role in roles if role != "api"}
    if "api" in roles:
        commands["api"] = [str(Path(sys.executable).parent / "uvicorn"), "--factory",
                           "flows.runtime.web:from_environment", "--host", "127.0.0.1", "--port", str(free_port())]
    says_up = {"executor": "running flow runs", "pager": "delivering the outbox", "timers": "timer service",
               "nudger": "sweeping", "api": "Application startup complete"}
    started = {}
    try:
        for role, argv in commands.items():
            log = tmp_path / f"{role}.log"
            with open(log, "wb") as out:
                started[role] = (subprocess.Popen(argv, env=env, cwd=project, stdout=out, stderr=subprocess.STDOUT), log)
        for role, (_, log) in started.items():
            wait_for(lambda log=log, role=role: says_up[role] in log.read_text(), 120, f"{role} to start",
                     explain=log.read_text)
        yield started
    finally:
        for process, _ in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_each_split_process_stops_on_sigterm_within_seconds_saying_so_in_one_line(stack, project, tmp_path):
    """docs/team.md's processes, each sent SIGTERM once up: every `sop` one exits 0 within seconds with one line saying
    it stopped and how long that took; the API (uvicorn) finishes its shutdown, then ends by the SIGTERM it was sent,
    which systemd counts as a clean stop (a shell shows it as status 143)."""
    roles = ("executor", "pager", "timers", "nudger", "api")
    with _split_processes(stack, project, tmp_path, roles) as started:
        took = {}
        for role, (process, _) in started.items():
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            took[role] = time.monotonic() - signalled
    said = {role: log.read_text() for role, (_, log) in started.items()}
    for role in ("executor", "pager", "timers", "nudger"):
        stopped = [line for line in said[role].splitlines() if " stopped in " in line]
        assert started[role][0].returncode == 0 and len(stopped) == 1 and stopped[0].startswith(f"{role}: "), said[role]
        assert took[role] < 5.0, f"{role} took {took[role]:.1f} s to stop:\n{said[role]}"
    assert started["api"][0].returncode == -signal.SIGTERM, said["api"]
    assert said["api"].index("Application shutdown complete") < said["api"].index("Finished server process")
    assert took["api"] < 5.0 and "Traceback" not in said["api"], said["api"]


def test_each_split_process_reloads_sops_and_config_on_sighup_or_says_why_not(stack, project, tmp_path):
    """SIGHUP to the executor, the timer service and the nudger (the pager's own test checks a page's new contact,
    tests/engine/test_outbox.py): each says it reloaded and runs on; with a config/ broken by a typo, each says in
    one line that the reload is refused and why, and runs on what it had; SIGTERM still stops each cleanly."""
    roles = ("executor", "timers", "nudger")
    people = project / "config" / "people.yaml"
    text = people.read_text()
    with _split_processes(stack, project, tmp_path, roles) as started:
        for process, _ in started.values():
            process.send_signal(signal.SIGHUP)
        for role, (_, log) in started.items():
            wait_for(lambda log=log, role=role: f"{role}: reloaded sops/ and config/" in log.read_text(), 60,
                     f"{role} to say it reloaded", explain=log.read_text)
        try:
            people.write_text(text.replace("  tom-becker:\n", "  tom-becker:\n    nmae: typo\n"))
            for process, _ in started.values():
                process.send_signal(signal.SIGHUP)
            for role, (_, log) in started.items():
                wait_for(lambda log=log: "reload refused" in log.read_text(), 60, f"{role} to refuse the broken config",
                         explain=log.read_text)
        finally:
            people.write_text(text)  # the package's other tests share this project
        for process, log in started.values():
            assert process.poll() is None, log.read_text()
            refused = [line for line in log.read_text().splitlines() if "reload refused" in line]
            assert len(refused) == 1 and "people.yaml" in refused[0] and "nmae" in refused[0], log.read_text()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0, log.read_text()


def test_after_a_reload_that_failed_the_pager_runs_the_library_the_rest_of_sop_serve_went_back_to(
        stack, database, repo_root, tmp_path, monkeypatch):
    """`sop serve` reloads on files that validate (Zhang Min has a new contact, and the API a port that is taken),
    cannot start on them and goes back to the library loaded before. Its pager, a child process started again then,
    runs that library too, as the API and the timers in `sop serve`'s own process do: the next page reaches Zhang
    Min's contact loaded before, not the one in the files the stack went back from."""
    import socket

    from flows.runtime.serve import Stack
    from tests.engine.conftest import records

    root = make_project(repo_root, tmp_path / "site", only=("t-approval",))
    settings, people = root / "config" / "settings.yaml", root / "config" / "people.yaml"
    port = free_port()
    settings.write_text(settings.read_text().replace("port: 8000", f"port: {port}"))
    inbox = root / "var" / "inbox"
    for name, value in {"SOP_HOME": str(root), "SOP_DATABASE_URL": database.url_at(root / "var" / "ledger.db"),
                        "SOP_INBOX_DIR": str(inbox), "SOP_PREFECT_POOL": f"back-{os.getpid()}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SOP_API_PORT", raising=False)
    monkeypatch.delenv("ZHANG_MIN_URL", raising=False)
    served = Stack(root=root, api_url=stack.api_url, workers=0)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        served.start()
        people.write_text(people.read_text().replace('"${ZHANG_MIN_URL:-inbox://zhang-min}"', '"inbox://zhang-min-new"'))
        settings.write_text(settings.read_text().replace(f"port: {port}", f"port: {taken.getsockname()[1]}"))
        assert served.reload() is False  # "reload failed": the API cannot listen; back on the library loaded before
        assert served.library.site.people["zhang-min"].contacts == ["${ZHANG_MIN_URL:-inbox://zhang-min}"]

        from flows.ledger.schema import pagers

        [pager] = [c for c in served.children if c.name == "pager"]

        def pager_up() -> bool:  # until it beats, sop serve's own process delivers its pages itself
            with served.engine.ledger.read() as conn:
                return pager.process.pid in conn.execute(sa.select(pagers.c.pid)).scalars().all()

        wait_for(pager_up, 60, "the pager started again after the reload to beat", explain=pager.log.read_text)
        run_id = served.engine.start("t-approval", {}, initiator="li-wei").run_id
        wait_for(lambda: [r for r in records(served.engine, run_id, "notification")
                          if r["data"].get("notification") == "run_started"], 60, "the pager to send the first page")
        assert not (inbox / "zhang-min-new.jsonl").exists(), "the pager ran the files sop serve went back from"
        assert (inbox / "zhang-min.jsonl").exists()
    finally:
        taken.close()
        served.stop()
        if served.engine is not None:
            served.engine.pager.close()
