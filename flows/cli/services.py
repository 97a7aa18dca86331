"""The services a site runs: ``sop serve`` (all of them in one stack) or each on its own for a team
(``sop deploy``, ``sop executor``, ``sop timers``, ``sop nudger``, ``sop pager``; docs/team.md).

Each runs until Ctrl-C or SIGTERM and then stops cleanly; each may run more than once at a time
(``sop deploy`` creates or updates, the others share their work through the ledger and Prefect).
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli import app
from flows.cli.common import console, err_console, fail, library, refuse_library


def _prefect(lib: Any) -> tuple[str, str | None]:
    """The Prefect API URL and auth string this site uses (settings, $PREFECT_API_URL, var/prefect-auth)."""
    from flows.engine.secrets import SecretUnsafe
    from flows.prefect.names import prefect_api_url, prefect_auth_string

    api_url = prefect_api_url(lib)
    try:
        return api_url, prefect_auth_string(lib, api_url)
    except SecretUnsafe as exc:
        fail(f"the Prefect server's auth string is not safe: {exc}")
        raise  # fail() exits; for the type checker


def _refused_us(exc: BaseException) -> bool:
    """Whether ``exc`` is the Prefect server refusing our credentials (HTTP 401 or 403)."""
    return getattr(getattr(exc, "response", None), "status_code", None) in (401, 403)


def _unreachable(api_url: str, exc: Exception) -> None:
    from flows.prefect.launcher import short

    if _refused_us(exc):  # it answers: starting it is no help
        fail(f"the Prefect server at {api_url} refused our credentials "
             f"(HTTP {exc.response.status_code})",  # type: ignore[attr-defined]
             "PREFECT_API_AUTH_STRING must be the server's PREFECT_SERVER_API_AUTH_STRING (user:password)")
    fail(f"cannot reach the Prefect server at {api_url}: {short(exc)}",
         "start it (`sop serve` starts one), or set PREFECT_API_URL / settings.prefect.api_url")


def _stopped(role: str, name: str, stop: Any, what: str) -> None:
    """The one line a service process writes at its stop, beside the one it wrote at its start: how long the stop
    took from the signal (SIGTERM or Ctrl-C), and what it leaves."""
    since = getattr(stop, "at", None)
    took = f" in {time.monotonic() - since:.1f} s" if since is not None else ""
    err_console.print(f"[dim]{role}:[/] {name} stopped{took} ({what})", soft_wrap=True, highlight=False)


@app.command()
def serve(
    workers: Annotated[int | None, typer.Option(help="executor processes to start (default: settings.prefect.workers)")] = None,
    port: Annotated[int | None, typer.Option(help="port of the embedded Prefect server")] = None,
    timers: Annotated[bool, typer.Option(help="run the timer service in this process")] = True,
    api: Annotated[bool, typer.Option(help="serve the HTTP API (settings.api host/port, $SOP_API_PORT)")] = True,
    sweep_every: Annotated[float, typer.Option(min=0.5, max=3600, help="seconds between looks for lost flow runs")] = 30.0,
    rescue_grace: Annotated[float, typer.Option(min=1, max=3600, help="seconds a flow run may be Pending or Running "
                                                "with no executor behind it before it is queued again")] = 15.0,
) -> None:
    """Start everything: a local Prefect server (unless PREFECT_API_URL is set), executors, timers, the HTTP API.

    Ctrl-C stops it cleanly. Logs of the children are in var/log/.
    """
    from flows.api.auth import SecretsRefused
    from flows.language.loader import SpecInvalid
    from flows.runtime.serve import Stack, StackError

    stack = Stack(workers=workers, port=port, timers=timers, api=api, sweep_every=sweep_every,
                  rescue_grace=rescue_grace, progress=lambda m: console.print(f"[dim]serve:[/] {m}"))
    from flows.language.library import project_root
    from flows.runtime.shutdown import on_sighup

    pid_file = project_root() / SERVE_PID
    hangup = on_sighup()  # from the first moment: a SIGHUP during the start reloads once it is up, never kills it
    try:
        stack.start()
        pid_file.write_text(f"{os.getpid()}\n")
        console.print(f"[green]✓[/] serving — Prefect UI at {stack.api_url.removesuffix('/api')}, Ctrl-C to stop; "
                      f"`sop deploy` (or kill -HUP {os.getpid()}) reloads sops/ and config/")
        stack.wait(hangup)
    except (StackError, SecretsRefused) as exc:
        fail(str(exc))
    except SpecInvalid as exc:  # sops/ or config/ went wrong: where, before anything started
        refuse_library(exc)
    except Exception:  # _exit_now ends the process before Python could print it: print it here
        err_console.print_exception()
        fail("sop serve stopped on the error above", "please report it with var/log/")
    finally:
        stack.stop()
        with suppress(OSError):
            if pid_file.read_text().strip() == str(os.getpid()):  # not another `sop serve`'s, started since
                pid_file.unlink()
        _exit_now()


#: where a running `sop serve` writes its pid (``sop deploy`` rings it to reload)
SERVE_PID = Path("var") / "serve.pid"


def _serving(root: Path) -> int | None:
    """The pid of the `sop serve` of the project at ``root`` that its pid file names, when it is alive, is one and
    serves that project (a pid reused by another project's `sop serve` is not it); else None."""
    try:
        pid = int((root / SERVE_PID).read_text().strip())
        proc = Path(f"/proc/{pid}")
        command = (proc / "cmdline").read_bytes().split(b"\0")
        env = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        its_root = Path(os.fsdecode(env[b"SOP_HOME"])) if env.get(b"SOP_HOME") else (proc / "cwd").resolve()
    except (OSError, ValueError):
        return None
    if b"serve" not in command or not any(part.endswith(b"sop") or part == b"flows" for part in command):
        return None
    return pid if its_root.resolve() == root.resolve() else None


def _exit_now() -> None:
    """End ``sop serve`` once its stack has stopped, with the exit code under way (0 when none). What could
    still hold the interpreter's exit is best effort: a resume on the launcher's thread (flagged in the ledger,
    the next nudger makes it) or Prefect's log and event workers; with the Prefect server gone its client
    retries each for about a minute, and systemd's restart would wait that long."""
    import logging
    import sys

    error = sys.exc_info()[1]
    code = 0 if error is None else getattr(error, "exit_code", 1)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code if isinstance(code, int) else 1)


