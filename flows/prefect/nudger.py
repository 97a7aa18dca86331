"""``sop nudger``: the sweeps that keep every open run's flow run alive.

- resumes runs flagged for a resume whose flow run was still busy (``Launcher.retry_nudges``);
- creates the flow runs of runs that have none yet (their launch failed: ``launch_orphans``);
- every ``sweep_every`` seconds, replaces flow runs Prefect shows Crashed or Failed under an open run
  (``replace_dead``) and puts back in their queue the flow runs a dead executor left Pending or Running
  (:func:`flows.prefect.rescue.rescue`).

Any number may run at once (``sop serve`` runs one in its own process): launches carry an idempotency
key, replacements name the flow run they replace, rescues are fenced in the ledger.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from flows.ledger.outage import Outage
from flows.prefect.rescue import GRACE, rescue

log = logging.getLogger("sop.nudger")


class Nudger:
    """The sweeps of one launcher, every ``every`` seconds (the Prefect-state sweeps every ``sweep_every``;
    a flow run with no executor behind it is rescued once it has been so for ``grace`` seconds)."""

    def __init__(self, launcher: Any, *, every: float = 0.5, sweep_every: float = 30.0,
                 grace: float = GRACE.total_seconds()):
        self.launcher, self.every, self.sweep_every = launcher, every, sweep_every
        self.grace = timedelta(seconds=grace)

    def run(self, stop: Any) -> None:
        """Until ``stop`` (a ``threading.Event`` or the SIGTERM flag) is set; an error in one pass is logged and the
        next pass runs."""
        next_sweep = time.monotonic() + min(self.sweep_every, 5.0)  # a restart looks soon for what it left
        import httpx

        trouble = Outage(log, "nudger_error", self.every, also=(httpx.TransportError,))  # Prefect away too
        while not stop.is_set():
            try:
                self.launcher.retry_nudges()
                self.launcher.launch_orphans()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.sweep_every
                    self.sweep()
                trouble.ok()
            except Exception as exc:  # noqa: BLE001 - the next pass runs; Outage logs it as it deserves
                stop.wait(trouble.failed(exc))
                continue
            stop.wait(self.every)

    def sweep(self) -> int:
        """Replace dead flow runs and rescue stranded ones now; returns how many were acted on."""
        acted = self.launcher.replace_dead()
        with self.launcher._client() as client:
            acted += rescue(self.launcher.ledger, client, grace=self.grace)
        return acted
