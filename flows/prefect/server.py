"""The embedded Prefect server: Prefect's own ``prefect server start``, its SQLite writers taking turns.

``python -m flows.prefect.server start --host … --port …`` takes the arguments of ``prefect server
start`` and runs it in this process (as Prefect does with one worker), after two changes that apply
only when its database is SQLite:

- **every write transaction begins IMMEDIATE.** Prefect begins them DEFERRED: a transaction reads,
  then asks for SQLite's write lock, and when another connection wrote in between, SQLite refuses at
  once (``SQLITE_BUSY_SNAPSHOT``; its busy timeout does not apply). Prefect answers that request 503,
  and its services log "database is locked". With IMMEDIATE the transaction waits for the lock (busy
  timeout) before it reads, so writers take turns instead of failing.
- **a 503 it still gives says ``Retry-After: 0.2``.** Prefect's client otherwise waits 2, 4, 8, 16 then
  32 s between tries: one refused state change inside a flow run left it idle for a minute.

Measured with ``python -m bench executor`` (docs/benchmarks.md, "Automated steps at once"): a storm of
120 runs at once on a quiet machine stalled for minutes with Prefect's DEFERRED writes.
Prefect is pinned (``>=3.8.8,<3.9``); both names changed here are checked at start, and a Prefect
whose names moved starts unchanged, with a warning, rather than not at all.
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from flows.prefect import urgency
from flows.prefect.turns import Turn

#: seconds a Prefect client waits before it tries a refused (503) request again
RETRY_AFTER = "0.2"

#: Prefect server services the stack does without, each a writer or an event consumer on the one SQLite file
#: and the one server process (an environment variable set by the operator wins):
#: - late_runs marks flow runs Scheduled for 15 s "Late" (a write per run, in a storm hundreds): the executor
#:   takes Scheduled runs either way, and the board and the audit say which steps are late;
#: - triggers evaluates Prefect automations on every event: the stack's escalations and pages are its own.
QUIET_SERVICES = {
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
}


#: seconds a write transaction waits for its turn in this process before it asks SQLite's lock directly
TURN_WAIT = 30.0
#: the write priority of a request that says none (:mod:`flows.prefect.urgency`): behind every one that does
UNHURRIED = 1_000
_priority: ContextVar[int] = ContextVar("sop_write_priority", default=UNHURRIED)
#: each event loop's write turn, gone with its loop (a Turn holds its loop only while a write waits)
_turns: weakref.WeakKeyDictionary[Any, Turn] = weakref.WeakKeyDictionary()


def _turn() -> Turn:
    """The write turn of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _turns:
        _turns[loop] = Turn()
    return _turns[loop]


def with_priorities(app: Any) -> Any:
    """An ASGI app that runs ``app`` with each request's write priority (its ``x-sop-priority`` header)."""

    async def prioritised(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        said = dict(scope.get("headers") or ()).get(urgency.HEADER.encode())
        token = _priority.set(int(said) if said and said.isdigit() else UNHURRIED)
        try:
            await app(scope, receive, send)
        finally:
            _priority.reset(token)

    return prioritised


def writers_take_turns() -> bool:
    """Begin every SQLite write transaction of this process's Prefect server IMMEDIATE; False when Prefect's
    names moved (nothing changed then)."""
    from prefect.server.database import configurations

    config = getattr(configurations, "AioSqliteConfiguration", None)
    mode = getattr(configurations, "SQLITE_BEGIN_MODE", None)
    if config is None or mode is None or not hasattr(config, "begin_transaction"):
        return False

    @asynccontextmanager
    async def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> AsyncIterator[Any]:
        token = mode.set("IMMEDIATE")
        turn = _turn()
        mine = await turn.acquire(_priority.get(), TURN_WAIT)
        try:
            async with session.begin() as transaction:
                yield transaction
        finally:
            mode.reset(token)
            if mine:
                turn.release()

    config.begin_transaction = begin_transaction
    return True


def requests_say_priority() -> bool:
    """Prefect's API reads each request's write priority (:func:`with_priorities`); False when its names moved."""
    from prefect.server.api import server

    create = getattr(server, "create_api_app", None)
    if create is None or getattr(create, "says_priority", False):
        return create is not None

    def create_api_app(*args: Any, **kwargs: Any) -> Any:
        app = create(*args, **kwargs)
        app.add_middleware(with_priorities)  # Starlette builds it as with_priorities(inner_app)
        return app

    create_api_app.says_priority = True  # type: ignore[attr-defined]
    server.create_api_app = create_api_app
    return True


def refusals_say_when() -> bool:
    """Prefect's 503 answers (a busy database) carry ``Retry-After``; False when Prefect's names moved."""
    from prefect.server.api import server

    handler = getattr(server, "custom_internal_exception_handler", None)
    if handler is None or getattr(handler, "says_when", False):
        return handler is not None

    async def custom_internal_exception_handler(request: Any, exc: Exception) -> Any:
        response = await handler(request, exc)
        if response.status_code == 503:
            response.headers["Retry-After"] = RETRY_AFTER
        return response

    custom_internal_exception_handler.says_when = True  # type: ignore[attr-defined]
    server.custom_internal_exception_handler = custom_internal_exception_handler
    return True


def tune() -> list[str]:
    """Apply both changes when the server's database is SQLite; returns what could not be applied."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    if url is not None and not url.get_secret_value().startswith("sqlite"):
        return []  # Prefect's default (None) is SQLite under PREFECT_HOME
    missed = []
    if not writers_take_turns():
        missed.append("IMMEDIATE write transactions")
    if not refusals_say_when():
        missed.append("Retry-After on 503")
    if not requests_say_priority():
        missed.append("write priorities")
    return missed


def command(host: str, port: int, *, as_shipped: bool = False) -> list[str]:
    """The argv that starts the embedded Prefect server on ``host:port`` (``as_shipped``: Prefect's own
    ``prefect server start``, without this module's changes; the benches compare both)."""
    program = ["prefect", "server"] if as_shipped else ["flows.prefect.server"]
    return [sys.executable, "-m", *program, "start", "--host", host, "--port", str(port)]


def main(argv: list[str] | None = None) -> None:
    """Run ``prefect server start`` with ``argv`` (default: this process's arguments), tuned."""
    args = list(sys.argv[1:] if argv is None else argv)
    for name, value in QUIET_SERVICES.items():  # before Prefect is imported: it reads its settings once
        os.environ.setdefault(name, value)
    for what in tune():
        print(f"prefect-server: Prefect's names moved; running without {what}", file=sys.stderr)
    from prefect.cli import app

    sys.argv = ["prefect", "server", *args]  # Prefect's CLI reads its arguments from there
    app()


if __name__ == "__main__":
    main()
