"""CSV and JSON for audit rows, both ways: what is exported reads back to the same rows.

Times are ISO 8601 UTC; durations are SOP seconds; an empty CSV cell is "none". A text cell that a spreadsheet
would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return: a silence's reason
``=HYPERLINK(…)``, an alert's label) is written after a ``'`` (OWASP's advice for CSV injection), which a spreadsheet
shows as text and :func:`from_csv` takes off again.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, fields, is_dataclass
from datetime import datetime
from typing import Any, TypeVar

from flows.audit.model import parse_time

T = TypeVar("T")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"cannot export {type(value).__name__}")


def to_json(data: Any) -> str:
    """JSON with ISO times (dataclasses as objects)."""
    return json.dumps(data, indent=2, default=_default, ensure_ascii=False) + "\n"


#: what a spreadsheet reads as the start of a formula; a cell starting with one of these, or with ``'`` then one
#: (or ``''``), is written after one more ``'``
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_AFTER_QUOTE = (*_FORMULA, "'")


def _inert(text: str) -> str:
    """``text`` as a cell no spreadsheet runs: after a ``'`` when it starts a formula (or is a ``'`` before one). A
    lone ``-`` (nobody, nothing) is no formula: it stays as the terminal shows it, not ``'-``."""
    if text == "-":
        return text
    if text[:1] in _FORMULA or (text[:1] == "'" and text[1:2] in _AFTER_QUOTE):
        return "'" + text
    return text


def to_csv(rows: list[Any], columns: list[str]) -> str:
    """Dataclass rows as CSV with a header row (text cells made inert: :func:`_inert`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = []
        for name in columns:
            value = getattr(row, name)
            values.append("" if value is None else value.isoformat() if isinstance(value, datetime) else
                          str(value).lower() if isinstance(value, bool) else _inert(value) if isinstance(value, str)
                          else value)
        writer.writerow(values)
    return out.getvalue()


def _cell(text: str, annotation: str) -> Any:
    optional = "None" in annotation
    if text == "" and optional:
        return None
    if annotation.startswith("datetime"):
        return parse_time(text)
    if annotation.startswith("int"):
        return int(text)
    if annotation.startswith("float"):
        return float(text)
    if annotation.startswith("bool"):
        return text == "true"
    return text[1:] if text[:1] == "'" and text[1:2] in _AFTER_QUOTE else text  # :func:`_inert` undone


def from_csv(text: str, cls: type[T]) -> list[T]:
    """Rows of ``cls`` (a dataclass) from CSV written by :func:`to_csv`, types restored."""
    types = {f.name: str(f.type) for f in fields(cls)}  # type: ignore[arg-type]
    reader = csv.DictReader(io.StringIO(text))
    unknown = set(reader.fieldnames or []) - set(types)
    if unknown:
        raise ValueError(f"unexpected column(s) {', '.join(sorted(unknown))} for {cls.__name__}")
    return [cls(**{name: _cell(value, types[name]) for name, value in row.items()}) for row in reader]


def from_json_rows(text: str, cls: type[T]) -> list[T]:
    """Rows of ``cls`` from a JSON list written by :func:`to_json`, times restored."""
    types = {f.name: str(f.type) for f in fields(cls)}  # type: ignore[arg-type]
    return [cls(**{k: parse_time(v) if types[k].startswith("datetime") else v for k, v in item.items()})
            for item in json.loads(text)]
