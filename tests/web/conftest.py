"""The people's pages, really served: the API app (pages included) on a free 127.0.0.1 port.

The package works in a copy of the project whose ``settings.base_url`` is that port, so the
links in the messages of ``var/inbox`` open on the served app, as a responder's phone would.
No Prefect here: the pages and the engine are what is tested (the first human steps are
assigned by the engine itself); the Prefect side has its own tests.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.api import create_app
from flows.engine.build import build_engine
from flows.language.library import load_library
from flows.ledger import Ledger
from notifications import read_inbox
from tests.api.conftest import TOKEN_ENV, ServedApp
from tests.engine.conftest import make_project, wait_for
from tests.support import free_port

SIGN_IN_LINK = re.compile(r"(http\S+/sign-in/\S+)")

LINK = re.compile(r"\*\*Open your step:\*\* (\S+)")
#: evidence files up to 200 kB here, and the company's single sign-on through a proxy with a shared secret
UPLOAD_MAX = 200_000
WEB_SETTINGS = f"""  web:
    upload_max_bytes: {UPLOAD_MAX}
    proxy: {{header: X-Forwarded-User, secret_header: X-Proxy-Secret, secret_env: SOP_PROXY_SECRET}}
"""


PROXY_SECRET = secrets.token_hex(16)


@dataclass
class Site:
    """The served pages, their engine, the project folder and the tokens' secrets."""

    url: str
    engine: Any
    root: Path
    tokens: dict[str, str]

    def inbox(self, person: str) -> list[dict[str, Any]]:
        return read_inbox(person, self.root / "var" / "inbox")

    def link_for(self, person: str, run_id: str, step_id: str) -> str:
        """The personal link for the step in the newest message of ``person``'s inbox that carries one
        (pages are delivered by the pager's threads: waits a little for it to arrive)."""

        def find() -> str | None:
            for message in reversed(self.inbox(person)):
                found = LINK.search(message["body"])
                if found:
                    claim = self.engine.links.read_step(found.group(1).rsplit("/s/", 1)[1])
                    if (claim.person, claim.run_id, claim.step_id) == (person, run_id, step_id):
                        return found.group(1)
            return None

        return wait_for(find, 10, f"a personal link for {step_id} of {run_id} in {person}'s inbox")

    def messages(self, person: str, since: int, count: int = 1) -> list[dict[str, Any]]:
        """``person``'s messages after the first ``since``, once ``count`` of them have arrived."""
        return wait_for(lambda: self.inbox(person)[since:] if len(self.inbox(person)) >= since + count else None,
                        10, f"{count} new message(s) for {person}")

    def sign_in_message(self, person: str, since: int) -> dict[str, Any]:
        """The first of ``person``'s messages after the first ``since`` that carries a sign-in link, once it has
        arrived (a page about a run may arrive before it: the pager's threads deliver those)."""
        return wait_for(lambda: next((m for m in self.inbox(person)[since:] if SIGN_IN_LINK.search(m["body"])), None),
                        10, f"a sign-in link for {person}")

    def sign_in_link(self, person: str, since: int) -> str:
        """The link of :meth:`sign_in_message`."""
        return SIGN_IN_LINK.search(self.sign_in_message(person, since)["body"]).group(1)  # type: ignore[union-attr]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)


@pytest.fixture(scope="package")
def site(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = make_project(repo_root, tmp_path_factory.mktemp("web"))
    port = free_port()
    settings = root / "config" / "settings.yaml"
    text = re.sub(r"base_url: \S+", f"base_url: http://127.0.0.1:{port}", settings.read_text())
    settings.write_text(re.sub(r"  web:[^\n]*\n", WEB_SETTINGS, text, count=1))  # the repo's operators stay
    saved = {k: os.environ.get(k) for k in ("SOP_HOME", "SOP_INBOX_DIR")}
    os.environ.update({"SOP_HOME": str(root), "SOP_INBOX_DIR": str(root / "var" / "inbox")})
    ledger = Ledger(f"sqlite:///{root / 'var' / 'ledger.db'}")
    ledger.migrate()
    engine = build_engine(load_library(root), ledger=ledger)
    env = {var: f"{name}-{secrets.token_hex(12)}" for name, var in TOKEN_ENV.items()}
    env["SOP_HMAC_GRAFANA"] = secrets.token_hex(12)
    env["SOP_PROXY_SECRET"] = PROXY_SECRET
    served = ServedApp(create_app(engine, env=env), port=port)
    from flows.web import signin

    asks, signin.ASKS_PER_MINUTE = signin.ASKS_PER_MINUTE, 100_000  # these tests sign dozens in from one address
    _SITE_LEDGERS.append(ledger)
    yield Site(served.url, engine, root, {name: env[var] for name, var in TOKEN_ENV.items()})
    _SITE_LEDGERS.remove(ledger)
    signin.ASKS_PER_MINUTE = asks
    served.stop()
    engine.pager.close()
    ledger.dispose()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


#: the ledgers of the sites being served (the sign-in links they sent are remembered there)
_SITE_LEDGERS: list[Ledger] = []


def forget_sign_ins(ledger: Ledger, person: str | None = None) -> None:
    """As if no sign-in link had been sent lately (to ``person``; None: to anyone): one may be asked for at once."""
    from flows.ledger.once import stored
    from flows.ledger.schema import once_keys
    from flows.web.signin import sign_in_key

    key = once_keys.c.key
    with ledger.transaction() as tx:
        tx.conn.execute(once_keys.delete().where(key.like("sign-in:%") if person is None
                                                 else key == stored(sign_in_key(person))))


@pytest.fixture(autouse=True)
def _fresh_throttle() -> None:
    """Each test may ask for sign-in links (the form allows one per person per 30 s)."""
    for ledger in _SITE_LEDGERS:
        forget_sign_ins(ledger)
