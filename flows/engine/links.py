"""Personal links: a step link (open a step's page and act on it once, as one person) and a sign-in link.

A link is signed with the site's secret (``flows.engine.secrets``) by itsdangerous, so it
cannot be forged or altered; it names its person, run and step, a random nonce and an
expiry instant on the engine's clock (compressed in drills and tests). Acting with a link
writes its nonce to ``link_uses`` in the same transaction as the action
(:meth:`flows.engine.store.RunStore.use_link`): the primary key refuses a replay.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

from flows.clock import Clock

STEP_SALT = "sop-step-link"
SIGN_IN_SALT = "sop-sign-in"


class LinkRefused(ValueError):
    """A link that cannot act: ``reason`` is forged, expired, used, not-yours or left (its person is no longer
    in config)."""

    def __init__(self, reason: str, message: str, claim: Claim | None = None):
        super().__init__(message)
        self.reason = reason
        self.claim = claim  # an expired link's claim: whose and which step it was (its signature was good)


@dataclass(frozen=True)
class Claim:
    """What a valid link says: who, which run and step (none for sign-in), its nonce and expiry."""

    person: str
    run_id: str | None
    step_id: str | None
    nonce: str
    expires_at: datetime


class Links:
    """Makes and reads the site's personal links (``base_url/s/<token>``, ``base_url/sign-in/<token>``)."""

    def __init__(self, secret: bytes, clock: Clock, base_url: str, *, max_age: timedelta = timedelta(hours=24),
                 sign_in_ttl: timedelta = timedelta(minutes=15), person_known: Callable[[str], bool] | None = None):
        """``person_known``: whether a link's person is still one of the site's (a leaver's links open nothing);
        None: every person is."""
        self.secret = secret
        self.person_known = person_known
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.max_age = max_age
        self.sign_in_ttl = sign_in_ttl
        self._step = URLSafeSerializer(secret, salt=STEP_SALT)
        self._sign_in = URLSafeSerializer(secret, salt=SIGN_IN_SALT)

    # --- making ----------------------------------------------------------------------------

    def step_token(self, person: str, run_id: str, step_id: str, *, max_age: timedelta | None = None) -> str:
        """A token for one person on one step, good for ``max_age`` (the site's ``link_max_age``)."""
        expires = self.clock.now() + (max_age or self.max_age)
        return self._step.dumps({"p": person, "r": run_id, "s": step_id, "n": secrets.token_urlsafe(12),
                                 "e": int(expires.timestamp())})

    def step_link(self, person: str, run_id: str, step_id: str, *, max_age: timedelta | None = None) -> str:
        return f"{self.base_url}/s/{self.step_token(person, run_id, step_id, max_age=max_age)}"

    def sign_in_token(self, person: str) -> str:
        expires = self.clock.now() + self.sign_in_ttl
        return self._sign_in.dumps({"p": person, "n": secrets.token_urlsafe(12), "e": int(expires.timestamp())})

    def sign_in_link(self, person: str) -> str:
        return f"{self.base_url}/sign-in/{self.sign_in_token(person)}"

    # --- reading ---------------------------------------------------------------------------

    def read_step(self, token: str) -> Claim:
        """The claim of a step token; LinkRefused (forged / expired) otherwise."""
        return self._read(self._step, token, step=True)

    def read_sign_in(self, token: str) -> Claim:
        return self._read(self._sign_in, token, step=False)

    def _read(self, serializer: URLSafeSerializer, token: str, *, step: bool) -> Claim:
        try:
            data = serializer.loads(token)
            claim = Claim(person=str(data["p"]), run_id=data.get("r"), step_id=data.get("s"), nonce=str(data["n"]),
                          expires_at=datetime.fromtimestamp(int(data["e"]), UTC))
        except (BadSignature, KeyError, TypeError, ValueError):
            raise LinkRefused("forged", "this link is not one we made (or it was cut short): "
                                        "open the link from your message again") from None
        if step and not (claim.run_id and claim.step_id):
            raise LinkRefused("forged", "this link names no step")
        if self.clock.now() >= claim.expires_at:
            raise LinkRefused("expired", f"this link expired at {claim.expires_at:%Y-%m-%d %H:%M} UTC: "
                                         "sign in, or ask for a new page", claim)
        if self.person_known is not None and not self.person_known(claim.person):  # config reloaded without them
            raise LinkRefused("left", f"{claim.person} is no longer a person of this site: their links no longer open")
        return claim


#: the secret part of a step or sign-in link in a path (``/s/eyJw…``, ``/sign-in/eyJw…``)
_LINK_SECRET = re.compile(r"(/(?:s|sign-in)/)[^\s/?#\"']+")


def without_link_secrets(text: str) -> str:
    """``text`` (a path, a log line) with every link's secret part shown as ``…``: whoever reads a log must not be
    able to open a person's link and act as them."""
    return _LINK_SECRET.sub(r"\1…", text) if "/s" in text else text
