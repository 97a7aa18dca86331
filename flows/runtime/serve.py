"""The embedded stack behind ``sop serve``: Prefect server (unless one is given), deployments,
executors, the pager, the timer service, the nudger and the HTTP API — started in order,
watched from the first moment, stopped in the reverse order.

Children are watched as soon as they are started: an executor or the pager that dies is
started again (1 s, then twice as long each time, at most 30 s apart) and logged; the
Prefect server dying is told at once, with its log, whatever phase the stack is in.
Stopping goes from the door inwards: the API stops taking requests, the executors stop
taking flow runs and let the ones in hand reach a stopping point, the timer service and
the nudger stop, the pager delivers what it holds, and the Prefect server goes last, so
nothing is left half-submitted.

The Prefect server it starts is the engineers' door, and it is locked: an auth string
(``var/prefect-auth``, 0600, made once) that every process of the stack is handed, CORS
limited to the server's own UI origin, CSRF protection on. Its UI calls the API on the port
it was given (``settings.prefect.port`` or ``--port``), not Prefect's default 4200.

Children are tied to this process (Linux PDEATHSIG): if ``sop serve`` is killed, they go
too, so a restart never finds a stale server holding the port.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from flows import runtime
from flows.engine.build import runnable_library
from flows.engine.secrets import SecretUnsafe, private_file
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine
from flows.language.library import Library, project_root
from flows.logfmt import kv
from flows.prefect import server as prefect_server
from flows.prefect.launcher import short
from flows.prefect.names import AUTH_ENV, AUTH_FILE, pool_name
from flows.runtime.handed import hand_down
from flows.runtime.shutdown import Hangup

log = logging.getLogger("sop.serve")


def links_miss(base_url: str, host: str, port: int) -> str | None:
    """Why the links in pages (made from ``settings.base_url``) would miss an API served on this machine at
    ``host:port`` (another port of this same machine); None when they may reach it (or lead elsewhere: a proxy)."""
    parts = urlsplit(base_url)
    try:
        given = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is no port (80800, abc): no link made from it reaches anything
        return f"settings.base_url is {base_url}, whose port is no port: the links in pages lead nowhere; fix it"
    local = parts.hostname in ("127.0.0.1", "localhost", "::1", host)
    if not local or given == port:
        return None
    return (f"settings.base_url is {base_url}, but the API listens on {host}:{port}: the links in pages lead to the "
            "former; set base_url (config/settings.yaml) to the address people reach")


class StackError(RuntimeError):
    """The stack could not start; the message says what and where to look."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()


def prefect_env(root: Path, api_url: str | None, auth_string: str | None = None) -> dict[str, str]:
    """Environment for every Prefect process of the stack (server, executors, flow runs), signed in with ``auth_string``."""
    home = root / "var" / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_UI_ENABLED": os.environ.get("PREFECT_UI_ENABLED", "true"),
        "SOP_HOME": str(root),
    }
    if api_url:
        env["PREFECT_API_URL"] = api_url
    if auth_string:
        env[AUTH_ENV] = auth_string
    for name in ("SOP_DATABASE_URL", "SOP_INBOX_DIR", "SOP_PREFECT_POOL"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def server_env(port: int, api_url: str, auth_string: str, database: Path) -> dict[str, str]:
    """What the embedded Prefect server adds to :func:`prefect_env`: its database, its auth string,
    CORS for its own UI origin only, CSRF protection, and its UI pointed at its own port."""
    ui = f"http://127.0.0.1:{port}"
    return {
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database}",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_API_AUTH_STRING": auth_string,
        # the UI is served by the same server: these are the names a browser may reach it by
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": f"{ui},http://localhost:{port}",
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        # else the UI calls Prefect's default http://127.0.0.1:4200/api whatever the port
        "PREFECT_SERVER_UI_API_URL": api_url,
        "PREFECT_UI_URL": ui,
    }


