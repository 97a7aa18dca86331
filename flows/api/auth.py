"""Authenticate: bearer token → principal with a role; an HMAC signature when the token asks for one.

Tokens are named in ``config/`` (``tokens:``) with the environment variable holding each
secret; :class:`Gate` reads them once, at start-up, and logs the ones that are inactive
(variable unset). Secrets are compared in constant time and never logged.

Roles and what they may do:

=========== ===========================================================
operator    start runs, cancel, report on any step (for any person), read
responder   report on steps assigned to its person or their roles, read
auditor     read
monitor     post alerts (Alertmanager, Grafana), events and metrics: those of its ``sources``
=========== ===========================================================

Operators and responders act as their token's ``person`` (:meth:`Principal.acting`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from flows.api.errors import ApiError
from flows.language.actors import Actor
from flows.language.config import HmacCheck, Site
from flows.ledger import Ledger, once

log = logging.getLogger("sop.api")
READERS = ("operator", "responder", "auditor")
_bearer = HTTPBearer(auto_error=False, description="an API token named in config/ (tokens:)")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name in config, its role, and the person it stands for.

    A token that acts (operator, responder) names its ``person`` in ``config/``: loading the
    config refuses one that does not (``ApiToken``), so ``sop serve`` and the API do not start
    with it. What it does is recorded as that person's, ``via: api``, with the token's name.
    """

    token: str
    role: str
    person: str | None = None

    @property
    def actor(self) -> str:
        """The name a monitor's signals are recorded under (the token's person, or ``token:NAME`` for a machine)."""
        return self.person or f"token:{self.token}"

    def acting(self, for_person: str | None = None) -> Actor:
        """The :class:`Actor` of what this token does: its person, ``via api``, the token named.

        ``for_person`` (a person of config/, checked by the caller): an operator acting for
        someone else, recorded as both (``li-wei for wang-fang``). 403 for a token with no
        person, which a validated config never holds.
        """
        if self.person is None:
            raise ApiError(403, f"token `{self.token}` names no person in config/ (tokens.{self.token}.person): "
                                "it cannot act", "header.authorization")
        if for_person is None or for_person == self.person:
            return Actor(person=self.person, via="api", token=self.token)
        return Actor(person=for_person, via="api", by=self.person, token=self.token)


@dataclass(frozen=True)
class ActiveToken:
    principal: Principal
    secret: bytes
    hmac: HmacCheck | None = None
    hmac_secret: bytes | None = None
    #: a monitor token's endpoints (``tokens.NAME.sources``); None: every one
    sources: tuple[str, ...] | None = None


#: the shortest secret a token (or its HMAC) may have, in bytes
MIN_SECRET_BYTES = 16


class SecretsRefused(ValueError):
    """The tokens' secrets in the environment are unsafe (short, padded, shared): the API does not start."""

    def __init__(self, problems: list[str]):
        super().__init__(
            "the API cannot start: " + "; ".join(problems) + " (secrets live in the environment variables named "
            "in config/ tokens:; make each one its own, e.g. `openssl rand -hex 32`)"
        )
        self.problems = problems


def check_secrets(secrets: dict[str, tuple[str, str]]) -> list[str]:
    """What is wrong with the secrets, by name (``tokens.grafana``, ``tokens.grafana.hmac``) → (variable, value).

    A secret must be at least :data:`MIN_SECRET_BYTES` long, carry no leading or trailing
    whitespace (a newline pasted with it would be part of it, and no client sends one), and be
    used by one token only (two tokens sharing one cannot be told apart). Secrets are never quoted.
    """
    problems: list[str] = []
    holders: dict[str, list[str]] = {}
    for name, (variable, secret) in secrets.items():
        if secret != secret.strip():
            problems.append(f"{name}: ${variable} begins or ends with whitespace (a trailing newline?)")
        elif len(secret.encode()) < MIN_SECRET_BYTES:
            problems.append(f"{name}: ${variable} is {len(secret.encode())} bytes; at least {MIN_SECRET_BYTES}")
        holders.setdefault(secret, []).append(f"{name} (${variable})")
    problems += [f"{' and '.join(names)} share one secret" for names in holders.values() if len(names) > 1]
    return problems


