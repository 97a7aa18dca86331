"""The refusal stage: a signal an SOP's trigger matched but could not start is recorded, and its owner paged.

A trigger whose inputs cannot be rendered from the signal (the alert lacks a label they read) or do not fit the
SOP (:class:`~flows.engine.inputs.InputRefused`) starts no run. The sender is answered 200 with ``refused`` (an
error would only make Alertmanager resend what can never start), so without this stage nobody would hear of it.
Here each such signal is:

- recorded as ``trigger_refused`` (no run): the SOP, trigger, source, subject, problems, copies, the signal's
  labels (bounded), whether its owner was paged and how many of the same refusal this hour (``count``); the actor
  is the token's principal, as for a start. Written in the intake's transaction (the intake thread's batch);
- paged to the SOP's ``owner`` role (resolved through on-call, as every page) once that transaction commits, at
  most once an hour (on the engine's clock) per SOP, trigger and problem: the ``refusals`` table fences it (its
  key, in the database, so two API processes page once) and counts the repeats, which are recorded, not paged.

What the board and ``sop status`` say (:func:`recent`) is read from ``refusals``; ``sop audit refused`` reads the
records. A resolved alert that cannot be rendered is logged only (its firing one was refused and paged already).
The page goes out from this process, not through the outbox (whose pages belong to a run): one lost with the
process is still in the ledger, on the board and in ``sop status``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from flows.ledger import Ledger, utc
from flows.ledger.schema import refusals
from flows.ledger.vocabulary import RecordKind
from flows.triggers.model import Disposition

log = logging.getLogger("sop.intake")

#: the same refusal (SOP, trigger, problem) pages its owner at most once in this much engine time
REPAGE_AFTER = timedelta(hours=1)
#: what the board and ``sop status`` look back over
RECENT = timedelta(hours=24)
#: a refusal record keeps at most this many of the signal's labels, each value at most this long
MOST_LABELS, LABEL_MAX = 40, 200
_RENDER = re.compile(r"cannot be rendered from the \w+: (?P<why>.+?)(?: \(its \w+: |: set it |$)")


def why(problems: list[str]) -> str:
    """The first problem in a few words, for a title and the board: ``the alert has no label `brand```."""
    if not problems:
        return "its inputs were refused"
    found = _RENDER.search(problems[0])
    text = found.group("why") if found else problems[0]
    return text if len(text) <= 120 else text[:119].rstrip() + "…"


def bounded(labels: Any) -> dict[str, str]:
    """The signal's labels as a record keeps them: at most :data:`MOST_LABELS`, each value cut to :data:`LABEL_MAX`."""
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v)[:LABEL_MAX] for k, v in sorted(labels.items())[:MOST_LABELS]}


@dataclass(frozen=True)
class Seen:
    """One refusal as the board and ``sop status`` show it: the SOP, why, how many in the window, the newest."""

    sop: str
    trigger: int
    why: str
    count: int
    last_at: datetime


class RefusalStage:
    """Records a refused signal and pages its SOP's owner (see the module docstring); ``engine``: the intake's."""

    def __init__(self, engine: Any):
        self.engine = engine

    def record(self, refused: Disposition, payload: dict[str, Any], actor: str) -> Disposition:
        """Write ``trigger_refused`` for ``refused`` (its SOP, trigger, problems) in the intake's transaction, and
        page the owner once it commits when this hour has not paged it yet; ``refused.paged`` says which."""
        ledger: Ledger = self.engine.ledger
        now = self.engine.clock.now()
        sop, trigger, problem = refused.sop or "", refused.trigger or 0, "; ".join(refused.problems)
        labels = bounded(payload.get("labels"))
        source = str(payload.get("source") or payload.get("kind") or "signal")
        # per run: it holds no run, inserts its record and changes only its refusals row, fenced by the row's key
        # (two API processes' upserts of one key take turns): in the intake thread's per-run batch, not beside it
        with ledger.transaction(per_run=True) as tx:
            paged_at, count = tx.conn.execute(_upsert(ledger, sop, trigger, problem, now, refused.copies)).one()
            refused.paged = utc(paged_at) == now
            tx.append(RecordKind.TRIGGER_REFUSED, actor=actor, at=now, sop=sop, trigger=trigger, source=source,
                      subject=refused.subject, fingerprint=payload.get("fingerprint"), problems=refused.problems,
                      labels=labels, paged=refused.paged, count=count,
                      **({"copies": refused.copies} if refused.copies > 1 else {}))
        if refused.paged:
            from flows.triggers.refusal_page import page_owner

            engine = self.engine
            ledger.after_commit(lambda: page_owner(engine, refused, why(refused.problems), source, labels, now))
        return refused


def _key(sop: str, trigger: int, problem: str) -> str:
    return hashlib.sha256(f"{sop}\n{trigger}\n{problem}".encode()).hexdigest()


def _upsert(ledger: Ledger, sop: str, trigger: int, problem: str, now: datetime, copies: int) -> Any:
    """One statement, fenced by the key: a refusal whose last page is an hour old (or none) pages now (``paged_at``
    = now, ``count`` = its copies); a repeat within the hour adds to ``count``. Returns (paged_at, count)."""
    insert = (sqlite_insert if ledger.is_sqlite else pg_insert)(refusals).values(
        key=_key(sop, trigger, problem), sop_id=sop, trigger=trigger, problem=problem[:4000], paged_at=now,
        last_at=now, count=copies)
    over = refusals.c.paged_at <= now - REPAGE_AFTER  # every SET reads the row as it was
    return insert.on_conflict_do_update(index_elements=[refusals.c.key], set_={
        "paged_at": sa.case((over, insert.excluded.paged_at), else_=refusals.c.paged_at),
        "count": sa.case((over, insert.excluded.count), else_=refusals.c.count + insert.excluded.count),
        "last_at": insert.excluded.last_at,
    }).returning(refusals.c.paged_at, refusals.c.count)


def recent(ledger: Ledger, now: datetime, within: timedelta = RECENT) -> list[Seen]:
    """The refusals of the last ``within`` (each SOP, trigger and problem once, newest first): the signals refused
    since its last page (``count``) when that page is in the window, else at least one."""
    with ledger.read() as conn:
        rows = conn.execute(sa.select(refusals).where(refusals.c.last_at > now - within)
                            .order_by(refusals.c.last_at.desc())).all()
    return [Seen(sop=r.sop_id, trigger=r.trigger, why=why(r.problem.split("; ")), last_at=utc(r.last_at),  # type: ignore[arg-type]
                 count=r.count) for r in rows]


def said(seen: list[Seen]) -> str:
    """``1 alert refused in the last 24 h: refund-rate — the alert has no label `brand```; ``""`` when none."""
    if not seen:
        return ""
    total = sum(s.count for s in seen)
    noun = "alert" if total == 1 else "alerts"
    return f"{total} {noun} refused in the last 24 h: " + "; ".join(
        f"{s.sop} — {s.why}" + (f" (×{s.count})" if s.count > 1 and len(seen) > 1 else "") for s in seen)