@app.command()
def deploy() -> None:
    """Create or update the work pool, its queue per class and one Prefect deployment per SOP.

    Run it after changing sops/ (team mode; `sop serve` does it at start). Safe to run again. A `sop serve` running
    for this project (var/serve.pid) is told to reload sops/ and config/ (SIGHUP).
    """
    from flows.prefect.deployments import deploy_library
    from flows.runtime.serve import prefect_env

    lib = library()
    api_url, auth = _prefect(lib)
    if auth:
        os.environ["PREFECT_API_AUTH_STRING"] = auth
    try:
        deployed = deploy_library(lib, api_url, prefect_env(lib.root, None))
    except Exception as exc:
        _unreachable(api_url, exc)
        return
    console.print(f"[green]✓[/] {len(deployed)} SOPs deployed to {api_url}")
    serving = _serving(lib.root)
    if serving is not None:  # its timers, API and executors still hold the library it loaded: it reloads
        try:
            os.kill(serving, signal.SIGHUP)
        except OSError as exc:  # another account's process, or gone meanwhile
            err_console.print(f"[yellow]warning:[/] could not tell `sop serve` (pid {serving}) to reload: "
                              f"{exc.strerror}; run `kill -HUP {serving}` as its user", soft_wrap=True)
            return
        console.print(f"[green]✓[/] `sop serve` (pid {serving}) told to reload sops/ and config/ (its output says "
                      "when it has, or why not)")


def _served_library() -> Any:
    """The library a `sop serve` handed down to this child (the one its other parts run), else sops/ and config/."""
    from flows.runtime.handed import NotHandedDown, handed_down

    try:
        return handed_down() or library()
    except NotHandedDown as exc:
        fail(str(exc))


