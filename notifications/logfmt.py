"""Structured log lines: ``event key=value key="a value"``, one line per event."""

from __future__ import annotations

from typing import Any


def kv(event: str, **fields: Any) -> str:
    """``kv("notification failed", recipient="li-wei", error="timed out")`` → ``notification failed recipient=li-wei error="timed out"``.

    None values are left out; values with spaces, quotes or ``=`` are quoted; newlines are flattened.
    """
    parts = [event]
    for key, value in fields.items():
        if value is None:
            continue
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        text = " ".join(text.split()) if ("\n" in text or "\r" in text) else text
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)
