"""Structured log lines: ``event key=value key="a value"``, one line per event.

A value is whatever a caller sent (a path, an SOP id, a label, an error text), so it is
escaped: a newline in it must never start a line of its own that reads like one of ours.
"""

from __future__ import annotations

import re
from typing import Any

#: characters written as escapes inside a quoted value: the quote and backslash, control characters
#: (C0, DEL, C1) and the separators some log readers break lines on (U+2028, U+2029)
_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029",
    ord("\\"): "\\\\", ord('"'): '\\"',
}
#: a value with any of these (a space, a quote, ``=``, a backslash, an escaped character) is quoted
_QUOTED = re.compile("[ \"=\\\\" + "".join(re.escape(chr(c)) for c in _ESCAPES) + "]")


#: the most of one value a line keeps (a sender's 900 KB fingerprint must not become a 900 KB log line)
MAX_VALUE_CHARS = 1000


def value(raw: Any) -> str:
    """One value as it appears after ``key=``: bare when plain, else quoted with its specials escaped; at most
    :data:`MAX_VALUE_CHARS` characters of it, and how many more there were."""
    text = f"{raw:.1f}" if isinstance(raw, float) else str(raw)
    if len(text) > MAX_VALUE_CHARS:
        text = f"{text[:MAX_VALUE_CHARS]}…(+{len(text) - MAX_VALUE_CHARS} chars)"
    if text and not _QUOTED.search(text):
        return text
    return '"' + text.translate(_ESCAPES) + '"'


def kv(event: str, **fields: Any) -> str:
    """``kv("notification failed", recipient="li-wei", error="timed out")`` → ``notification failed recipient=li-wei error="timed out"``.

    None values are left out; values with spaces, quotes, ``=`` or control characters are quoted, and a
    newline in a value is written ``\\n``: one event is one line, whatever the values hold, and a short one.
    """
    return " ".join([event, *(f"{key}={value(v)}" for key, v in fields.items() if v is not None)])


#: one ``key=value`` of a line: a value quoted as :func:`value` quotes it (or as ``%r`` does), else bare up to the
#: next ``key=`` (a line written with ``%s`` leaves an error's spaces unquoted)
_PAIR = re.compile(r"""(\w+)=("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\S+(?:\s+(?!\w+=)\S+)*)""")


def fields(line: str) -> dict[str, str]:
    """The ``key=value`` pairs of one of our log lines (``event=cancel_failed run=3f9a error="timed out"`` →
    ``{"event": "cancel_failed", "run": "3f9a", "error": "timed out"}``): what a terminal tells of it in words
    reads them here rather than re-parsing the line its own way. A quoted value loses its quotes, not its escapes."""
    found: dict[str, str] = {}
    for key, raw in _PAIR.findall(line):
        quoted = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'"
        found.setdefault(key, raw[1:-1].replace('\\"', '"') if quoted else raw)
    return found
