"""Durations as SOP authors write them: ``30s 15m 2h 48h 1d 1h30m 1w`` and ISO 8601 (``PT2H``)."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"  # ASCII digits: JSON Schema's \d is ASCII, Python's is not


def _parts(units: str, iso: bool = False) -> str:
    return "".join(rf"(?:{_NUMBER}[{u.upper()}{u}])?" if iso else rf"(?:{_NUMBER}{u})?" for u in units)


_SHORT = _parts("wdhms")
_ISO = rf"[Pp]{_parts('wd', iso=True)}(?:[Tt](?=[0-9]){_parts('hms', iso=True)})?"  # any case; T then a time part
_FORM = re.compile(rf"\s*(?:{_SHORT}|{_ISO})\s*")
#: what :func:`parse_duration` accepts, as a JSON Schema pattern (the lookahead: longer than zero);
#: only magnitudes are beyond it: under a microsecond, or past timedelta's 999999999 days
DURATION_PATTERN = rf"^(?=\s*\S*[1-9])\s*(?:{_SHORT}|{_ISO})\s*$"
DURATION_HINT = "a duration such as 30s, 15m, 2h, 48h, 1d, 1h30m or ISO 8601 PT2H"

#: the longest duration an SOP may state (a due, a deadline, a wait, a ladder offset): a year and a day
MAX_DURATION = timedelta(days=366)
#: the range of a run's time compression (``--speed``, the API's ``speed``, ``settings.speed``):
#: 0.001 plays an hour in 1000 hours, 100000 plays a day in under a second. With MAX_DURATION,
#: one duration is at most MAX_DURATION / SPEED_MIN (about 1,000 years) of real time: inside what a
#: datetime can hold. A ladder's levels add up, and business time stretches a duration: the instants
#: a run's clock gives are capped at flows.language.calendar.LATEST
SPEED_MIN = 0.001
SPEED_MAX = 100_000.0


def check_speed(speed: float) -> str | None:
    """What is wrong with a run's time compression, or None when it is within [SPEED_MIN, SPEED_MAX]."""
    if not isinstance(speed, (int, float)) or isinstance(speed, bool) or not SPEED_MIN <= speed <= SPEED_MAX:
        return f"speed must be a number from {SPEED_MIN:g} to {SPEED_MAX:g}, got {speed!r}"
    return None


def parse_duration(value: object, limit: timedelta | None = MAX_DURATION) -> timedelta:
    """Parse a duration; raise ValueError with a hint when it is not one.

    Bare numbers are refused on purpose: ``due: 2`` is ambiguous (hours? minutes?). Longer
    than ``limit`` is refused too (default MAX_DURATION: what an SOP or a setting may state);
    ``limit=None`` for a span that is no timer, such as an audit's ``--since 2w``.
    """
    if isinstance(value, timedelta):
        return value
    match = _FORM.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        short = _short_form(value) if isinstance(value, str) else None
        raise ValueError(f"expected {DURATION_HINT}, got {value!r}" + (f": write `{short}`" if short else ""))
    short, iso = match.groups()[:5], match.groups()[5:]
    parts = short if any(short) else iso
    if not any(parts):
        raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
    try:
        delta = timedelta(seconds=sum(float(g) * s for g, s in zip(parts, _UNITS.values(), strict=True) if g))
    except OverflowError:
        raise ValueError(f"a duration must be at most {_longest(limit)}, got {value!r}") from None
    if delta <= timedelta(0):
        raise ValueError(f"a duration must be longer than zero, got {value!r}")
    if limit is not None and delta > limit:
        raise ValueError(f"a duration must be at most {_longest(limit)}, got {value!r}")
    return delta


#: units as people spell them (``30 mins``, ``1 hour 30 minutes``, ``2 hrs``), for the hint of a refused duration
_SPELLED = {word: unit for unit, words in {"w": "w wk wks week weeks", "d": "d day days", "h": "h hr hrs hour hours",
                                           "m": "m min mins minute minutes", "s": "s sec secs second seconds"}.items()
            for word in words.split()}
_SPELLED_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)")


def _short_form(text: str) -> str | None:
    """``30m`` for ``30 mins``, ``1h30m`` for ``1 hour 30 minutes``: a duration in words as an SOP writes it; None
    when ``text`` is not one (an unknown word, or anything but spaces, commas and "and" between the parts)."""
    parts = _SPELLED_PART.findall(text)
    if not parts or any(word.lower() not in _SPELLED for _, word in parts):
        return None
    if re.sub(r"[\s,]|\band\b", "", _SPELLED_PART.sub("", text), flags=re.IGNORECASE):
        return None
    return "".join(number + _SPELLED[word.lower()] for number, word in parts)


def _longest(limit: timedelta | None) -> str:
    if limit is None:
        return "999999999 days"
    return format_duration(limit) + (" (a year and a day)" if limit == MAX_DURATION else "")


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


def format_duration_roughly(delta: timedelta) -> str:
    """A duration for a title on a lock screen (``4h``, ``3h20m``, ``1d3h``, ``18m``): at most two units, the
    smaller one rounded, seconds only under a minute. ``3h59m32s`` reads ``4h``; the exact time belongs in the
    body (:func:`format_duration`)."""
    total = abs(int(round(delta.total_seconds())))
    unit = 3600 if total >= 86400 else 60 if total >= 60 else 1
    rounded = int(total / unit + 0.5) * unit  # half up: 3h59m30s is 4h
    return ("-" if delta.total_seconds() < 0 and rounded else "") + format_duration(timedelta(seconds=rounded))
