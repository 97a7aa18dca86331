"""SIGHUP in a split process (``sop pager``, ``sop timers``, ``sop nudger``, ``sop executor``): read ``sops/`` and
``config/`` again and go on with them, as ``sop serve`` does for its whole stack (``Stack.reload``).

When they validate, the process builds a new engine on them (people and contacts, roles and on-call, channels,
SOPs) and its part goes on with it: the pager renders the next page with the new contacts, the timer service
escalates to the new on-call. When they do not, or the new engine cannot be built, nothing changes: one line says
why, and the part goes on with what it had loaded. Environment variables are not read again (a contact's
``${VAR}`` keeps the value the process started with): a new secret needs a restart.

The pager, the timer service and the nudger leave their loop on SIGHUP (:class:`Signals`), between two looks, and
enter it again on the new engine (:func:`serve_reloading`); an executor swaps its library between two looks
without leaving its loop, so the flow runs in hand are not drained for a reload.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from flows.runtime.shutdown import Hangup, Terminated, on_sighup, on_sigterm

if TYPE_CHECKING:
    from flows.language.library import Library

Part = TypeVar("Part")


class Signals:
    """SIGTERM and SIGHUP (handlers that take no lock, :mod:`flows.runtime.shutdown`) as one stop: a loop given it
    leaves at either; :attr:`terminated` says which. Reads like ``threading.Event`` (``is_set``, ``wait``, ``set``)."""

    def __init__(self) -> None:
        self.terminated: Terminated = on_sigterm()
        self.hangup: Hangup = on_sighup()

    @property
    def at(self) -> float | None:
        """When SIGTERM came (``time.monotonic()``), for the stop line."""
        return self.terminated.at

    def is_set(self) -> bool:
        return self.terminated.is_set() or self.hangup.is_set()

    def set(self) -> None:
        """Stop as SIGTERM would (Ctrl-C, a ``--for`` timer)."""
        self.terminated.set()

    def wait(self, seconds: float) -> bool:
        """Until either signal or ``seconds`` passed (looked at every 50 ms); True when one came."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not self.is_set() and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.is_set()


def reread(root: Path, say: Callable[[str], None]) -> Library | None:
    """``sops/`` and ``config/`` read again and validated; None (and one line said) when they do not validate."""
    from flows.engine.build import runnable_library
    from flows.language.loader import SpecInvalid

    try:
        return runnable_library(root)
    except SpecInvalid as exc:
        first = str(exc.errors[0]).splitlines()[0] if exc.errors else str(exc)
        more = f" (and {len(exc.errors) - 1} more: `sop validate` lists them)" if len(exc.errors) > 1 else ""
        say(f"reload refused, going on with the sops/ and config/ loaded before: {first}{more}")
        return None
    except Exception as exc:  # noqa: BLE001 - a file caught mid-save, one we may not read: the old library goes on
        say(f"reload refused, going on with the sops/ and config/ loaded before: {type(exc).__name__}: {exc}")
        return None


def reload_into(root: Path, build: Callable[[Library], Part], say: Callable[[str], None]) -> Part | None:
    """Read ``sops/`` and ``config/`` again and build a part on them; None, with one line said, when they do not
    validate or the part cannot be built (the caller goes on with its own)."""
    library = reread(root, say)
    if library is None:
        return None
    try:
        part = build(library)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the part loaded before goes on
        say(f"reload failed, going on with the sops/ and config/ loaded before: {str(exc).splitlines()[0][:300]}")
        return None
    say(f"reloaded sops/ and config/ ({len(library.sops)} SOPs, {len(library.site.people)} people)")
    return part


def serve_reloading(signals: Signals, first: Part, root: Path, build: Callable[[Library], Part],
                    run: Callable[[Part, Signals], None], swap: Callable[[Part, Part], None],
                    say: Callable[[str], None]) -> Part:
    """Run ``first`` (``run(part, signals)`` returns at SIGTERM or SIGHUP) until SIGTERM or Ctrl-C; at each SIGHUP
    build a new part on ``sops/`` and ``config/`` read again (``build``), hand over to it (``swap(old, new)``: the
    old one's pages in flight delivered) and run it. Returns the part that ran last."""
    part = first
    try:
        while True:
            run(part, signals)
            if signals.terminated.is_set():
                return part
            signals.hangup.take()
            fresh = reload_into(root, build, say)
            if fresh is not None:
                swap(part, fresh)
                part = fresh
    except KeyboardInterrupt:
        signals.set()
        return part


__all__ = ["Signals", "reload_into", "reread", "serve_reloading"]
