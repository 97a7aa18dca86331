"""Step kinds, one module each, registered in one table.

Automated kinds (``http``, ``command``, ``notify``) run as Prefect tasks through
:data:`AUTOMATED`; ``human`` waits for a report, ``wait`` for a timer, and ``check`` is
evaluated by the engine the moment its inputs are known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.language.steps import command, http, notify
from flows.language.steps.base import StepContext, StepFailed

#: kind → function(step, context) -> outputs (dict); raises StepFailed
AUTOMATED: dict[str, Callable[[Any, StepContext], dict[str, Any]]] = {
    "http": http.execute,
    "command": command.execute,
    "notify": notify.execute,
}

__all__ = ["AUTOMATED", "StepContext", "StepFailed"]