class Gate:
    """The authenticate stage: which token a request carries, whether its role may, whether it is signed.

    It refuses to start (:class:`SecretsRefused`) on secrets that are short, padded or shared, and
    remembers the signatures it accepted while they are fresh: a signed request is taken once. A check of a
    signature may ask the database (:class:`SeenSignatures`): call :meth:`verify_signature` off the event loop.
    """

    def __init__(self, site: Site, env: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time,
                 ledger: Ledger | None = None):
        """``ledger``: where every API process of the site remembers the signatures it took (a replay sent to another
        process behind the balancer is refused too); None: this process's memory only."""
        env = os.environ if env is None else env
        self.clock = clock
        self.tokens: list[ActiveToken] = []
        self.inactive: dict[str, str] = {}
        self.replays = SeenSignatures(clock, ledger)
        secrets: dict[str, tuple[str, str]] = {}
        for name, token in site.tokens.items():
            secret = env.get(token.env, "")
            if not secret:
                self.inactive[name] = f"environment variable {token.env} is not set"
                continue
            hmac_secret = None
            if token.hmac is not None:
                hmac_secret = env.get(token.hmac.env, "").encode() or None
                if hmac_secret is None:
                    self.inactive[name] = f"environment variable {token.hmac.env} (its HMAC secret) is not set"
                    continue
                secrets[f"tokens.{name}.hmac"] = (token.hmac.env, hmac_secret.decode())
            secrets[f"tokens.{name}"] = (token.env, secret)
            sources = tuple(token.sources) if token.sources is not None else None
            self.tokens.append(
                ActiveToken(Principal(name, token.role, token.person), secret.encode(), token.hmac, hmac_secret,
                            sources)
            )
        problems = check_secrets(secrets)
        if problems:
            raise SecretsRefused(problems)
        #: what the tokens allow that the site may not mean (a monitor token posting anywhere), said at the start
        self.warnings = list(site.token_warnings().values())
        for warning in self.warnings:
            log.warning("event=api_token_unscoped %s", warning)
        for name, reason in self.inactive.items():
            log.info("event=api_token_inactive token=%s reason=%r", name, reason)
        log.info("event=api_tokens active=%d inactive=%d", len(self.tokens), len(self.inactive))
        if not self.tokens:
            log.warning(
                "event=api_no_tokens message=%r",
                "no API token is active: the API (/v1, webhooks) refuses every request; the people's pages "
                "work (set the environment variables named in config/tokens.yaml to open the API)",
            )

    def identify(self, authorization: str | None) -> ActiveToken:
        """The token of an ``Authorization: Bearer …`` header; 401 when there is none or it is unknown."""
        challenge = {"WWW-Authenticate": "Bearer"}
        if not authorization:
            raise ApiError(
                401, "no API token: send `Authorization: Bearer <token>`", "header.authorization", headers=challenge
            )
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(
                401, "the Authorization header must be `Bearer <token>`", "header.authorization", headers=challenge
            )
        offered = given.strip().encode()
        found = None
        for token in self.tokens:  # no early exit: the time taken says nothing about which token matched
            if hmac.compare_digest(token.secret, offered):
                found = token
        if found is None:
            raise ApiError(401, "unknown or inactive API token", "header.authorization", headers=challenge)
        return found

    def admit(self, request: HTTPConnection, roles: tuple[str, ...]) -> ActiveToken:
        """The request's token, refused (401 / 403) unless its role is one of ``roles``.

        The principal is noted on the request first, so the refusal's log line names the token.
        """
        token = self.identify(request.headers.get("authorization"))
        request.state.principal = token.principal
        self.authorize(token, roles)
        return token

    @staticmethod
    def authorize(token: ActiveToken, roles: tuple[str, ...]) -> None:
        """403 unless the token's role is one of ``roles``."""
        role = token.principal.role
        if role not in roles:
            raise ApiError(
                403,
                f"token `{token.principal.token}` has role {role}; this endpoint needs {' or '.join(roles)}",
                "header.authorization",
            )

    @staticmethod
    def authorize_source(token: ActiveToken, source: str) -> None:
        """403 unless the token may post to the monitoring endpoint ``source`` (its ``sources``; all without)."""
        if token.sources is None or source in token.sources:
            return
        name = token.principal.token
        raise ApiError(
            403,
            f"token `{name}` posts to {', '.join(token.sources)} (tokens.{name}.sources), not to {source}: "
            f"give {source}'s sender a token of its own with `sources: [{source}]`",
            "header.authorization",
        )

    def verify_signature(self, token: ActiveToken, headers: Mapping[str, str], body: bytes) -> None:
        """401 unless the body carries the token's HMAC signature (when the token has one configured)."""
        check, secret = token.hmac, token.hmac_secret
        if check is None or secret is None:
            return
        field = f"header.{check.header.lower()}"
        given = (headers.get(check.header) or "").strip()
        if not given:
            raise ApiError(401, f"missing signature header {check.header} (HMAC-SHA256 of the body)", field)
        signed = body
        if check.timestamp_header:
            stamp = (headers.get(check.timestamp_header) or "").strip()
            ts_field = f"header.{check.timestamp_header.lower()}"
            if not stamp:
                raise ApiError(401, f"missing timestamp header {check.timestamp_header}", ts_field)
            try:
                sent = float(stamp)
            except ValueError:
                sent = math.nan
            if not math.isfinite(sent):  # "nan" would pass any comparison of its age
                raise ApiError(401, f"{check.timestamp_header} must be Unix seconds, got {stamp[:40]!r}", ts_field)
            age = abs(self.clock() - sent)
            if age > check.max_age.total_seconds():
                raise ApiError(
                    401,
                    f"signature timestamp is {age:.0f}s away from now "
                    f"(at most {check.max_age.total_seconds():.0f}s): a replay or a wrong clock",
                    ts_field,
                )
            signed = stamp.encode() + b":" + body
        expected = hmac.new(secret, signed, hashlib.sha256).hexdigest()
        offered = given.removeprefix("sha256=").lower().encode("utf-8", "surrogateescape")  # any header: bytes
        if not hmac.compare_digest(expected.encode(), offered):
            raise ApiError(
                401, f"bad signature in {check.header}: the body was not signed with this token's secret", field
            )
        if check.timestamp_header and not self.replays.first(expected, check.max_age.total_seconds()):
            raise ApiError(
                401,
                f"this signed request was already taken (the same {check.header} within "
                f"{check.max_age.total_seconds():.0f}s): a replay; a sender signs each request anew",
                field,
            )


