"""The ledger's database stops while the API runs: a webhook is told to send again (503, Retry-After), not a 500."""

from __future__ import annotations

import logging

import httpx
import pytest

from flows.api import create_app
from flows.engine.transitions import Engine
from flows.language.library import Library
from flows.ledger import Ledger
from tests.api.conftest import TOKEN_ENV, ServedApp, unique
from tests.postgres import PostgresCluster

pytestmark = pytest.mark.postgresql_only("stops a PostgreSQL cluster of its own under the API")


def test_an_alert_while_the_database_is_down_is_a_503_to_send_again(library: Library, token_env: dict[str, str],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    cluster = PostgresCluster().start()
    served = None
    try:
        ledger = Ledger(cluster.database("away"))
        ledger.migrate()
        engine = Engine(library, ledger)
        served = ServedApp(create_app(engine, env=token_env))
        client = httpx.Client(base_url=served.url, timeout=30,
                              headers={"Authorization": f"Bearer {token_env[TOKEN_ENV['alertmanager']]}"})
        labels = {"alertname": "HighErrorRate", "severity": "critical", "service": unique("svc")}
        alert = {"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": labels}]}
        assert client.post("/v1/alerts/alertmanager", json=alert).status_code == 200
        cluster.stop("immediate")  # the database host is gone
        caplog.set_level(logging.ERROR, "sop.api")
        away = client.post("/v1/alerts/alertmanager", json=alert)
        assert away.status_code == 503, away.text  # Alertmanager sends a 5xx again; a 500 said "our bug"
        assert away.headers["Retry-After"] == "5"
        assert "database cannot be reached now; send this request again" in away.json()["error"]
        link = engine.links.step_link("wang-fang", "r-away", "assess")
        secret = link.rsplit("/s/", 1)[1]
        assert httpx.get(f"{served.url}/s/{secret}", timeout=30).status_code == 503  # its page reads the ledger
        logged = [r for r in caplog.records if "request_failed" in r.getMessage()]
        assert logged and all(r.exc_info is None for r in logged)  # one line each, no traceback
        assert any("path=/s/…" in r.getMessage() for r in logged)
        assert not any(secret in r.getMessage() for r in logged)  # a live link in the log is anyone's
    finally:
        if served is not None:
            served.stop()
        cluster.stop()