def signed_in(api_url: str, auth_string: str | None, timeout: float = 5.0) -> bool:
    """False when the Prefect API refuses ``auth_string`` (401); True when it takes it (or asks for none)."""
    import base64

    headers = {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()} if auth_string else {}
    try:
        return httpx.get(f"{api_url.rstrip('/')}/admin/version", headers=headers, timeout=timeout).status_code != 401
    except httpx.HTTPError:
        return True  # unreachable is told elsewhere, with its own words


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    """True when a Prefect API answers its health check."""
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


#: a child that ran this long before it died was not crash-looping: its restart backoff starts again at 1 s
STEADY = 60.0


@dataclass
class Child:
    """A child process of the stack: how to start it again, its log, whether it is restarted when it dies."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    restart: bool = False
    process: subprocess.Popen = field(init=False)
    #: restarts in a row (each lived less than STEADY seconds): the next one waits 2**restarts seconds
    restarts: int = 0
    due: float | None = None
    stopping: bool = False
    started_at: float = 0.0

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd,
                                        preexec_fn=_die_with_parent)
        out.close()
        if self.due is not None:
            self.restarts += 1
        self.due = None
        self.started_at = time.monotonic()

    def backoff(self) -> float:
        """Seconds before the next restart: 1, 2, 4… at most 30; 1 again once it had run STEADY seconds (a crash a
        day is restarted at once, a crash loop is slowed down)."""
        if time.monotonic() - self.started_at >= STEADY:
            self.restarts = 0
        return min(2.0 ** self.restarts, 30.0)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to its process (nothing when it has exited). Not to its group: an executor's command
        steps are in it, and a SIGTERM would fail the steps the executor is letting finish."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)

    def stop(self, grace: float) -> None:
        """SIGTERM to its process, SIGKILL to its process group after ``grace`` seconds."""
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@dataclass
class Stack:
    """Everything ``sop serve`` runs. ``start()`` then ``stop()`` (or use as a context manager)."""

    root: Path = field(default_factory=project_root)
    api_url: str | None = None
    port: int | None = None
    #: executor processes to start (default: settings.prefect.workers)
    workers: int | None = None
    timers: bool = True
    api: bool = True
    api_port: int | None = None
    #: start a pager process (``sop pager``): the stack's pages leave the API's and the timers' process
    pager: bool = True
    #: seconds between looks for flow runs Prefect lost (crashed or failed) under open runs
    sweep_every: float = 30.0
    #: seconds a flow run stays Pending or Running with no executor behind it before it is rescued
    rescue_grace: float = 15.0
    progress: Callable[[str], None] = lambda message: log.info("event=stack %s", message)
    library: Library | None = None
    engine: Engine | None = None
    children: list[Child] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _api: Any = None
    _fatal: str | None = None
    _watching: threading.Thread | None = None
    _children_lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def logs(self) -> Path:
        path = self.root / "var" / "log"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], *, restart: bool = False) -> Child:
        """Start a child (its output in var/log/<name>.log), watched from now on; ``restart``: start it again
        when it dies (executors, the pager), else its death stops the stack (the Prefect server)."""
        child = Child(name, argv, {**os.environ, **env}, self.root, self.logs / f"{name}.log", restart)
        child.start()
        with self._children_lock:
            self.children.append(child)
        if self._watching is None:
            self._watching = threading.Thread(target=self._watch, name="watch-children", daemon=True)
            self._watching.start()
        return child

    def _watch(self) -> None:
        """Every 0.5 s: restart a dead restartable child (with backoff); a dead vital child is fatal. Until this
        start's stop (a reload's start has a watcher of its own)."""
        stopped = self._stop
        while not stopped.wait(0.5):
            with self._children_lock:
                children = list(self.children)
            for child in children:
                code = child.process.poll()
                if code is None or child.stopping:
                    continue
                if not child.restart:
                    if self._fatal is None:
                        self._fatal = f"{child.name} exited with code {code}; see {child.log}"
                        log.error(kv("event=child_died", child=child.name, code=code, log=child.log))
                    continue
                if child.due is None:
                    child.due = time.monotonic() + child.backoff()
                    log.warning(kv("event=child_died", child=child.name, code=code,
                                   restart_in=f"{child.due - time.monotonic():.0f}s", log=child.log))
                elif time.monotonic() >= child.due:
                    child.start()
                    self.progress(f"{child.name} restarted (it exited with code {code}; see {child.log})")

    def check(self) -> None:
        """Raise StackError when a vital child died (told with its log)."""
        if self._fatal is not None:
            raise StackError(self._fatal)

    def start(self) -> None:
        """Start the stack; raises StackError with the log to read when a part fails."""
        self.root = Path(self.root).resolve()
        self.library = self.library or runnable_library(self.root)
        handed = hand_down(self.root, self.library)  # the pager and the executors run this library, not the files
        settings = self.library.site.settings
        given = self.api_url or os.environ.get("PREFECT_API_URL") or settings.prefect.api_url
        server: Child | None = None
        if given:
            self.api_url = given
            auth = os.environ.get(AUTH_ENV) or None  # a team's server: its auth string, if it has one
            env = prefect_env(self.root, None, auth)
            self.progress(f"using the Prefect server at {given}")
        else:
            port = self.port or settings.prefect.port
            self.api_url = f"http://127.0.0.1:{port}/api"
            try:
                auth = private_file(self.root / AUTH_FILE).decode()
            except SecretUnsafe as exc:
                raise StackError(f"the Prefect server's auth string is not safe: {exc}") from None
            env = prefect_env(self.root, None, auth)
            if healthy(self.api_url):
                self.progress(f"a Prefect server already answers at {self.api_url}: using it")
            else:
                self.progress(f"starting a Prefect server on 127.0.0.1:{port} (SQLite, first start ≈20 s)")
                db = self.root / "var" / "prefect" / "prefect.db"
                db.parent.mkdir(parents=True, exist_ok=True)
                server = self._spawn("prefect-server", prefect_server.command("127.0.0.1", port),
                                     {**env, **server_env(port, self.api_url, auth, db)})
        os.environ["PREFECT_API_URL"] = self.api_url
        if auth:  # this process's clients (the launcher of its engine, its API's) sign in with it too
            os.environ[AUTH_ENV] = auth
        self.engine = runtime.engine(self.root, library=self.library, background_pages=True)
        if self.pager:  # pages queued by any process of the stack are rendered and delivered there
            self._spawn("pager", [sys.executable, "-m", "flows", "pager"], {"SOP_HOME": str(self.root), **handed},
                        restart=True)
            self.progress("pager process started")
        if self.timers:  # timers need only the ledger: deadlines that passed while we were down fire now
            service, stopped = TimerService(self.engine), self._stop
            self._thread("timers", lambda: service.run(stopped))
            self.progress("timer service started")
        if server is not None:
            self._wait_healthy(server, "prefect-server")
        if not signed_in(self.api_url, auth):
            where = ("$PREFECT_API_AUTH_STRING" if given else
                     f"{self.root / AUTH_FILE}: is this server another project's? stop it or set settings.prefect.port")
            raise StackError(f"the Prefect server at {self.api_url} refuses our auth string ({where})")
        if server is not None:
            self.progress(f"Prefect UI on {self.api_url.removesuffix('/api')}: its password is in {self.root / AUTH_FILE}")
        elif not given and signed_in(self.api_url, None):  # a server we did not start, open to anyone
            log.warning("event=prefect_unlocked api=%s", self.api_url)
            self.progress(f"warning: the Prefect server at {self.api_url} answers without an auth string: stop it "
                          "and `sop serve` starts a locked one")
        self.progress("deploying the SOP library")
        deployed = self._deploy(env)
        self.progress(f"{len(deployed)} SOPs deployed to work pool {pool_name(self.library)}")
        executors = self.workers if self.workers is not None else settings.prefect.workers
        for i in range(executors):
            self._spawn(f"executor-{i + 1}", [sys.executable, "-m", "flows", "executor", "--name",
                                              f"executor-{i + 1}-{os.getpid()}"],
                        {**env, "PREFECT_API_URL": self.api_url, **handed}, restart=True)
        if executors:
            self.progress(f"{executors} executor process(es) started ({settings.prefect.concurrency} flow runs each)")
        self.check()
        from flows.prefect.nudger import Nudger

        nudger, stopped = Nudger(self.engine.launcher, sweep_every=self.sweep_every, grace=self.rescue_grace), self._stop
        self._thread("nudger", lambda: nudger.run(stopped))
        if self.api:
            self._start_api()
        self.check()
        self.progress("ready")

    def _deploy(self, env: dict[str, str]) -> dict[str, str]:
        """Pool, queues and one deployment per SOP (``sop deploy``); a Prefect server that dies or refuses
        meanwhile is told in one line."""
        from flows.prefect.deployments import deploy_library

        try:
            return deploy_library(self.library, self.api_url, env)  # type: ignore[arg-type]
        except Exception as exc:
            self._stop.wait(1.0)  # the watcher sees a server that died under the deploy
            self.check()
            raise StackError(f"deploying the SOP library to {self.api_url} failed: {short(exc)}") from None

    def _start_api(self) -> None:
        """The HTTP API in a thread of this process (host/port from settings.api, $SOP_API_PORT or api_port)."""
        import socket

        import uvicorn

        from flows.api.app import create_app
        from flows.api.stopping import STOP_BOUND_S

        settings = self.library.site.settings.api  # type: ignore[union-attr]
        port = self.api_port or int(os.environ.get("SOP_API_PORT") or settings.port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, port))
        except OSError as exc:
            sock.close()
            raise StackError(f"the HTTP API cannot listen on {settings.host}:{port} ({exc.strerror}): set "
                             "settings.api.port or $SOP_API_PORT, or run `sop serve --no-api`") from None
        app = create_app(self.engine)  # type: ignore[arg-type]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=STOP_BOUND_S))
        self._api = (server, app)
        self._thread("api", lambda: server.run(sockets=[sock]))
        deadline = time.monotonic() + 15
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        if not server.started:
            raise StackError(f"the HTTP API did not start on {settings.host}:{port}")
        self.progress(f"HTTP API on http://{settings.host}:{port} (OpenAPI at /docs)")
        missed = links_miss(self.library.site.settings.base_url, settings.host, port)  # type: ignore[union-attr]
        if missed is not None:
            log.warning("event=base_url_elsewhere %s", missed)
            self.progress(f"warning: {missed}")
        gate = app.state.gate
        inactive = ", ".join(f"{name} ({reason})" for name, reason in gate.inactive.items())
        self.progress(f"API tokens: {len(gate.tokens)} active" + (f"; inactive: {inactive}" if inactive else ""))
        for warning in gate.warnings:
            self.progress(f"warning: {warning}")

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _wait_healthy(self, child: Child, name: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise StackError(f"{name} exited with code {child.process.returncode}; see {child.log}")
            if healthy(self.api_url or ""):
                return
            time.sleep(0.5)
        raise StackError(f"{name} did not become healthy in {timeout:.0f}s; see {child.log}")

    def reload(self) -> bool:
        """Read sops/ and config/ again (SIGHUP, ``sop deploy``). When they validate (the API's token secrets
        too), every part but the Prefect server stops as at a stop and starts again on them, deployed anew; else
        nothing changes and the errors are told (file:line). A start that fails on the new library (the Prefect
        server away for its deploy, a port taken) is told, and the parts start again on the library loaded
        before. True when reloaded."""
        from flows.api.auth import Gate, SecretsRefused
        from flows.language.loader import SpecInvalid

        try:
            library = runnable_library(self.root)
            if self.api:
                Gate(library.site)  # the API's tokens: a secret refused stops nothing
        except (SpecInvalid, SecretsRefused) as exc:
            errors = exc.errors if isinstance(exc, SpecInvalid) else []
            why = (f"{len(errors)} error(s) in sops/ or config/: " + "; ".join(map(str, errors[:3]))
                   + (" …" if len(errors) > 3 else "")) if errors else str(exc)
            log.error(kv("event=reload_refused", error=why))
            self.progress(f"reload refused, still serving the library loaded before: {why}")
            return False
        before = self.library
        self.progress("reloading sops/ and config/: stopping every part but the Prefect server")
        self.stop(keep_prefect=True)
        try:
            self._start_on(library)
        except Exception as exc:  # StackError, or what a part raised: back to what ran
            log.error(kv("event=reload_failed", error=short(exc)))
            self.progress(f"reload failed ({short(exc)}): starting again on the library loaded before")
            self.stop(keep_prefect=True)
            self._start_on(before)  # if this fails too, `sop serve` stops, as a failed start does
            return False
        self.progress("reloaded")
        return True

    def _start_on(self, library: Library | None) -> None:
        """Start again (after ``stop(keep_prefect=True)``) on ``library``: new threads, a new watcher."""
        self.library = library
        self._stop, self._threads, self._watching, self._fatal = threading.Event(), [], None, None
        self.start()

    def stop(self, keep_prefect: bool = False) -> None:
        """Stop from the door inwards: the API, the executors (they let their flow runs reach a stopping
        point), the timer service and the nudger, the resumes reports started, the pager, the Prefect server
        last (``keep_prefect``: a reload keeps it). Each child gets SIGTERM and, after its grace, SIGKILL."""
        if self._api is not None:
            from flows.api.app import close

            self._api[0].should_exit = True
            close(self._api[1])
            self._api = None
        with self._children_lock:
            children = list(self.children)
        for child in children:
            child.stopping = True
        executors = [c for c in children if c.name.startswith("executor-")]
        # together: an executor drains for at most 30 s (flows.prefect.executor); not at all when the Prefect server
        # died (its flow runs cannot reach a stopping point: the nudger rescues them after the restart)
        grace = 5.0 if self._fatal is not None else 40.0
        for child in executors:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in executors:
            child.stop(grace=max(0.0, deadline - time.monotonic()))
        self._stop.set()
        for thread in [*self._threads, *([self._watching] if self._watching else [])]:
            thread.join(timeout=5)
        self._settle_resumes()
        kept = [c for c in children if keep_prefect and c.name == "prefect-server"]
        for child in reversed([c for c in children if not c.name.startswith("executor-") and c not in kept]):
            child.stop(grace=10.0)
        if self.engine is not None and self.engine.pager is not None:
            self.engine.pager.close()
        for child in kept:
            child.stopping = False  # watched again by the next start's watcher
        with self._children_lock:
            self.children[:] = kept
        self.progress("stopped" if not kept else "stopped (the Prefect server goes on)")

    def _settle_resumes(self) -> None:
        """Let the resumes that reports started on their thread reach the Prefect server before it is stopped
        (at most RESUME_WAIT seconds; none when the server died). A resume still under way stays flagged in the
        ledger: the nudger of the next start resumes its run."""
        if self.engine is None or self.engine.launcher is None:
            return
        from flows.prefect.launcher import RESUME_WAIT

        if not self.engine.launcher.settle_nudges(0.0 if self._fatal is not None else RESUME_WAIT):
            self.progress("resumes still under way are left to the nudger's next start")

    def wait(self, hangup: Hangup | None = None) -> None:
        """Block until Ctrl-C / SIGTERM, watching the children; reload on SIGHUP (``hangup``: a handler
        installed before the start)."""
        from flows.runtime.shutdown import on_sighup, on_sigterm

        terminated = on_sigterm()  # not self._stop.set() in the handler: see flows/runtime/shutdown.py
        hangup = hangup or on_sighup()
        try:
            while not terminated.is_set() and not self._stop.wait(0.5):
                if hangup.take():
                    self.reload()
                self.check()
        except KeyboardInterrupt:
            pass