class SeenSignatures:
    """The signatures accepted while their timestamp is fresh: a second request bearing one is a replay.

    This process's memory answers first (bounded by the window: entries older than it are dropped as new ones
    come); with a ledger, the database then answers for every API process of the site (``flows.ledger.once``),
    so a replay sent to the process that did not take the original is refused as well.
    """

    def __init__(self, clock: Callable[[], float], ledger: Ledger | None = None):
        self.clock = clock
        self.ledger = ledger
        self._until: dict[str, float] = {}  # signature → when it stops being fresh (insertion order = age order)
        self._lock = threading.Lock()

    def first(self, signature: str, window: float) -> bool:
        """True the first time ``signature`` is offered within ``window`` seconds (and remember it)."""
        now = self.clock()
        # a timestamp up to ``window`` ahead is fresh for twice the window: keep it that long
        until = now + 2 * window
        with self._lock:
            while self._until:
                oldest, fresh_until = next(iter(self._until.items()))
                if fresh_until > now:
                    break
                del self._until[oldest]
            if signature in self._until:
                return False
        if self.ledger is not None and not once.take(self.ledger, f"signature:{signature}",
                                                     until=datetime.fromtimestamp(until, UTC),
                                                     now=datetime.fromtimestamp(now, UTC)):
            return False
        with self._lock:  # remembered here once the database took it (a failed take leaves nothing behind)
            self._until[signature] = until
        return True


def require(*roles: str) -> Any:
    """A route dependency: the caller's :class:`Principal`, refused (401/403) unless its role is in ``roles``.

    It reads the body only when the token asks for a signature, and runs before anything
    parses the body: authenticate comes first.
    """

    async def principal(
        request: Request, _credentials: HTTPAuthorizationCredentials | None = Security(_bearer)
    ) -> Principal:
        gate: Gate = request.app.state.gate
        token = gate.admit(request, roles)
        if token.hmac is not None:  # (off the event loop: it may ask the database whether the signature was taken)
            await run_in_threadpool(gate.verify_signature, token, request.headers, await request.body())
        return token.principal

    return Depends(principal)


#: the bearer scheme, for the OpenAPI of a route that authenticates by itself (the webhook pipeline's routes)
BEARER = Security(_bearer)


async def raw_body(request: Request) -> bytes:
    """The request body as bytes (a dependency, so sync handlers get it after authentication)."""
    return await request.body()
