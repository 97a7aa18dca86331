"""How urgent a thread's Prefect calls are: the priority of the work queue whose run they serve.

A Prefect client that :func:`tells_urgency` sends it with every request (``x-sop-priority``: 1 for a
complaint run, as its queue's priority); the embedded Prefect server gives the next write turn to the most
urgent request waiting (:mod:`flows.prefect.turns`). So in a storm a complaint run's writes (its creation,
Pending, Running, its step's task run) go before those of routine runs started earlier. A request that says
nothing waits behind every request that does; Prefect's own servers ignore the header.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

HEADER = "x-sop-priority"
_urgency: ContextVar[int | None] = ContextVar("sop_urgency", default=None)


@contextmanager
def urgent(priority: int | None) -> Iterator[None]:
    """Calls made in the block (and in threads started in copies of its context) say ``priority``."""
    token = _urgency.set(priority)
    try:
        yield
    finally:
        _urgency.reset(token)


def _say(request: Any) -> None:
    priority = _urgency.get()
    if priority is not None:
        request.headers[HEADER] = str(priority)


def tells_urgency(client: Any) -> bool:
    """Have a Prefect client (sync or async) send the urgency of the calling context; False when Prefect's names
    moved (it then says nothing)."""
    http = getattr(client, "_client", None)
    hooks = getattr(http, "event_hooks", None)
    if not isinstance(hooks, dict):
        return False
    if _say not in hooks.get("request", []):
        http.event_hooks = {**hooks, "request": [*hooks.get("request", []), _say]}
    return True
