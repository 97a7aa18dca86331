"""How a value reads to a person, wherever it is shown: a step's page, a notification, a notify step's message.

People read these on phones at 3 a.m.: a boolean is yes / no (``True`` is Python's word), nothing is —,
a list (a multi-choice answer, an alert's list of hosts) is its items joined, a mapping (an alert's labels)
is ``key: value`` pairs. The pages' ``shown`` filter and the message templates' ``finalize`` are both this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NOTHING = "—"


def shown(value: Any) -> str:
    """A value as a person reads it: yes / no, — for nothing (None, empty), lists joined, mappings as pairs."""
    if value is None or value == "":
        return NOTHING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {shown(item)}" for key, item in value.items()) or NOTHING
    if isinstance(value, list | tuple):
        return ", ".join(shown(item) for item in value) or NOTHING
    return str(value)


def finalized(value: Any) -> Any:
    """Jinja's ``finalize`` for text people read: each ``{{ … }}``'s value as :func:`shown`, except text, which
    stays as it is (``{{ "" if f.required else " (optional)" }}`` means nothing, not —). Only what is printed
    changes: ``{% if approved %}`` still tests the value itself."""
    return value if isinstance(value, str) else shown(value)
