"""The records past the head: written after the newest checkpoint, so no checkpoint (nor an anchor on it) covers them.

``sop audit verify`` names the newest checkpoint as the head to note down: it folds every lane's head, so an anchor on
it covers every record up to it. A process folds its writes into a checkpoint only at its next commit a few seconds
later (docs/audit.md, "The window"): the last writes of a process that stopped (a drill's end, the last sign-ins of
the day) stay in no checkpoint until another process writes one, and cut off meanwhile they leave no trace; an anchor
on the checkpoint still stands. An anchor on any record works too (``Anchor``): on the newest record of each lane
past the head, it covers those (a lane's chain links each record to the one before it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.ledger import CHECKPOINT_LANE
from flows.ledger.schema import records


@dataclass
class Tail:
    """How many records no checkpoint folds yet, and the newest record of each lane holding some (seq, hash)."""

    records: int = 0
    newest: list[tuple[int, str]] = field(default_factory=list)

    @property
    def words(self) -> str:
        """What they mean to whoever notes the head down (the terminal's line, the desk's, the HTML report's)."""
        newest = ", ".join(f"record {seq}" for seq, _ in self.newest)
        return (f"{self.records:,} record(s) were written after the head, in no checkpoint yet: cut off the end now, "
                f"they would leave no trace, and an anchor on the head alone would still stand. Noting the newest "
                f"({newest}) as well covers them.")


def tail_of(conn: Connection, head_seq: int) -> Tail:
    """The records in lanes past what the head (``head_seq``) covers: the newest checkpoint, what it folded; a ledger
    without one yet names its newest record before lanes (which covers no lane) or its newest record (its own lane
    up to it)."""
    head = conn.execute(sa.select(records.c.chain, records.c.pos, records.c.data)
                        .where(records.c.seq == head_seq)).first()
    if head is None:
        folded: dict[int, int] = {}
    elif head[0] == CHECKPOINT_LANE:
        folded = _folded(head[2])
    else:
        folded = {head[0]: head[1]} if head[0] is not None else {}
    tail = Tail()
    for lane, last in conn.execute(sa.select(records.c.chain, sa.func.max(records.c.pos))
                                   .where(records.c.chain > CHECKPOINT_LANE).group_by(records.c.chain)
                                   .order_by(records.c.chain)):
        if last is None or last <= folded.get(lane, 0):
            continue
        tail.records += last - folded.get(lane, 0)
        row = conn.execute(sa.select(records.c.seq, records.c.hash).where((records.c.chain == lane)
                                                                          & (records.c.pos == last))).first()
        if row is not None:
            tail.newest.append((row[0], row[1]))
    tail.newest.sort()
    return tail


def _folded(data: str | None) -> dict[int, int]:
    """Each lane's last place a checkpoint's data names (none: not a checkpoint, or one edited: its walk says so)."""
    try:
        return {int(lane): int(head[0]) for lane, head in json.loads(data or "{}").get("lanes", {}).items()}
    except (ValueError, TypeError, AttributeError, IndexError):
        return {}


__all__ = ["Tail", "tail_of"]
