"""The API as its own process (team mode): ``uvicorn --factory flows.runtime.web:from_environment``.

Any number of these may run on one database (dedup is the database's); ``sop serve`` runs
the same app in a thread of its own instead (``flows.runtime.serve``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

from fastapi import FastAPI

from flows import runtime
from flows.api.app import close, create_app
from flows.api.auth import SecretsRefused
from flows.engine.links import without_link_secrets
from flows.language.loader import SpecInvalid
from flows.ledger.url import LedgerUnavailable


class LinkSecrets(logging.Filter):
    """Log lines without the secret part of a step or sign-in link (``/s/eyJw…`` → ``/s/…``): whoever reads the log
    (journald, a log shipper) could otherwise open the link and act as its person until it is used or expires.
    On uvicorn's access log and on our own lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = without_link_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(without_link_secrets(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def _log_setup() -> None:
    """The access log's link secrets hidden; our own ``sop.*`` lines (a token inactive, a delivery failed) on stderr
    at uvicorn's ``--log-level``, as the other ``sop`` processes write them: uvicorn sets up only its own loggers, so
    they were lost."""
    logging.getLogger("uvicorn.access").addFilter(LinkSecrets())
    ours = logging.getLogger("sop")
    if not ours.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(LinkSecrets())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        ours.addHandler(handler)
        # uvicorn's --log-level (info by default) for ours too: `--log-level warning` keeps a line per alert out
        ours.setLevel(logging.getLogger("uvicorn.error").getEffectiveLevel())


def _stop(lines: list[str]) -> NoReturn:
    """What stops the process, one line each on stderr, instead of uvicorn's traceback of it."""
    for line in lines:
        print(f"error: {line}", file=sys.stderr, flush=True)
    raise SystemExit(1)


#: what an API process says at SIGHUP (written as is: a handler that logs could wait on a lock its own thread holds)
NO_RELOAD = (b"api: SIGHUP ignored: an API process does not reload sops/ and config/; restart it to load them "
             b"(one at a time behind the balancer: systemctl restart sop-api@PORT)\n")


def _no_reload(signum: int, frame: object) -> None:
    """SIGHUP changes nothing but a line saying so. By Python's default it ended the process at once, without its
    shutdown (requests in flight cut, queued launches lost), and systemd, for which SIGHUP is a clean end, left it
    down: a ``kill -HUP`` meant as the other processes' reload took an API away."""
    os.write(2, NO_RELOAD)


def from_environment() -> FastAPI:
    """The app for this project (``$SOP_HOME``), for ``uvicorn --factory flows.runtime.web:from_environment``.

    ``SOP_API_LAUNCH=0`` runs without Prefect (runs are recorded and paged; no flow runs). An unusable ledger URL,
    ``sops/`` or ``config/`` that do not validate, or a token secret refused stop it with one line each.
    """
    _log_setup()
    if threading.current_thread() is threading.main_thread():  # uvicorn loads the app in its main thread
        signal.signal(signal.SIGHUP, _no_reload)
    try:
        engine = runtime.engine(prefect=os.environ.get("SOP_API_LAUNCH", "1") != "0", background_pages=True)
        app = create_app(engine)
    except LedgerUnavailable as exc:
        _stop([str(exc)])
    except SpecInvalid as exc:
        _stop([*(str(error) for error in exc.errors),
               f"{len(exc.errors)} error(s) in sops/ or config/: fix them, then run `sop validate`"])
    except SecretsRefused as exc:
        _stop([str(exc)])

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        close(app)  # queued launches first, then the pages and deliveries still in flight
        if engine.pager is not None:
            engine.pager.close()

    app.router.lifespan_context = lifespan
    return app
