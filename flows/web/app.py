"""The pages' state: the engine, sessions, the trusted proxy, personal links, evidence files.

``flows.web.routes.mount`` adds the pages to the API's FastAPI app (``flows.api.app.create_app``): the same
process, the same engine, one origin. Pages are for people; the API (``/v1``) is for
machines and their tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from flows.engine.links import Claim
from flows.language.actors import Actor
from flows.language.steps.human import in_access_list
from flows.web.identity import ProxyIdentity, client_of
from flows.web.sessions import COOKIE, Session, SessionStore

#: the anonymous sign-in form's double-submit cookie
CSRF_COOKIE = "sop_csrf"
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Evidence:
    """An uploaded file kept under ``var/evidence/<sha256>``; the ledger records its reference."""

    sha256: str
    name: str
    size: int
    #: written by this upload (not a file someone had already given)
    new: bool = False

    @property
    def reference(self) -> str:
        return f"sha256:{self.sha256} {self.name} ({self.size} bytes)"


log = logging.getLogger("sop.web")

#: seconds a walk of the hash chain stands for the desk's pages before it is walked again
CHAIN_CHECK_S = 60.0


@dataclass(frozen=True)
class ChainCheck:
    """The hash chain's last walk, as the desk's pages say it: its result (``Verification``) and when."""

    result: Any
    at: Any  # the engine clock's instant the walk began
    monotonic: float  # when the walk began (a walk begun earlier never replaces it)


class Web:
    """What every page handler needs, built once per app."""

    def __init__(self, engine: Any, env: Mapping[str, str] | None = None):
        self.engine = engine
        self._chain: ChainCheck | None = None
        self._chain_lock = threading.Lock()
        self._walking = False  # a walk of the chain under way (one at a time)
        site = engine.site
        settings = site.settings.web
        self.settings = settings
        self.sessions = SessionStore(engine.ledger, settings.session_max_age)
        self.proxy = ProxyIdentity(settings.proxy, site, env if env is not None else os.environ)
        self.evidence_dir = Path(engine.library.root) / "var" / "evidence"
        self.secure = site.settings.base_url.startswith("https://")

    @property
    def links(self) -> Any:
        return self.engine.links

    @property
    def site(self) -> Any:
        return self.engine.site

    # --- who is at the browser ------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        """The browser's live session; one begun now when the trusted proxy vouches for a person. A session of
        someone no longer in config (a leaver, a reload since) is none: their cookie reads no page."""
        cached = getattr(request.state, "session", False)
        if cached is not False:
            return cached
        session = self.sessions.read(request.cookies.get(COOKIE))
        if session is not None and session.person not in self.site.people:
            session = None  # a leaver's session (config reloaded without them) reads nothing more: signed out
        vouched = self.proxy.person(request)
        if vouched is not None and (session is None or session.person != vouched):
            cookie, session = self.sessions.begin(vouched, "sso", client=client_of(request))
            request.state.new_cookie = (cookie, session)
        request.state.session = session
        return session

    def may(self, session: Session | None, access: str) -> bool:
        """Whether the signed-in person has ``access`` (``operators`` or ``auditors`` of ``settings.web``:
        people, or roles whose members they are)."""
        return session is not None and in_access_list(self.site, session.person, access)

    def who_may(self, access: str) -> str:
        """Who has ``access``, as a refused reader can go and ask them: each role of the list by its title with its
        members' names (``Operations Director (Li Wei 李伟, Zhang Min 张敏)``), each person by name."""
        site = self.site

        def name(pid: str) -> str:
            return site.people[pid].name if pid in site.people else pid

        said = [f"{site.roles[n].title or n} ({', '.join(name(p) for p in site.roles[n].members)})"
                if n in site.roles else name(n) for n in getattr(site.settings.web, access)]
        return ", ".join(said) or "nobody yet"

    def zone(self, person: str | None, default: str = "UTC") -> str:
        """The reader's time zone (their ``timezone`` in config/people.yaml), ``default`` for anyone else."""
        found = self.site.people.get(person) if person else None
        return found.zone_or(self.site.settings.timezone) if found else default

    def chain(self, walked: Any = None) -> ChainCheck | None:
        """The chain's last verification, which the desk's pages show beside what they read (figures read from a
        tampered ledger are the forger's): ``walked`` (a walk just made: the verify page's) kept as the newest;
        else the last walk, and when it is older than ``CHAIN_CHECK_S`` (or there is none: None) a new walk begun
        on a thread of its own. A request never waits for a walk (seconds on a long chain)."""
        with self._chain_lock:
            if walked is not None:
                self._chain = ChainCheck(walked, self.engine.clock.now(), time.monotonic())
            elif (self._chain is None or time.monotonic() - self._chain.monotonic > CHAIN_CHECK_S) \
                    and not self._walking:
                self._walking = True
                threading.Thread(target=self._walk_chain, name="desk-chain", daemon=True).start()
            return self._chain

    def last_chain(self) -> ChainCheck | None:
        """The chain's last verification as it stands (None: none yet), beginning no walk."""
        with self._chain_lock:
            return self._chain

    def _walk_chain(self) -> None:
        from flows.audit import Audit

        began, began_at = time.monotonic(), self.engine.clock.now()
        try:
            walked = Audit(self.engine.ledger).verify(workers=1)  # one process: a threaded server does not fork
        except Exception:  # a ledger gone (the app stopping) or unreachable: the pages say nothing new
            log.warning("event=chain_walk_failed", exc_info=True)
            walked = None
        with self._chain_lock:
            self._walking = False
            if walked is not None and (self._chain is None or self._chain.monotonic < began):  # a newer walk stands
                self._chain = ChainCheck(walked, began_at, began)

    def actor(self, session: Session) -> Actor:
        return Actor(person=session.person, via=session.actor_via)  # type: ignore[arg-type]

    def link_csrf(self, claim: Claim) -> str:
        """The CSRF token of a link's forms: bound to the link's nonce, signed with the site secret."""
        return hmac.new(self.links.secret, f"csrf|{claim.nonce}".encode(), hashlib.sha256).hexdigest()[:32]

    def finish(self, request: Request, response: Response) -> Response:
        """Set the cookie of a session begun during this request (HttpOnly, SameSite=Lax)."""
        begun = getattr(request.state, "new_cookie", None)
        if begun is not None:
            cookie, session = begun
            max_age = max(1, int((session.expires_at - self.engine.clock.now()).total_seconds()))
            response.set_cookie(COOKIE, cookie, max_age=max_age, httponly=True, samesite="lax", secure=self.secure,
                                path="/")
        return response

    # --- evidence ---------------------------------------------------------------------------

    def keep_evidence(self, name: str, content: bytes) -> Evidence:
        """Store an uploaded file by its SHA-256 (written whole, then renamed: never half a file)."""
        digest = hashlib.sha256(content).hexdigest()
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        target = self.evidence_dir / digest
        new = not target.exists()
        if new:
            partial = target.with_suffix(f".part-{os.getpid()}")
            partial.write_bytes(content)
            os.replace(partial, target)
        safe = re.sub(r"[^\w.\- ]+", "_", Path(name or "file").name)[:120] or "file"
        return Evidence(digest, safe, len(content), new)

    def forget_evidence(self, kept: list[Evidence]) -> None:
        """Take back files kept for a report the engine then refused (only those this upload wrote)."""
        for evidence in kept:
            (self.evidence_dir / evidence.sha256).unlink(missing_ok=True)

    def evidence_path(self, sha256: str) -> Path | None:
        if not _SHA.fullmatch(sha256):
            return None
        path = self.evidence_dir / sha256
        return path if path.is_file() else None

