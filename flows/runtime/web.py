"""The API as its own process (team mode): ``uvicorn --factory flows.runtime.web:from_environment``.

Any number of these may run on one database (dedup is the database's); ``sop serve`` runs
the same app in a thread of its own instead (``flows.runtime.serve``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from flows import runtime
from flows.api.app import close, create_app
from flows.ledger.url import LedgerUnavailable


def from_environment() -> FastAPI:
    """The app for this project (``$SOP_HOME``), for ``uvicorn --factory flows.runtime.web:from_environment``.

    ``SOP_API_LAUNCH=0`` runs without Prefect (runs are recorded and paged; no flow runs).
    """
    try:
        engine = runtime.engine(prefect=os.environ.get("SOP_API_LAUNCH", "1") != "0", background_pages=True)
    except LedgerUnavailable as exc:  # uvicorn would print a traceback: one line, and stop
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    app = create_app(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        close(app)  # queued launches first, then the pages and deliveries still in flight
        if engine.pager is not None:
            engine.pager.close()

    app.router.lifespan_context = lifespan
    return app
