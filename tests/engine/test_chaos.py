"""Kill -9 of an executor mid-step, then at random moments: the executor, the pager, the Prefect server, `sop serve`.

The tests run `sop serve` as a user does (a subprocess on its own project copy) and kill its parts with
SIGKILL, as an OOM killer or a power cut would; `sop serve` is started again whenever it is gone, as
systemd does with ``Restart=always``. Only the test of random moments is marked ``alone`` (`make test` runs it
with the machine to itself): the two that kill an executor at a moment they choose, on the package's Prefect
server, wait for events within bounds a shared machine meets, as tests/engine/test_durability.py's kills do.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from flows.ledger import Ledger
from flows.ledger.schema import executors, runs, steps
from notifications import read_inbox
from tests.conftest import SOP_COMMAND
from tests.engine.conftest import (
    assert_timers_fired_once,
    kind_records,
    make_project,
    wait_for,
    with_prefect_database,
)
from tests.support import children_of, free_port

HERE = Path(__file__).resolve().parent
SPEED = 600
#: live runs of the chaos test
RUNS = 15
#: who answers chaos-chain's human steps: the primaries of growth-lead and data-analyst (config/roles.yaml)
PEOPLE = {"review": "zhang-min", "analyse": "priya-nair"}


def _project(repo_root: Path, target: Path, *, prefect: str) -> Path:
    """A project with the chaos probes only (tests/engine/chaos_sops/) and ``prefect`` as its settings.prefect."""
    root = make_project(repo_root, target, only=())
    for probe in (HERE / "chaos_sops").glob("*.yaml"):
        (root / "sops" / probe.name).write_text(probe.read_text())
    settings = root / "config" / "settings.yaml"
    text, count = re.subn(r"^  prefect: \{.*\}$", f"  prefect: {prefect}", settings.read_text(), flags=re.M)
    assert count == 1, "config/settings.yaml changed shape: settings.prefect not found"
    settings.write_text(text)
    with open(root / "config" / "tokens.yaml", "a") as tokens:  # the analyst reports from her phone (the API)
        tokens.write("  analyst-phone:\n    env: SOP_TOKEN_ANALYST\n    role: responder\n    person: priya-nair\n")
    return root


#: the operator token the tests start runs with (the HTTP API's own door: `sop run` spends seconds importing)
OPERATOR_TOKEN = "chaos-operator-" + os.urandom(8).hex()
#: priya-nair's responder token: she answers `analyse` through the HTTP API, zhang-min `review` with `sop done`
ANALYST_TOKEN = "chaos-analyst-" + os.urandom(8).hex()


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SOP_HOME": str(root), "SOP_DATABASE_URL": f"sqlite:///{root / 'var' / 'ledger.db'}",
            "SOP_INBOX_DIR": str(root / "var" / "inbox"), "SOP_API_PORT": str(free_port()), "NO_COLOR": "1",
            "COLUMNS": "300", "PREFECT_LOGGING_LEVEL": "WARNING", "SOP_TOKEN_OPERATOR": OPERATOR_TOKEN,
            "SOP_TOKEN_ANALYST": ANALYST_TOKEN, **extra}


def _start_run(env: dict[str, str], sop_id: str, marker: Path) -> str | None:
    """Start a run through `sop serve`'s HTTP API at 600× (as li-wei's operator console); None when it is down."""
    try:
        answer = httpx.post(f"http://127.0.0.1:{env['SOP_API_PORT']}/v1/runs", timeout=30,
                            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                            json={"sop": sop_id, "inputs": {"marker": str(marker)}, "speed": SPEED})
    except httpx.HTTPError:
        return None
    assert answer.status_code == 201, answer.text
    return answer.json()["run"]


class Systemd:
    """`sop serve` as a unit with ``Restart=always``: started again (at once) whenever it is gone.

    Each start logs to its own file (serve-<n>.log); ``failed_starts`` keeps the tail of every start that
    exited before it was ready.
    """

    def __init__(self, root: Path, env: dict[str, str], logs: Path, args: list[str]):
        self.root, self.env, self.logs, self.args = root, env, logs, args
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.failed_starts: list[str] = []
        self.start_seconds: list[float] = []  # how long each start took until `sop serve` said it is serving
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start `sop serve` and wait until it says it is serving (False: it exited first)."""
        self.ready.clear()
        self.starts += 1
        log = self.logs / f"serve-{self.starts}.log"
        began = time.monotonic()
        with open(log, "ab") as out:
            self.process = subprocess.Popen([*SOP_COMMAND, "serve", *self.args], env=self.env, cwd=self.root,
                                            stdout=out, stderr=subprocess.STDOUT)
        process = self.process
        wait_for(lambda: "serving" in log.read_text() or process.poll() is not None, 120,
                 f"sop serve to be ready ({log})", interval=0.2)
        if process.poll() is not None:
            self.failed_starts.append(f"{log.name}: {log.read_text()[-600:]}")
            return False
        self.ready.set()
        self.start_seconds.append(round(time.monotonic() - began, 1))
        return True

    def serving(self) -> bool:
        """`sop serve` is up, ready and not on its way out (a dead Prefect server makes it stop)."""
        process = self.process
        return (self.ready.is_set() and process is not None and process.poll() is None
                and "error:" not in (self.logs / f"serve-{self.starts}.log").read_text())

    def supervise(self) -> None:
        """Restart `sop serve` whenever it is gone, on a thread, until :meth:`stop`."""
        def loop() -> None:
            while not self._stop.is_set():
                if self.process is None or self.process.poll() is not None:
                    self.ready.clear()
                    self.start()
                self._stop.wait(0.2)

        self._thread = threading.Thread(target=loop, name="systemd", daemon=True)
        self._thread.start()

    def children(self, kind: str) -> list[int]:
        """The pids of `sop serve`'s children of a kind: executor, pager, prefect-server."""
        pattern = {"executor": " executor ", "pager": " pager", "prefect-server": "flows.prefect.server start"}[kind]
        if self.process is None or self.process.poll() is not None:
            return []
        return [pid for pid, cmd in children_of(self.process.pid).items() if pattern in cmd + " "]

    def stop(self) -> None:
        """Stop supervising and stop `sop serve` as Ctrl-C does."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=150)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-chars:]}" for p in sorted(self.logs.glob("serve-*.log")))


def _sop(root: Path, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SOP_COMMAND, *args], env=env, cwd=root, capture_output=True, text=True, timeout=timeout)


def _marker_lines(marker: Path) -> Counter[str]:
    return Counter(marker.read_text().split()) if marker.exists() else Counter()


def test_kill_9_of_an_executor_mid_step_reruns_that_step_and_leaves_the_other_run_alone(stack, repo_root, tmp_path):
    """Two executors, one flow run each (one slot each). The executor running run A's command step is killed -9
    while the command sleeps: `sop serve` starts it again, the nudger finds A's flow run Running with no executor
    behind it and puts it back in its queue, once (one ``flow_run_rescued``), the step starts again and A
    finishes. Run B, on the other executor at the same moment, finishes with its step run once and no rescue.

    The command process A's executor had started is not a child of the killed process's group and ends on
    its own: A's marker shows two starts and up to two ends (the step cut by the kill ran again)."""
    root = _project(repo_root, tmp_path / "site", prefect="{port: 4200, workers: 2, concurrency: 1}")
    env = _env(root, PREFECT_API_URL=stack.api_url, SOP_PREFECT_POOL=f"chaos-kill-{os.getpid()}")
    ledger = Ledger(env["SOP_DATABASE_URL"])
    marker = tmp_path / "marker.txt"
    serve = Systemd(root, env, tmp_path, ["--sweep-every", "1", "--rescue-grace", "3"])
    assert serve.start(), serve.log_tail()
    try:
        a, b = (_start_run(env, "chaos-slow-step", marker) for _ in "ab")
        assert a and b

        def holders() -> dict[str, int] | None:
            """run → pid of the executor whose beat names its flow run, once both are named."""
            with ledger.read() as conn:
                bound = dict(conn.execute(sa.select(runs.c.flow_run_id, runs.c.id)).all())
                beats = conn.execute(sa.select(executors.c.pid, executors.c.flow_runs)).all()
            found = {bound[f]: beat.pid for beat in beats for f in json.loads(beat.flow_runs) if f in bound}
            lines = _marker_lines(marker)
            return found if len(found) == 2 and lines[f"{a}:work:start"] and lines[f"{b}:work:start"] else None

        held = wait_for(holders, 60, "both runs' command steps to run, each on its executor", interval=0.1)
        assert held[a] != held[b], held
        os.kill(held[a], signal.SIGKILL)

        wait_for(lambda: not _open(ledger, [a, b]), 60, "both runs to finish after the kill")
        wait_for(lambda: serve.children("executor") and len(serve.children("executor")) == 2, 10,
                 "sop serve to start the killed executor again")
        assert _alive(held[b]), "the other run's executor was disturbed"
    finally:
        serve.stop()
    with ledger.read() as conn:
        states = dict(conn.execute(sa.select(steps.c.run_id, steps.c.state).where(steps.c.run_id.in_([a, b]))).all())
        outcomes = dict(conn.execute(sa.select(runs.c.id, runs.c.outcome).where(runs.c.id.in_([a, b]))).all())
    assert states == {a: "done", b: "done"} and outcomes == {a: "done", b: "done"}, (states, outcomes)
    lines = _marker_lines(marker)
    assert lines[f"{a}:work:start"] == 2, lines  # cut by the kill, then run again from the ledger
    assert 1 <= lines[f"{a}:work"] <= 2, lines
    assert lines[f"{b}:work:start"] == 1 and lines[f"{b}:work"] == 1, lines
    rescued = kind_records(ledger, "flow_run_rescued")
    assert [run for run, _, _ in rescued] == [a], rescued
    assert rescued[0][2]["state"] == "RUNNING", rescued
    assert "restarted" in serve.log_tail(), serve.log_tail()