def _say(role: str) -> Any:
    """What a service process says, one line on stderr after its name (``pager: reloaded …``)."""
    from rich.markup import escape

    return lambda message: err_console.print(f"[dim]{role}:[/] {escape(message)}", soft_wrap=True, highlight=False)


@app.command()
def executor(
    slots: Annotated[int | None, typer.Option(min=1, max=256, help="flow runs at once (default: settings.prefect.concurrency)")] = None,
    poll: Annotated[float, typer.Option(min=0.05, max=60, help="seconds between looks at the queue when no doorbell rings")] = 1.0,
    name: Annotated[str | None, typer.Option(help="name in the ledger and the Prefect UI (default: executor-<host>:<pid>)")] = None,
) -> None:
    """Run the SOPs' flow runs in this process: automated steps start at once, no process per run.

    Any number may run (each takes a flow run once). SIGTERM or Ctrl-C: take no more, let the runs in hand
    finish or suspend (at most 30 s), then stop. SIGHUP: read sops/ and config/ again for the flow runs taken from
    then on (when they do not validate, go on with those loaded before, saying why).
    """
    from flows import runtime
    from flows.prefect.executor import Executor
    from flows.prefect.names import pool_name
    from flows.runtime.reload import Signals, reload_into

    signals = Signals()  # first: a SIGHUP while it starts is a reload once it runs, not its end
    lib = _served_library()
    api_url, auth = _prefect(lib)
    if auth:
        os.environ["PREFECT_API_AUTH_STRING"] = auth
    engine = runtime.engine(library=lib, prefect=False)
    engine.ledger.keep_checkpoints()  # a service: its last writes in a checkpoint soon, and when it stops
    worker = Executor(lib, engine.ledger, api_url, pool_name(lib), slots=slots or lib.site.settings.prefect.concurrency,
                      poll=poll, auth_string=auth, name=name)
    say = _say("executor")

    def reload() -> None:  # between two looks at the queue: the flow runs in hand go on
        if signals.hangup.take():
            reload_into(lib.root, worker.use_library, say)

    stop = signals.terminated
    say(f"{worker.name} running flow runs of pool {worker.pool} ({worker.slots} at once)")
    try:
        worker.run(stop, between=reload)
    except KeyboardInterrupt:
        stop.set()  # Ctrl-C ends the loop at once: no drain
    except Exception as exc:
        if not _refused_us(exc):
            raise
        _unreachable(api_url, exc)  # a wrong auth string: one line, not the client's traceback
    finally:
        engine.pager.close()
    left = worker.in_flight()
    _stopped("executor", worker.name, stop, f"{worker.started} flow run(s) run; {worker.put_back} put back in their "
             f"queue before a step's next attempt; {len(left)} still running, left to a nudger's rescue")
    if left or worker.put_back:
        # threads still hold flow runs (an attempt that did not end, or one held back at the stop): go now. A normal
        # exit waits on their threads, then fails them (the interpreter's shutdown refuses their tasks), and a failed
        # flow run costs its run one of its few replacements.
        import logging

        logging.shutdown()
        os._exit(0)


def _closed(old: Any, new: Any) -> None:
    """A reloaded service's engine hands over (:func:`flows.engine.build.retire`): the pages the old one has in
    flight are delivered, then its ledger closed unless the new one runs on it."""
    from flows.engine.build import retire

    retire(old, new.ledger)


@app.command()
def nudger(
    sweep_every: Annotated[float, typer.Option(min=0.5, max=3600, help="seconds between looks for lost flow runs")] = 30.0,
    rescue_grace: Annotated[float, typer.Option(min=1, max=3600, help="seconds a flow run may be Pending or Running "
                                                "with no executor behind it before it is queued again")] = 15.0,
) -> None:
    """Keep every open run's flow run alive: resume flagged runs, create missing flow runs, replace crashed
    ones, requeue those a dead executor left. Any number may run. SIGHUP: read sops/ and config/ again."""
    from flows import runtime
    from flows.engine.outbox import process_name
    from flows.prefect.nudger import Nudger
    from flows.runtime.reload import Signals, serve_reloading

    signals = Signals()
    lib = library()
    engine = runtime.engine(library=lib)
    engine.ledger.keep_checkpoints()  # a service: its last writes in a checkpoint soon, and when it stops
    err_console.print(f"[dim]nudger:[/] sweeping every {sweep_every:g}s")
    try:
        engine = serve_reloading(
            signals, engine, lib.root, lambda new: runtime.engine(library=new, migrate=False),
            lambda part, stop: Nudger(part.launcher, sweep_every=sweep_every, grace=rescue_grace).run(stop),
            _closed, _say("nudger"))
    finally:
        engine.pager.close()
    _stopped("nudger", process_name(), signals, "resumes, launches and rescues left to the other nudgers or its restart")


