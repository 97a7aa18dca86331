"""A real Alertmanager (Debian's prometheus-alertmanager) delivering to the API: start, attach, resolve.

The test starts Alertmanager on 127.0.0.1 with a webhook receiver pointed at the API
(bearer token in ``http_config``), short group/repeat intervals, clustering off, and
posts alerts to Alertmanager's own API as Prometheus would. ``make test`` installs the
package when it is missing (``make deps-system``).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from flows.ledger.schema import records, runs
from tests.api.conftest import Api, unique
from tests.support import Alertmanager

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def alertmanager(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    if BINARY is None:
        pytest.skip(
            "LOUD SKIP: prometheus-alertmanager is not installed and `make test` could not install it "
            "(needs root and the Debian archive): run `sudo apt-get install prometheus-alertmanager`"
        )
    am = Alertmanager(
        BINARY,
        tmp_path_factory.mktemp("alertmanager"),
        f"{api.url}/v1/alerts/alertmanager",
        api.secrets["alertmanager"],
    )
    yield am
    am.stop()


def run_for(api: Api, key: str) -> dict[str, Any] | None:
    with api.engine.ledger.read() as conn:
        rows = conn.execute(sa.select(runs).where(runs.c.dedup_key == key)).all()
    assert len(rows) <= 1, f"{len(rows)} runs for one dedup key"
    return dict(rows[0]._mapping) if rows else None


def records_of(api: Api, run_id: str, kind: str) -> list[dict[str, Any]]:
    with api.engine.ledger.read() as conn:
        rows = conn.execute(sa.select(records).where((records.c.run_id == run_id) & (records.c.kind == kind)))
        return [{**dict(r._mapping), "data": json.loads(r.data)} for r in rows]


def test_an_alert_through_alertmanager_starts_attaches_and_resolves(api: Api, alertmanager: Alertmanager) -> None:
    service = unique("svc")
    labels = {"alertname": "HighErrorRate", "severity": "critical", "service": service}
    alertmanager.post(labels)
    run = wait_for(lambda: run_for(api, service), 10, "the run Alertmanager's webhook starts")
    assert run["sop_id"] == "traffic-surge" and run["initiator"] == "token:alertmanager"
    trigger = json.loads(run["trigger"])
    assert trigger["source"] == "alertmanager" and trigger["labels"] == labels and trigger["fingerprint"]

    alertmanager.post(labels)  # Prometheus keeps sending; Alertmanager repeats the notification
    wait_for(lambda: run_for(api, service)["repeats"] >= 1, 10, "a repeat to attach to the run")
    assert records_of(api, run["id"], "trigger_repeated")

    alertmanager.post(labels, resolved=True)
    [note] = wait_for(lambda: records_of(api, run["id"], "alert_resolved"), 10, "the resolution to be recorded")
    assert note["data"]["labels"]["service"] == service and note["data"]["source"] == "alertmanager"
    assert run_for(api, service)["status"] == "running"  # one run, still open: people close it


def test_an_alert_no_sop_wants_is_answered_and_leaves_no_run(
    api: Api, alertmanager: Alertmanager, caplog: pytest.LogCaptureFixture
) -> None:
    service = unique("svc")
    with caplog.at_level(logging.INFO, logger="sop.intake"):
        alertmanager.post({"alertname": "HighErrorRate", "severity": "info", "service": service})
        wait_for(
            lambda: any("outcome=unrouted" in r.getMessage() for r in caplog.records),
            10,
            "the API to answer the unrouted alert",
        )
    assert run_for(api, service) is None


def silenced_records(api: Api, silence_id: str) -> list[dict[str, Any]]:
    with api.engine.ledger.read() as conn:
        rows = conn.execute(sa.select(records).where(records.c.kind == "trigger_silenced"))
        found = [{**dict(r._mapping), "data": json.loads(r.data)} for r in rows]
    return [r for r in found if r["data"]["silence"] == silence_id]


def test_an_alert_through_alertmanager_that_a_silence_holds_is_recorded_and_starts_no_run(
    api: Api, alertmanager: Alertmanager
) -> None:
    from flows.engine.silences import SilenceBook
    from flows.language.actors import Actor

    service = unique("svc")
    silence = SilenceBook(api.engine.ledger).create(f"alertname=~HighErrorRate|ServerOverload,service={service}", "2h",
                                                    "load test of the new cart", Actor("li-wei", via="cli"))
    labels = {"alertname": "HighErrorRate", "severity": "critical", "service": service}
    alertmanager.post(labels)
    [held] = wait_for(lambda: silenced_records(api, silence.id), 10, "the silenced alert to be recorded")
    assert held["run_id"] is None and held["actor"] == "token:alertmanager"
    assert held["data"]["sop"] == "traffic-surge" and held["data"]["silenced_by"] == "li-wei"
    assert held["data"]["signal"]["labels"] == labels and held["data"]["reason"] == "load test of the new cart"
    assert run_for(api, service) is None
