"""Flow runs for new runs, created off the request path.

A trigger's answer must not wait on Prefect (creating a flow run is a round trip to the
server, and the server may be slow or away). The run is already in the ledger and its
owner already paged when the request returns; this queue then asks the launcher for the
flow run. A launch that fails is left to ``sop serve``'s nudger (``Launcher.launch_orphans``: backoff,
then the owner paged).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from flows.logfmt import kv

log = logging.getLogger("sop.api")


class LaunchQueue:
    """One thread creating flow runs in arrival order."""

    def __init__(self, engine: Any):
        self.engine = engine
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="api-launches", daemon=True)
        self._thread.start()

    def submit(self, run_id: str) -> None:
        """Ask for the run's flow run (returns at once)."""
        self._queue.put(run_id)

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while (run_id := self._queue.get()) is not None:
            try:
                if self.engine.view(run_id).is_open:
                    self.engine.launcher.launch(run_id)
            except Exception as exc:  # the nudger retries orphans (with backoff); one failure must not stop the queue
                log.warning(kv("event=launch_failed", run=run_id, error=" ".join(str(exc).split())[:300],
                               then="sop serve retries it"))
