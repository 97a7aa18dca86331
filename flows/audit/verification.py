"""What ``sop audit verify`` finds, and what a person notes down from it.

A :class:`Verification` says whether the chain is intact, names each :class:`Break` (where, what was
done, in words) and every later record that does not match its own hash, and gives the head to note
down (:func:`head_of`). :mod:`flows.audit.verify` walks the chains to fill it in.

What chains alone cannot show: records cut off the end since the last checkpoint, or the
checkpoints' own tail rewritten. For those, note the last checkpoint (sequence and hash)
somewhere else after each audit and pass it back as an :class:`Anchor` (``--anchor SEQ:HASH``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.audit.scope import AuditError
from flows.audit.tail import Tail
from flows.ledger import CHECKPOINT_LANE, GENESIS
from flows.ledger.schema import records

#: the kinds of break that name a record still in the ledger (a deleted or cut one has no record to mark)
UNSOUND = ("edited", "inserted", "reordered", "rewritten")


@dataclass
class Break:
    """Where the chain breaks: the record's number (``seq``, as ``sop audit show`` numbers records; None for a
    record that is gone), what was done, in words; in a lane, also the record's ``place`` in it."""

    seq: int | None
    kind: str  # edited | deleted | inserted | reordered | truncated | rewritten
    message: str
    lane: int | None = None  # None: the records written before lanes (or the anchors)
    place: int | None = None  # its place in its lane (None: before lanes, where the place is the seq)

    @property
    def where(self) -> str:
        """``record 123``, or for a record that is gone ``lane 1, place 92``."""
        return f"record {self.seq}" if self.seq is not None else f"lane {self.lane}, place {self.place}"


@dataclass
class Anchor:
    """A head noted after an earlier audit: record ``seq`` had hash ``hash``."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        seq, _, digest = text.partition(":")
        if not seq.strip().isdigit() or len(digest.strip()) != 64:
            raise AuditError(f"anchor `{text}` is not SEQ:HASH", "copy it from an earlier `sop audit verify` (e.g. 1042:9f2c…)")
        return cls(int(seq), digest.strip().lower())


@dataclass
class Verification:
    """The result of one verification; ``ok`` only when nothing at all is wrong."""

    records: int
    head_seq: int
    head_hash: str
    breaks: list[Break] = field(default_factory=list)
    suspects: list[int] = field(default_factory=list)  # other records whose fields do not match their hash
    texts_checked: int = 0
    bad_texts: list[str] = field(default_factory=list)
    missing_texts: list[str] = field(default_factory=list)
    tail: Tail = field(default_factory=Tail)  # the records past the head: in no checkpoint yet

    @property
    def anchors(self) -> list[str]:
        """What to note down (``SEQ:HASH``, for ``--anchor``): the head, and the newest record of each lane with records
        past it, which an anchor on the head alone does not cover (:mod:`flows.audit.tail`)."""
        return [f"{seq}:{digest}" for seq, digest in [(self.head_seq, self.head_hash), *self.tail.newest]]

    @property
    def unsound(self) -> dict[int, str]:
        """The records still there that do not check out, by number, each with what was done to it (a later record
        that does not match its own hash: edited): what a run's story marks where it shows them."""
        found = {b.seq: b.kind for b in self.breaks if b.seq is not None and b.kind in UNSOUND}
        return {**{seq: "edited" for seq in self.suspects}, **found}

    @property
    def ok(self) -> bool:
        return not self.breaks and not self.suspects and not self.bad_texts and not self.missing_texts

    @property
    def first_break(self) -> Break | None:
        return self.breaks[0] if self.breaks else None

    def summary(self) -> dict[str, Any]:
        """What a JSON export says of the chain it was read from: intact or not, how many records, the head to note
        down as an anchor, the first break (``sop audit show --json``, the desk's download of a run)."""
        return {key: value for key, value in self.to_dict().items()
                if key in ("ok", "records", "head", "past_head", "anchors", "first_break")}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head": {"seq": self.head_seq, "hash": self.head_hash},
                "past_head": self.tail.records, "anchors": self.anchors,
                "first_break": asdict(self.first_break) if self.first_break else None,
                "breaks": [asdict(b) for b in self.breaks], "suspects": self.suspects,
                "sop_texts": {"checked": self.texts_checked, "edited": self.bad_texts, "missing": self.missing_texts}}


def head_of(conn: Connection) -> tuple[int, str, int]:
    """What to note down as the anchor: the newest checkpoint (else the newest record written before lanes;
    else the newest record), seq and hash (0 and the genesis when empty), and how many records there are."""
    head = (conn.execute(sa.select(records.c.seq, records.c.hash).where(records.c.chain == CHECKPOINT_LANE)
                         .order_by(records.c.pos.desc()).limit(1)).first()
            or conn.execute(sa.select(records.c.seq, records.c.hash).where(records.c.chain.is_(None))
                            .order_by(records.c.seq.desc()).limit(1)).first()
            or conn.execute(sa.select(records.c.seq, records.c.hash).order_by(records.c.seq.desc()).limit(1)).first())
    count = conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one()
    return (head[0], head[1], count) if head else (0, GENESIS, count)
