"""An alert an SOP's trigger matched but could not start, over HTTP: its owner hears of it once an hour, the ledger
records each one, and `sop status` says so (the board's notice: tests/web/test_refused_notice.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from flows.api import create_app
from flows.audit import Audit
from flows.engine.build import build_engine
from flows.language.library import load_library
from flows.ledger import Ledger
from flows.ledger.schema import records, refusals
from notifications import read_inbox
from tests.api.conftest import TOKEN_ENV, ServedApp, unique
from tests.conftest import TestDatabase
from tests.engine.conftest import make_project, wait_for
from tests.triggers.payloads import alertmanager as am_body

#: traffic-surge's owner role (sre-lead) has tom-becker as its primary in config/roles.yaml
OWNER = "tom-becker"
WHY = "the alert has no label `service`"


@dataclass
class Site:
    """A site of its own, served: its engine, the monitor's client, the inbox, and a `sop` command's environment."""

    engine: Any
    monitor: httpx.Client
    root: Path
    env: dict[str, str]

    def inbox(self, person: str) -> list[dict[str, Any]]:
        return read_inbox(person, self.root / "var" / "inbox")

    def refusals(self) -> list[dict[str, Any]]:
        with self.engine.ledger.read() as conn:
            return [{**json.loads(r.data), "actor": r.actor} for r in conn.execute(
                sa.select(records.c.data, records.c.actor).where(records.c.kind == "trigger_refused")
                .order_by(records.c.seq))]


@pytest.fixture
def site(database: TestDatabase, repo_root: Path, tmp_path: Path, token_env: dict[str, str],
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    root = make_project(repo_root, tmp_path / "site")
    monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
    url = database.url_at(root / "var" / "ledger.db")
    ledger = Ledger(url)
    ledger.migrate()
    engine = build_engine(load_library(root), ledger=ledger, background_pages=True)
    served = ServedApp(create_app(engine, env=token_env))
    monitor = httpx.Client(base_url=served.url, timeout=30,
                           headers={"Authorization": f"Bearer {token_env[TOKEN_ENV['alertmanager']]}"})
    yield Site(engine, monitor, root, {"SOP_HOME": str(root), "SOP_DATABASE_URL": url,
                                       "SOP_INBOX_DIR": str(root / "var" / "inbox")})
    monitor.close()
    served.stop()
    engine.pager.close()
    ledger.dispose()


def overload_without_service() -> dict[str, Any]:
    """ServerOverload as an alerting rule that forgot the `service` label sends it (traffic-surge reads it)."""
    return am_body({"labels": {"alertname": "ServerOverload", "severity": "page", "host": unique("host")}})


def test_an_alert_refused_for_a_missing_label_pages_its_owner_once_an_hour_and_is_recorded(site: Site, sop) -> None:
    answer = site.monitor.post("/v1/alerts/alertmanager", json=overload_without_service())
    assert answer.status_code == 200, answer.text
    [outcome] = answer.json()["outcomes"]
    assert (outcome["status"], outcome["sop"], outcome["owner_paged"]) == ("refused", "traffic-surge", True)

    # the owner's phone: one line that says which SOP did not start and why, then how to start it by hand
    [page] = wait_for(lambda: site.inbox(OWNER), 10, f"the refusal's page in {OWNER}'s inbox")
    assert page["title"] == f"[P2] Traffic surge did not start: {WHY}"
    assert "sop run traffic-surge -p service=…" in page["body"]
    assert "/board/start/traffic-surge" in page["body"]
    assert "`alertname`: ServerOverload" in page["body"] and "`severity`: page" in page["body"]
    assert "Fix the alerting rule" in page["body"]

    # the same alert again within the hour: recorded and counted, nobody paged again
    again = site.monitor.post("/v1/alerts/alertmanager", json=overload_without_service()).json()["outcomes"]
    assert [(o["status"], o["owner_paged"]) for o in again] == [("refused", False)]
    first, second = site.refusals()
    assert (first["sop"], first["trigger"], first["source"], first["paged"], first["count"]) == \
        ("traffic-surge", 0, "alertmanager", True, 1)
    assert (second["paged"], second["count"]) == (False, 2)
    assert first["actor"] == "token:alertmanager" and first["labels"]["alertname"] == "ServerOverload"
    assert first["problems"] == outcome["problems"]

    # the page's delivery is recorded too (no run), and the chain verifies
    wait_for(lambda: _delivered(site), 10, "the refusal page's notification record")
    time.sleep(0.3)  # a second page would have been on its way by now
    assert len(site.inbox(OWNER)) == 1 and site.inbox("zhao-lei") == []  # the role's primary only, once
    assert Audit(site.engine.ledger).verify().ok

    # where people look: `sop status` says it in one line, `sop audit refused` lists each
    status = sop("status", env=site.env)
    assert status.returncode == 0, status.stderr
    [line] = [line for line in status.stdout.splitlines() if "refused" in line]
    assert f"2 alerts refused in the last 24 h: traffic-surge — {WHY}" in line
    listed = json.loads(sop("audit", "refused", "--json", env=site.env).stdout)
    assert [(r["sop"], r["paged"], r["count"]) for r in listed] == [("traffic-surge", True, 1),
                                                                   ("traffic-surge", False, 2)]


def _delivered(site: Site) -> bool:
    with site.engine.ledger.read() as conn:
        rows = [json.loads(d) for d in conn.execute(sa.select(records.c.data).where(records.c.kind == "notification"))
                .scalars()]
    return any(r.get("notification") == "trigger_refused" and any(x["ok"] for x in r["results"]) for r in rows)


def test_a_burst_of_the_same_refused_alert_pages_once_and_an_hour_later_pages_again(site: Site) -> None:
    """Eight at once (the intake thread commits them together): one page, eight records counted 1…8; once the hour
    since that page has passed, the next one pages again."""
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: site.monitor.post("/v1/alerts/alertmanager", json=overload_without_service()),
                                range(8)))
    paged = [o["owner_paged"] for a in answers for o in a.json()["outcomes"]]
    assert sorted(paged) == [False] * 7 + [True]
    assert sorted(r["count"] for r in site.refusals()) == list(range(1, 9))
    wait_for(lambda: site.inbox(OWNER), 10, "the burst's one page")

    with site.engine.ledger.transaction() as tx:  # the hour passes (on the engine's clock, as a drill compresses it)
        tx.conn.execute(refusals.update().values(paged_at=site.engine.clock.now() - timedelta(minutes=61)))
    [later] = site.monitor.post("/v1/alerts/alertmanager", json=overload_without_service()).json()["outcomes"]
    assert later["owner_paged"] is True and site.refusals()[-1]["count"] == 1
    wait_for(lambda: len(site.inbox(OWNER)) == 2, 10, "the next hour's page")
    assert Audit(site.engine.ledger).verify().ok