@app.command()
def pager(
    poll: Annotated[float, typer.Option(help="seconds between looks at the outbox when its doorbell is quiet")] = 0.1,
) -> None:
    """Deliver queued notifications (the outbox) in a process of their own.

    `sop serve` starts one. Run one beside API processes started on their own
    (`uvicorn --factory flows.runtime.web:from_environment`): while a pager process is alive,
    the API and the timer service only queue their pages, and this process renders and
    delivers them. SIGTERM or Ctrl-C stops it after the pages in hand are delivered. SIGHUP reads
    sops/ and config/ again: the next pages go to the contacts config/ gives then.
    """
    from flows import runtime
    from flows.engine.outbox import Drainer
    from flows.ledger.url import shown
    from flows.runtime.reload import Signals, serve_reloading

    if poll <= 0:
        fail(f"--poll must be above zero, got {poll}")
    signals = Signals()  # looked at between two looks at the outbox (--poll apart at most)
    lib = _served_library()
    engine = runtime.engine(library=lib, prefect=False, background_pages=True, pager_process=True)
    drainer = Drainer(engine, poll=poll)
    err_console.print(f"[dim]pager:[/] {drainer.name} delivering the outbox of {shown(engine.ledger.url)}")

    def serve(part: Any, stop: Any) -> None:
        drainer.use(part)  # the heartbeat goes on across a reload: no moment without a pager
        drainer.serve(stop)

    try:
        engine = serve_reloading(
            signals, engine, lib.root,
            lambda new: runtime.engine(library=new, prefect=False, background_pages=True, pager_process=True,
                                       migrate=False),
            serve, _closed, _say("pager"))
    finally:
        drainer.hand_over()
        engine.pager.close()
    _stopped("pager", drainer.name, signals, f"{drainer.claimed} page(s) claimed since its start")


@app.command()
def timers(
    seconds: Annotated[float | None, typer.Option("--for", help="stop after this many seconds (default: until Ctrl-C)")] = None,
) -> None:
    """Run only the timer service (team mode: any number of them; each firing is fenced). SIGTERM or Ctrl-C
    stops it between two firings. SIGHUP reads sops/ and config/ again (the next escalation reaches the on-call
    config/ gives then)."""
    import threading

    from flows import runtime
    from flows.engine.timers import TimerService
    from flows.runtime.reload import Signals, serve_reloading

    signals = Signals()
    lib = library()
    service = TimerService(runtime.engine(library=lib))
    service.engine.ledger.keep_checkpoints()  # a service: its last writes in a checkpoint soon, and when it stops
    fired = 0
    if seconds is not None:
        ends = threading.Timer(seconds, signals.set)
        ends.daemon = True  # Ctrl-C before --for is over ends the process now, not when the timer would have
        ends.start()
    console.print(f"timer service {service.name} running")

    def swap(old: TimerService, new: TimerService) -> None:
        nonlocal fired
        fired += old.fired_count
        _closed(old.engine, new.engine)

    try:
        service = serve_reloading(
            signals, service, lib.root,
            lambda new: TimerService(runtime.engine(library=new, migrate=False), name=service.name),
            lambda part, stop: part.run(stop),  # type: ignore[arg-type]  # the signals wait like an Event
            swap, _say("timers"))
    finally:
        service.engine.pager.close()
    _stopped("timers", service.name, signals, f"fired {fired + service.fired_count} timer(s)")
