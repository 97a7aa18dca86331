"""A request the server's stop cut: one line and a 503, not a traceback and a 500.

An API process told to stop (SIGTERM) waits for the requests in flight for at most its bound
(uvicorn's ``--timeout-graceful-shutdown``, docs/team.md; :data:`STOP_BOUND_S` in ``sop serve``),
then cancels what is left: a client that sent half a body and went quiet, a request waiting on a
locked ledger. Without this, each cancelled request reached the server as an exception (a
traceback in the log, a bare 500). The work a cancelled request handed to a thread may still
finish before the process ends, so the answer says it may have been recorded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.responses import JSONResponse

from flows.api.errors import Answering, ApiError
from flows.engine.links import without_link_secrets
from flows.logfmt import kv

log = logging.getLogger("sop.api")

#: seconds an API process lets the requests in flight finish once told to stop (the units' and the page's
#: ``--timeout-graceful-shutdown``; ``sop serve``'s API thread)
STOP_BOUND_S = 10

CUT = ApiError(503, "this API process stopped before it answered (its requests' bound at a stop passed): what you "
               "sent may or may not have been recorded; look (GET /v1/runs) before sending it again")


class CutAtStop(Answering):
    """Outermost middleware: a request cancelled by the server's stop is answered 503 (when nothing was sent yet)
    and said in one line."""

    async def caught(self, exc: BaseException, started: bool, scope: Any, receive: Any, send: Any) -> None:
        if not isinstance(exc, asyncio.CancelledError):
            raise exc
        # only the server cancels a whole request (uvicorn's graceful-shutdown bound): the task ends here
        log.warning(kv("event=request_cut_by_stop", method=scope.get("method"),
                       path=without_link_secrets(scope.get("path", "")), answered=started))
        if not started:
            await JSONResponse(CUT.body(), status_code=CUT.status, headers={"Connection": "close"})(
                scope, receive, send)