def test_kill_9_of_an_executor_mid_step_of_a_once_step_fails_it_rather_than_make_it_again(stack, repo_root, tmp_path):
    """A step marked `once: true` (an SMS to every customer, a payment) cut by a kill -9 of its executor is not made
    again when the nudger puts its flow run back: the step fails saying it may have happened, the run fails, its
    owner's role is paged with that, and the command was started once."""
    root = _project(repo_root, tmp_path / "site", prefect="{port: 4200, workers: 1, concurrency: 1}")
    env = _env(root, PREFECT_API_URL=stack.api_url, SOP_PREFECT_POOL=f"chaos-once-{os.getpid()}")
    ledger = Ledger(env["SOP_DATABASE_URL"])
    marker = tmp_path / "marker.txt"
    serve = Systemd(root, env, tmp_path, ["--sweep-every", "1", "--rescue-grace", "3"])
    assert serve.start(), serve.log_tail()
    try:
        run = _start_run(env, "chaos-once-step", marker)
        assert run

        def holder() -> int | None:
            """The pid of the executor whose beat names the run's flow run, once its command has started."""
            with ledger.read() as conn:
                flow_run = conn.execute(sa.select(runs.c.flow_run_id).where(runs.c.id == run)).scalar()
                beats = conn.execute(sa.select(executors.c.pid, executors.c.flow_runs)).all()
            pids = [beat.pid for beat in beats if flow_run in json.loads(beat.flow_runs)]
            return pids[0] if pids and _marker_lines(marker)[f"{run}:work:start"] else None

        os.kill(wait_for(holder, 60, "the once step's command to run on an executor", interval=0.1), signal.SIGKILL)
        wait_for(lambda: not _open(ledger, [run]), 60, "the run to end after the kill", explain=serve.log_tail)
    finally:
        serve.stop()
    with ledger.read() as conn:
        state = conn.execute(sa.select(steps.c.state).where(steps.c.run_id == run)).scalar()
        outcome = conn.execute(sa.select(runs.c.outcome).where(runs.c.id == run)).scalar()
    assert (state, outcome) == ("failed", "failed"), (state, outcome)
    assert _marker_lines(marker)[f"{run}:work:start"] == 1, _marker_lines(marker)  # never made again
    assert [r for r, _, _ in kind_records(ledger, "flow_run_rescued")] == [run]
    failed = [data for r, _, data in kind_records(ledger, "step_failed") if r == run]
    assert len(failed) == 1 and "may have happened" in json.dumps(failed[0]), failed
    assert [data["attempt"] for r, _, data in kind_records(ledger, "step_attempt_started") if r == run] == [1]
    owner = wait_for(lambda: [m for m in read_inbox("zhang-min", root / "var" / "inbox")
                              if "may have happened" in m["body"]], 30, "the owner's page saying why")
    assert "Chaos probe (a slow command that must not run twice)" in owner[0]["title"] + owner[0]["body"], owner


