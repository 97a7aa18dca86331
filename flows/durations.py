"""Durations as SOP authors write them: ``30s 15m 2h 48h 1d 1h30m 1w`` and ISO 8601 (``PT2H``)."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SHORT = re.compile(r"^(?:(\d+(?:\.\d+)?)w)?(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
_ISO = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
DURATION_PATTERN = r"^(\d+(\.\d+)?[wdhms])+$|^P(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
DURATION_HINT = "a duration such as 30s, 15m, 2h, 48h, 1d, 1h30m or ISO 8601 PT2H"


def parse_duration(value: object) -> timedelta:
    """Parse a duration; raise ValueError with a hint when it is not one.

    Bare numbers are refused on purpose: ``due: 2`` is ambiguous (hours? minutes?).
    """
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
    text = value.strip()
    match = _SHORT.match(text) or _ISO.match(text.upper())
    if not match or not any(match.groups()):
        raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
    seconds = sum(float(g) * s for g, s in zip(match.groups(), _UNITS.values(), strict=True) if g)
    if seconds <= 0:
        raise ValueError(f"a duration must be longer than zero, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Render a timedelta the way SOP authors write it (``1h30m``); negative gets a ``-``."""
    total = int(round(delta.total_seconds()))
    sign = "-" if total < 0 else ""
    total = abs(total)
    if total == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return sign + "".join(parts)
