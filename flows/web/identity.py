"""Who is at the browser: a session cookie, or the company's single sign-on through a trusted proxy.

The proxy (oauth2-proxy or any reverse proxy that authenticates people, e.g. against the
company's OIDC provider) passes who it signed in in a header (``settings.web.proxy.header``:
a person id of ``config/``, or an e-mail matched to a person's ``email``). That header is
believed only when the request also carries the shared secret (``secret_header`` holding
``$secret_env``) or comes from one of the ``trusted`` addresses; otherwise it is ignored and
logged, and the browser is asked to sign in like anyone else. A believed header begins a
session (so forms carry a CSRF token as for every session).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Mapping

from starlette.requests import Request

from flows.language.config import ProxySettings, Site

log = logging.getLogger("sop.web")


class ProxyIdentity:
    """Reads the trusted proxy's header (None when no proxy is configured)."""

    def __init__(self, settings: ProxySettings | None, site: Site, env: Mapping[str, str] | None = None):
        self.settings = settings
        self.site = site
        env = os.environ if env is None else env
        self.secret = (env.get(settings.secret_env or "", "") if settings else "").strip().encode()
        self.networks = [ipaddress.ip_network(a, strict=False) for a in settings.trusted] if settings else []
        self.by_email = {p.email.lower(): pid for pid, p in site.people.items() if p.email}
        if settings is not None and settings.secret_env and not self.secret and not self.networks:
            log.warning("event=sso_inactive reason=%r", f"${settings.secret_env} is not set: the proxy header is ignored")

    def person(self, request: Request) -> str | None:
        """The person the proxy vouches for, or None (no proxy, no header, not trusted, not a person)."""
        settings = self.settings
        if settings is None:
            return None
        claimed = (request.headers.get(settings.header) or "").strip()
        if not claimed:
            return None
        if not self._trusted(request):
            log.warning("event=sso_header_ignored from=%s header=%s reason=%r", client_of(request) or "-", settings.header,
                        "neither the shared secret nor a trusted address")
            return None
        person = claimed if claimed in self.site.people else self.by_email.get(claimed.lower())
        if person is None:
            log.warning("event=sso_unknown_person from=%s who=%r", client_of(request) or "-", claimed[:120])
        return person

    def _trusted(self, request: Request) -> bool:
        settings = self.settings
        assert settings is not None
        given = (request.headers.get(settings.secret_header) or "").encode()
        if self.secret and given and hmac.compare_digest(self.secret, given):
            return True
        try:
            address = ipaddress.ip_address(client_of(request))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def client_of(request: Request) -> str | None:
    """The address the request came from (the balancer's, unless uvicorn is told to believe its header)."""
    return request.client.host if request.client else None