def _open(ledger: Ledger, run_ids: list[str]) -> list[str]:
    with ledger.read() as conn:
        return list(conn.execute(sa.select(runs.c.id).where(runs.c.id.in_(run_ids) & (runs.c.status == "running")))
                    .scalars())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


class People:
    """The people of the chaos test on a thread: they start runs at random moments through the HTTP API
    (retrying while the stack is down, as a console would) and answer each active human step a random 0–6 s
    after it became active: zhang-min with `sop done --as zhang-min` (up or down), priya-nair from her phone
    (the HTTP API, retrying while it is down)."""

    def __init__(self, root: Path, env: dict[str, str], ledger: Ledger, marker: Path, runs_wanted: int,
                 rng: random.Random):
        self.root, self.env, self.ledger, self.marker = root, env, ledger, marker
        self.runs_wanted, self.rng = runs_wanted, rng
        self.run_ids: list[str] = []
        self.refused: list[str] = []  # a `sop done` that failed: a person told "no" by a stack that should say yes
        self.answered: set[tuple[str, str]] = set()
        self._answer_at: dict[tuple[str, str], float] = {}
        self._busy: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="person")
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="starter")  # not queued behind `sop done`s
        self._thread = threading.Thread(target=self._loop, name="people", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)
        self._starter.shutdown(wait=True)

    def _loop(self) -> None:
        next_run = time.monotonic()
        starting: Any = None
        while not self._stop.is_set():
            now = time.monotonic()
            if starting is None and len(self.run_ids) < self.runs_wanted and now >= next_run:
                starting = self._starter.submit(self._start_run)
            if starting is not None and starting.done():
                next_run = time.monotonic() + (self.rng.uniform(0.5, 4) if starting.result() else 1.0)
                starting = None
            for key in self._active_human_steps():
                self._answer_at.setdefault(key, now + self.rng.uniform(0, 6))
            for key, at in list(self._answer_at.items()):
                if at <= now and key not in self.answered and key not in self._busy:
                    self._busy.add(key)
                    self._pool.submit(self._answer, key)
            self._stop.wait(0.3)

    def _start_run(self) -> bool:
        run_id = _start_run(self.env, "chaos-chain", self.marker)
        if run_id:
            self.run_ids.append(run_id)
        return run_id is not None

    def _active_human_steps(self) -> list[tuple[str, str]]:
        with self.ledger.read() as conn:
            rows = conn.execute(sa.select(steps.c.run_id, steps.c.step_id).where(
                (steps.c.kind == "human") & (steps.c.state == "active")))
            return [(r.run_id, r.step_id) for r in rows]

    def _answer(self, key: tuple[str, str]) -> None:
        run_id, step_id = key
        try:
            person = PEOPLE[step_id]
            if step_id == "analyse":
                try:
                    answer = httpx.post(f"http://127.0.0.1:{self.env['SOP_API_PORT']}/v1/runs/{run_id}/steps/{step_id}",
                                        headers={"Authorization": f"Bearer {ANALYST_TOKEN}"}, json={}, timeout=30)
                except httpx.HTTPError:  # `sop serve` is down: she tries again in a moment
                    self._answer_at[key] = time.monotonic() + 1.0
                    return
                ok, said = answer.status_code == 200, answer.text
            else:
                out = _sop(self.root, self.env, "done", run_id, step_id, "--as", person)
                ok, said = out.returncode == 0, out.stderr
            if ok or self._recorded(run_id, step_id, person):  # (a report taken just before `sop serve` was
                self.answered.add(key)                             # killed: its answer lost, it is in the ledger)
            else:
                self.refused.append(f"{run_id} {step_id} as {person}: {said.strip()[-300:]}")
                self._answer_at[key] = time.monotonic() + 1.0
        finally:
            self._busy.discard(key)

    def _recorded(self, run_id: str, step_id: str, person: str) -> bool:
        """The step is done by ``person`` in the ledger: her report was taken, whatever answer she saw."""
        with self.ledger.read() as conn:
            row = conn.execute(sa.select(steps.c.state, steps.c.actor).where(
                (steps.c.run_id == run_id) & (steps.c.step_id == step_id))).first()
        return row is not None and (row.state, row.actor) == ("done", person)

    def all_answered(self) -> bool:
        return len(self.answered) == 2 * len(self.run_ids)


