"""Step kinds, one module each, registered in one table: :data:`KINDS`.

A kind's module holds its model, how it activates (``human`` is assigned, ``wait`` arms a
timer, ``check`` is evaluated the moment its inputs are known; the automated kinds
``http``, ``command`` and ``notify`` become ready and run as Prefect tasks through their
``execute``), its templates, the notify targets it names and its line in `sop show`.
The SOP model's ``Step`` union, the loader, the cross-checks, the engine, the compiler,
the flow run and the CLI all read the table; a new kind is a module and a line here.
"""

from __future__ import annotations

from flows.language.steps import check, command, http, human, notify, wait
from flows.language.steps.base import Activation, StepBase, StepContext, StepFailed, StepKind

#: every step kind by name, in the order the SOP schema lists them
KINDS: dict[str, StepKind] = {kind.name: kind for kind in (
    human.KIND,
    http.KIND,
    command.KIND,
    notify.KIND,
    wait.KIND,
    check.KIND,
)}

__all__ = ["KINDS", "Activation", "StepBase", "StepContext", "StepFailed", "StepKind"]
