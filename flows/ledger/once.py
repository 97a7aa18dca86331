"""Keys taken once by any process of a site while they are fresh.

A replayed signed request, or a second sign-in link asked within the resend interval, must be refused
whichever API process behind the balancer it reaches, so the memory of what was taken is the database's:
``once_keys``, whose primary key decides between two processes taking one key at once. Rows are dropped
once their ``until`` has passed (by the next taker), so the table holds only what is fresh.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from flows.ledger import Ledger
from flows.ledger.schema import once_keys

_KEY_MAX = once_keys.c.key.type.length
_EXPIRED = once_keys.delete().where(once_keys.c.until <= sa.bindparam("now"))


def stored(key: str) -> str:
    """How ``key`` is kept in ``once_keys``: as it is, or (a person id is as long as config says) as its hash when it
    is longer than the column, which says the same."""
    return key if len(key) <= _KEY_MAX else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def take(ledger: Ledger, key: str, until: datetime, now: datetime) -> bool:
    """True the first time ``key`` is taken (it is then held until ``until``); False while another taking of it is
    still fresh, by this process or any other on the same ledger. ``now``: the wall clock (never a run's)."""
    key = stored(key)
    insert = (sqlite_insert if ledger.is_sqlite else pg_insert)(once_keys)
    # inserts and expired rows only: what two writers race on is fenced by the primary key
    with ledger.transaction(per_run=True) as tx:
        tx.conn.execute(_EXPIRED, {"now": now})
        taken = insert.values(key=key, until=until).on_conflict_do_nothing().returning(once_keys.c.key)
        return tx.conn.execute(taken).first() is not None  # a row back: this taking inserted it