@pytest.mark.alone  # `make test` runs it after the others, with the machine to itself
@pytest.mark.timeout(360)  # ~2 min on a quiet machine; up to 5 on one shared by five test suites
def test_chaos_kill_9_of_every_process_kind_at_random_moments(repo_root, tmp_path, prefect_database):
    """`sop serve` on its own project (its own Prefect server on SQLite) runs 15 live runs at 600×: a command
    step, a wait, two people at once (one with an escalation ladder), a command step; outage class, so status
    cadence timers fire too, and the run's deadline (8 h = 48 s) passes for the slower ones. Meanwhile 9
    kill -9 land at random moments: an executor and the pager (restarted by `sop serve`), the Prefect server
    (`sop serve` exits saying so) and `sop serve` itself; whenever `sop serve` is gone it is started again.
    People answer at random moments, up or down.

    Then, within a bounded wait: every run finishes done; no command step that completed ran again — a step
    cut by a kill may run again, once per rescue of its run's flow run, so each "<run>:<step>" marker line
    appears at least once and at most 1 + that run's ``flow_run_rescued`` records and replaced flow runs
    (``flow_run_created`` with ``replaces``: one that ended Failed under a killed Prefect server); every rescue is recorded
    once, and every flow run's creation once; no timer is lost (none armed and past due) and none fired twice (at most one record per escalation
    level, due, cadence period and run deadline); `sop audit verify` passes.

    ``CHAOS_SEED=<n>`` replays the kill schedule of a failure (its seed is in the failure's message)."""
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    began = time.monotonic()
    root = _project(repo_root, tmp_path / "site", prefect=f"{{port: {free_port()}, workers: 2, concurrency: 4}}")
    with_prefect_database(root, prefect_database)
    env = _env(root)
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_API_AUTH_STRING", None)
    env.pop("SOP_PREFECT_POOL", None)
    ledger = Ledger(env["SOP_DATABASE_URL"])
    marker = tmp_path / "marker.txt"
    serve = Systemd(root, env, tmp_path, ["--sweep-every", "1", "--rescue-grace", "3"])
    assert serve.start(), serve.log_tail()
    people = People(root, env, ledger, marker, RUNS, rng)
    kills: list[tuple[float, str, int]] = []
    # each kind at least once; two restarts of the whole stack (they cost the most), the rest inside it
    schedule = ["executor"] * 3 + ["pager"] * 3 + ["prefect-server", "serve"] + [rng.choice(["executor", "pager"])]
    rng.shuffle(schedule)
    context = f"seed={seed}"
    try:
        serve.supervise()
        people.start()
        for kind in schedule:
            time.sleep(rng.uniform(3, 9))
            pid = _victim(serve, kind)
            assert pid is not None, f"{context}: no {kind} to kill (kills={kills} starts={serve.start_seconds})\n{serve.log_tail()}"
            os.kill(pid, signal.SIGKILL)
            kills.append((round(time.monotonic() - began, 1), kind, pid))
        context += f" kills={kills} starts={serve.start_seconds}"
        assert _victim(serve, "serve"), f"{context}: sop serve never came back\n{serve.log_tail()}"
        wait_for(lambda: len(people.run_ids) == RUNS, 60, f"{RUNS} runs to start ({context})")
        wait_for(lambda: people.all_answered() and not _open(ledger, people.run_ids), 120,
                 f"every run to finish ({context})",  # what is open then, not when the wait began
                 explain=lambda: f"open: {_open(ledger, people.run_ids)}\n{serve.log_tail()}")
    finally:
        people.stop()
        serve.stop()
    assert len(kills) >= 8 and set(kind for _, kind, _ in kills) == {"executor", "pager", "prefect-server", "serve"}
    assert not people.refused, f"{context}: {people.refused}"
    run_ids = people.run_ids

    with ledger.read() as conn:
        outcomes = Counter(conn.execute(sa.select(runs.c.outcome).where(runs.c.id.in_(run_ids))).scalars())
    assert outcomes == {"done": RUNS}, f"{context}: {outcomes}"

    rescued = kind_records(ledger, "flow_run_rescued")
    assert len({data["state_id"] for _, _, data in rescued}) == len(rescued), f"{context}: {rescued}"
    created = Counter(data["flow_run_id"] for _, _, data in kind_records(ledger, "flow_run_created"))
    assert max(created.values()) == 1, f"{context}: a flow run recorded as created twice: {created.most_common(3)}"
    # a flow run the nudger replaced (it ended Failed or Crashed: a Prefect server killed under it answers 409 to
    # its next call) is also a second chance for the step it had started, as a rescue is
    replaced = [run for run, _, data in kind_records(ledger, "flow_run_created") if data.get("replaces")]
    rescues = Counter(run for run, _, _ in rescued) + Counter(replaced)
    lines = _marker_lines(marker)
    for run_id in run_ids:
        for step_id in ("prepare", "publish"):
            ran = lines[f"{run_id}:{step_id}"]
            assert 1 <= ran <= 1 + rescues[run_id], \
                f"{context}: {run_id}:{step_id} ran {ran}× ({rescues[run_id]} rescues or replacements)"

    assert_timers_fired_once(ledger, run_ids, context)
    verified = _sop(root, env, "audit", "verify", timeout=120)
    assert verified.returncode == 0, f"{context}: {verified.stdout}{verified.stderr}"


def _victim(serve: Systemd, kind: str, within: float = 150) -> int | None:
    """A pid of that kind in the `sop serve` that is serving now (waiting for one that is, and for it to have
    restarted a child it lost)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        process = serve.process
        if serve.serving():
            found = [process.pid] if kind == "serve" else serve.children(kind)
            if kind == "executor" and time.monotonic() < deadline - within + 10:
                found = [pid for pid in found if pid in _busy_executors(serve)]  # mid-run if it comes within 10 s
            if found and process is serve.process and serve.serving():
                return random.choice(found)
        time.sleep(0.2)
    return None


@functools.cache
def _ledger(url: str) -> Ledger:
    return Ledger(url)


def _busy_executors(serve: Systemd) -> set[int]:
    """Pids of the executors whose last beat names flow runs in flight."""
    with _ledger(serve.env["SOP_DATABASE_URL"]).read() as conn:
        return {row.pid for row in conn.execute(sa.select(executors.c.pid, executors.c.flow_runs))
                if json.loads(row.flow_runs or "[]")}
