"""Stopping on SIGTERM with a handler that takes no lock.

A Python signal handler runs in the main thread, between two bytecodes, wherever that
thread is. ``threading.Event.set`` takes the event's lock: if the main thread holds it at
that moment (inside ``Event.wait``, or inside an earlier handler that a second SIGTERM
interrupted), the handler waits for a lock its own thread holds, forever. A ``sop pager``
was found so, alive long after its ``sop serve`` was killed: three SIGTERMs (its parent's
death and the stack's stop), three handler frames, each waiting in ``Event.set``.

:func:`on_sigterm` installs a handler that only sets an attribute; the process's loop
looks at it (``is_set``) as it looks at its other reasons to stop.
"""

from __future__ import annotations

import signal
import time
from typing import Any


class Terminated:
    """Set by SIGTERM (attributes written, nothing else); reads like ``threading.Event.is_set``. ``at``: when
    (``time.monotonic()``), so that a process's stop is bounded from the signal, not from when its loop noticed."""

    def __init__(self) -> None:
        self.signalled = False
        self.at: float | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.set()

    def is_set(self) -> bool:
        return self.signalled

    def set(self) -> None:
        """Stop as SIGTERM would (a ``--for`` timer, a test)."""
        if self.at is None:
            self.at = time.monotonic()
        self.signalled = True

    def wait(self, seconds: float) -> bool:
        """Until set or ``seconds`` passed (looked at every 50 ms, taking no lock); True when set."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not self.signalled and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.signalled


class Hangup(Terminated):
    """Set by SIGHUP (an attribute written, nothing else): ``sop serve`` reloads its library when it takes it."""

    def take(self) -> bool:
        """Whether SIGHUP came since the last take."""
        came, self.signalled, self.at = self.signalled, False, None
        return came


def on_sighup() -> Hangup:
    """Install the lock-free SIGHUP handler (main thread only) and return what it sets."""
    hangup = Hangup()
    signal.signal(signal.SIGHUP, hangup)
    return hangup


def on_sigterm() -> Terminated:
    """Install the lock-free SIGTERM handler (main thread only) and return what it sets."""
    terminated = Terminated()
    signal.signal(signal.SIGTERM, terminated)
    return terminated


__all__ = ["Hangup", "Terminated", "on_sighup", "on_sigterm"]
