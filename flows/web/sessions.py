"""Signed-in browsers: a session per sign-in, kept in the ledger's ``sessions`` table.

The cookie holds a random id; the table keeps only its SHA-256 (a copy of the database
signs nobody in), the person, how they signed in (``sign-in`` link, ``link`` — a personal
step link —, ``sso`` through the company's proxy), the session's CSRF token and its expiry
on the engine's clock. Every form of a signed-in page carries that CSRF token; a post
without it is refused. Signing in and out are records of the hash chain.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from flows.ledger import Ledger, utc
from flows.ledger.schema import link_uses, sessions
from flows.ledger.vocabulary import RecordKind

COOKIE = "sop_session"


@dataclass(frozen=True)
class Session:
    """A signed-in person: who, how (``sign-in``, ``link`` or ``sso``), their forms' CSRF token, until when."""

    person: str
    via: str
    csrf: str
    expires_at: datetime
    id_hash: str

    @property
    def actor_via(self) -> str:
        """How an action in this session came, for the ledger: ``link`` when a step link began it, else ``web``."""
        return "link" if self.via == "link" else "web"

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf, given or "")


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionStore:
    """Begins, reads and ends sessions (``ledger``'s clock decides expiry, so drills and tests compress it)."""

    def __init__(self, ledger: Ledger, max_age: timedelta):
        self.ledger = ledger
        self.max_age = max_age

    def begin(self, person: str, via: str, *, until: datetime | None = None, nonce: str | None = None,
              **facts: object) -> tuple[str, Session]:
        """A new session for ``person``: returns the cookie value and the session.

        ``until`` caps its expiry (a session begun from a step link ends with the link).
        ``nonce``: the sign-in link it came from, used up in the same transaction (a replay
        raises :class:`SignInUsed`).
        """
        cookie = secrets.token_urlsafe(32)
        now = self.ledger.clock.now()
        expires = now + self.max_age if until is None else min(now + self.max_age, until)
        session = Session(person, via, secrets.token_urlsafe(24), expires, _hash(cookie))
        with self.ledger.transaction() as tx:
            if nonce is not None:
                if tx.conn.execute(sa.select(link_uses.c.nonce).where(link_uses.c.nonce == nonce)).first():
                    raise SignInUsed("this sign-in link was already used: ask for a new one")
                tx.conn.execute(link_uses.insert().values(nonce=nonce, person=person, action="sign-in", used_at=now))
            tx.conn.execute(sessions.insert().values(id_hash=session.id_hash, person=person, via=via,
                                                     csrf=session.csrf, created_at=now, expires_at=expires))
            tx.append(RecordKind.SIGNED_IN, actor=person, at=now, via=via, expires_at=expires.isoformat(),
                      **{k: v for k, v in facts.items() if v is not None})
        return cookie, session

    def read(self, cookie: str | None) -> Session | None:
        """The live session of a cookie; None when there is none, it ended or it expired."""
        if not cookie:
            return None
        with self.ledger.read() as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.id_hash == _hash(cookie))).first()
        if row is None or row.ended_at is not None or utc(row.expires_at) <= self.ledger.clock.now():
            return None
        return Session(row.person, row.via, row.csrf, utc(row.expires_at), row.id_hash)  # type: ignore[arg-type]

    def end(self, session: Session) -> None:
        """Sign out: the session ends now (its cookie no longer works anywhere)."""
        now = self.ledger.clock.now()
        with self.ledger.transaction() as tx:
            tx.conn.execute(sessions.update().where(sessions.c.id_hash == session.id_hash).values(ended_at=now))
            tx.append(RecordKind.SIGNED_OUT, actor=session.person, at=now, via=session.via)


class SignInUsed(ValueError):
    """A sign-in link that already began a session."""
