"""Open runs hold their dedup key in the caseless form (``<sop>:lumi``), as starts now compare it.

Since 2026-12-08 keys that differ only in letter case, Unicode compatibility forms (NFKC) or whitespace are one key
(``flows.engine.dedup``): a director's "Lumi" by hand attaches to the alert's open run ``lumi``. A run open when
this release arrives held its key as written (``crisis-pr:Lumi``), which a start no longer looks up: each such key
is rewritten in the new form, so those runs keep taking their repeats. ``runs.dedup_key``, the run's subject as
people see it, is left as written.

Two open runs whose keys now fold to one (``Lumi`` and ``lumi``, opened apart before) both stay open: the older
keeps the key and takes the repeats from now on, the newer holds none (as a run of an SOP without ``dedup``); its
people finish or cancel it as before. This never fails the upgrade: every key is cleared before any is set.

A key shortened with a hash (over 300 characters) cannot be folded (the hash is of the text as written, which is not
kept): it is left as it was. Starts now hash the folded text, so unless the text was folded already (lower case,
single spaces) the next repeat of such a run does not meet it: it starts one new run, which takes the later repeats.

Revision ID: 0017_caseless_keys
Revises: 0016_drill_keys
Create Date: 2026-12-08
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata

import sqlalchemy as sa
from alembic import op

from flows.logfmt import kv

revision = "0017_caseless_keys"
down_revision = "0016_drill_keys"
branch_labels = None
depends_on = None

log = logging.getLogger("sop.ledger")

# flows.engine.dedup as it was when this was written (a migration keeps its own copy: the engine's may change)
DRILL = "drill|"
KEY_CHARS = 300
_SHORTENED = re.compile(r"…#[0-9a-f]{16}\Z")


def _comparable(key: str) -> str:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold())
    return " ".join(folded.split())


def _fitting(key: str) -> str:
    if len(key) <= KEY_CHARS:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{key[:KEY_CHARS - 18]}…#{digest}"


def folded(sop_id: str, held: str) -> str:
    """The open key ``held`` in the caseless form; unchanged when it is not ``[drill|]<sop>:<key>`` or the key was
    shortened with a hash."""
    drill = DRILL if held.startswith(DRILL) else ""
    head = f"{drill}{sop_id}:"
    if not held.startswith(head):
        return held
    key = held[len(head):]
    if len(key) == KEY_CHARS and _SHORTENED.search(key):
        return held
    return head + _fitting(_comparable(key))


def _open_runs(bind: sa.engine.Connection) -> list[tuple[str, str, str]]:
    """(id, sop id, open key) of every run holding a key, oldest first."""
    rows = bind.execute(sa.text("SELECT id, sop_id, open_key FROM runs WHERE open_key IS NOT NULL "
                                "ORDER BY started_at, id"))
    return [(run_id, sop_id, held) for run_id, sop_id, held in rows]


def _rewrite(bind: sa.engine.Connection, wanted: dict[str, str | None], held: dict[str, str]) -> None:
    """Give each run its ``wanted`` key: first every changing key cleared, then the new ones set, so no statement
    meets a key another run still holds (the unique index is checked row by row)."""
    changing = [run_id for run_id, key in wanted.items() if key != held[run_id]]
    for run_id in changing:
        bind.execute(sa.text("UPDATE runs SET open_key = NULL WHERE id = :id"), {"id": run_id})
    for run_id in changing:
        if wanted[run_id] is not None:
            bind.execute(sa.text("UPDATE runs SET open_key = :key WHERE id = :id"), {"key": wanted[run_id], "id": run_id})


def upgrade() -> None:
    bind = op.get_bind()
    found = _open_runs(bind)
    held = {run_id: key for run_id, _sop, key in found}
    wanted: dict[str, str | None] = {}
    holder: dict[str, str] = {}  # new key → the oldest run taking it
    for run_id, sop_id, key in found:
        new = folded(sop_id, key)
        if new in holder:
            wanted[run_id] = None
            log.warning(kv("event=dedup_key_shared", run=run_id, key=new, kept_by=holder[new],
                           then="both stay open; repeats attach to the older"))
        else:
            holder[new] = run_id
            wanted[run_id] = new
    _rewrite(bind, wanted, held)


def downgrade() -> None:
    """Open runs hold their key as written again (``<sop>:`` and the run's ``dedup_key``, as before); a run that gave
    its key up stays without one."""
    bind = op.get_bind()
    found = bind.execute(sa.text("SELECT id, sop_id, open_key, dedup_key FROM runs WHERE open_key IS NOT NULL"))
    held: dict[str, str] = {}
    wanted: dict[str, str | None] = {}
    taken: set[str] = set()
    for run_id, sop_id, key, written in found:
        held[run_id] = key
        head = (DRILL if key.startswith(DRILL) else "") + f"{sop_id}:"
        old = head + written if written is not None and key.startswith(head) else key
        wanted[run_id] = None if old in taken else old
        taken.add(old)
    _rewrite(bind, wanted, held)
