"""``sop audit history ID``: which texts of an SOP ran when, and what changed between them.

A *version* here is an exact text (its SHA-256, as pinned by every run), not the SOP's
``version:`` field — an edit that forgot to bump the field is still a new version, and
the field is shown beside it. Runs of the SOP, in chain order, fall into *periods* of
consecutive runs on the same text; each change of text gets a unified diff.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.audit.queries import pinned_texts, text_hash
from flows.audit.scope import NotFound
from flows.ledger import utc
from flows.ledger.schema import records


@dataclass
class Period:
    """Consecutive runs of the SOP on one text."""

    sop_hash: str
    version: str | None
    runs: int
    first_run: str
    first_started: datetime
    last_run: str
    last_started: datetime


@dataclass
class Change:
    """What changed from one text to the next (a unified diff, empty when the text is missing)."""

    from_hash: str
    to_hash: str
    from_version: str | None
    to_version: str | None
    diff: str


@dataclass
class SopHistory:
    sop_id: str
    periods: list[Period] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    texts_ok: dict[str, bool] = field(default_factory=dict)  # hash -> the pinned text still hashes to it
    current_hash: str | None = None  # the library's text now (None: not in the library)

    @property
    def versions(self) -> list[str]:
        """The distinct texts in order of first use."""
        return list(dict.fromkeys(p.sop_hash for p in self.periods))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["versions"] = self.versions
        data["current_ran"] = self.current_hash in self.versions if self.current_hash else None
        return data


def _label(sop_id: str, version: str | None, digest: str) -> str:
    return f"{sop_id} v{version or '?'} ({digest[:12]})"


def sop_history(conn: Connection, sop_id: str, current_hash: str | None = None) -> SopHistory:
    """The history of ``sop_id`` from its runs' ``run_started`` records; NotFound when it never ran."""
    out = SopHistory(sop_id=sop_id, current_hash=current_hash)
    seen_sops: set[str] = set()
    query = sa.select(records.c.run_id, records.c.at, records.c.data).where(records.c.kind == "run_started")
    for run_id, at, raw in conn.execute(query.order_by(records.c.seq)):
        data = json.loads(raw)
        seen_sops.add(str(data.get("sop")))
        if data.get("sop") != sop_id:
            continue
        digest, version, started = str(data.get("sop_hash")), data.get("version"), utc(at)
        last = out.periods[-1] if out.periods else None
        if last is not None and last.sop_hash == digest:
            last.runs, last.last_run, last.last_started = last.runs + 1, run_id, started  # type: ignore[assignment]
        else:
            out.periods.append(Period(digest, None if version is None else str(version), 1, run_id, started,  # type: ignore[arg-type]
                                      run_id, started))  # type: ignore[arg-type]
    if not out.periods:
        ran = ", ".join(sorted(seen_sops)) or "none yet"
        raise NotFound(f"no run of SOP `{sop_id}` in the ledger", f"SOPs that ran: {ran}")
    texts = pinned_texts(conn, out.versions)
    out.texts_ok = {d: d in texts and text_hash(texts[d]) == d for d in out.versions}
    done: set[tuple[str, str]] = set()
    for before, after in zip(out.periods, out.periods[1:], strict=False):
        pair = (before.sop_hash, after.sop_hash)
        if pair in done:
            continue
        done.add(pair)
        old, new = texts.get(before.sop_hash), texts.get(after.sop_hash)
        diff = "" if old is None or new is None else "".join(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            fromfile=_label(sop_id, before.version, before.sop_hash), tofile=_label(sop_id, after.version, after.sop_hash)))
        out.changes.append(Change(before.sop_hash, after.sop_hash, before.version, after.version, diff))
    return out


__all__ = ["Change", "Period", "SopHistory", "sop_history"]
