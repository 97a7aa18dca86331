"""Monitoring's endpoints over HTTP: Grafana's real payload, events, metrics, a storm, two API processes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from flows.ledger import Ledger
from flows.ledger.schema import records, runs
from tests.api.conftest import TOKEN_ENV, Api, unique
from tests.support import api_process, free_port, wait_healthy
from tests.triggers.payloads import GRAFANA
from tests.triggers.payloads import alertmanager as am_body


def keyed_runs(ledger: Ledger, prefix: str) -> list[dict]:
    with ledger.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(runs).where(runs.c.dedup_key.like(f"{prefix}%")))]


def record_count(api: Api) -> int:
    with api.engine.ledger.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one()


def test_grafana_payload_in_its_real_shape(api: Api) -> None:
    body = copy.deepcopy(GRAFANA)
    brand = unique("brand")
    body["alerts"][0]["labels"]["brand"] = brand
    raw = json.dumps(body).encode()
    answer = api.as_(None).post("/v1/alerts/grafana", content=raw, headers=api.grafana(raw))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["alerts"] == 2
    # the firing spike starts crisis-pr; the resolved slow page has no open run to record on
    assert [(o["status"], o["sop"]) for o in result["outcomes"]] == [
        ("started", "crisis-pr"),
        ("no_open_run", "page-speed"),
    ]
    [run] = keyed_runs(api.engine.ledger, brand)
    assert run["sop_id"] == "crisis-pr"


def test_a_bad_alert_in_a_batch_refuses_the_whole_batch(api: Api) -> None:
    service = unique("svc")
    body = am_body(
        {"labels": {"alertname": "HighErrorRate", "severity": "critical", "service": service}},
        {"labels": {"alertname": "HighErrorRate", "severity": "critical", "service": f"{service}-2"}},
    )
    body["alerts"][1]["status"] = "burning"
    before = record_count(api)
    answer = api.as_("alertmanager").post("/v1/alerts/alertmanager", json=body)
    assert answer.status_code == 422 and answer.json()["field"] == "body.alerts.1.status"
    assert record_count(api) == before and keyed_runs(api.engine.ledger, service) == []
    body["version"] = "3"
    body["alerts"][1]["status"] = "firing"
    assert api.as_("alertmanager").post("/v1/alerts/alertmanager", json=body).json()["field"] == "body.version"


def test_an_alert_without_the_label_its_trigger_reads_is_refused_naming_the_label(api: Api) -> None:
    """traffic-surge's trigger reads `trigger.labels.service`; an alerting rule that forgot the label starts nothing,
    and the answer (and the log) says so in the alert's words, not Jinja's ("'dict object' has no attribute")."""
    body = am_body({"labels": {"alertname": "ServerOverload", "severity": "page", "host": unique("host")}})
    answer = api.as_("alertmanager").post("/v1/alerts/alertmanager", json=body)
    assert answer.status_code == 200, answer.text
    [outcome] = answer.json()["outcomes"]
    assert (outcome["status"], outcome["sop"], outcome["run"]) == ("refused", "traffic-surge", None)
    assert outcome["problems"] == [
        "input `service`: '{{ trigger.labels.service }}' cannot be rendered from the alert: the alert has no label "
        "`service` (its labels: alertname, host, severity): set it where the alert is made, or write "
        "`{{ trigger.labels.service | default('…') }}` in the trigger's inputs"]


def test_an_unrouted_alert_is_told_which_trigger_nearly_took_it_and_why(api: Api) -> None:
    """An author testing her alert by hand (docs/running.md, curl) sees why it started nothing: traffic-surge's trigger
    names `ServerOverload` and wants a severity the alerting rule did not set, or set otherwise."""
    service = unique("svc")
    bodies = [am_body({"labels": {"alertname": "ServerOverload", "service": service}}),
              am_body({"labels": {"alertname": "ServerOverload", "severity": "warning", "service": service}}),
              am_body({"labels": {"alertname": "NobodyWantsThis", "severity": "critical"}})]
    answers = [api.as_("alertmanager").post("/v1/alerts/alertmanager", json=body) for body in bodies]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    lacking, other, unknown = ([(o["status"], o.get("problems")) for o in a.json()["outcomes"]] for a in answers)
    assert lacking == [("unrouted", ["traffic-surge (triggers[0]) wants severity='~critical|page'; the alert has no "
                                     "label `severity` (its labels: alertname, service)"])]
    assert other == [("unrouted", ["traffic-surge (triggers[0]) wants severity='~critical|page'; the alert has "
                                   "severity='warning'"])]
    assert unknown == [("unrouted", None)]  # an alert no SOP names: nothing near
    assert keyed_runs(api.engine.ledger, service) == []


def test_an_event_starts_its_sop(api: Api) -> None:
    platform = unique("platform")
    answer = api.as_("alertmanager").post(
        "/v1/events",
        json={"name": "platform.algorithm_changed", "key": platform, "values": {"platform": platform, "region": "cn"}},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"] == {"started": 1}
    [run] = keyed_runs(api.engine.ledger, platform)
    assert run["sop_id"] == "creative-refresh"
    bad = api.as_("alertmanager").post("/v1/events", json={"name": "x y", "values": {"nested": {"no": 1}}})
    assert bad.status_code == 422 and {p["field"] for p in bad.json()["problems"]} >= {
        "body.name",
        "body.values.nested",
    }


def test_metric_samples_fire_a_rule(api: Api) -> None:
    sku = unique("sku")
    samples = [
        {"metric": "inventory_cover_days", "value": 9, "at": "2026-11-20T08:10:00+08:00", "labels": {"sku": sku}},
        {"metric": "inventory_cover_days", "value": 6.5, "timestamp": 1795600000, "labels": {"sku": sku}},
    ]
    answer = api.as_("alertmanager").post("/v1/metrics", json={"samples": samples})
    assert answer.status_code == 200, answer.text
    assert answer.json()["samples"] == 2 and answer.json()["counts"] == {"started": 1}
    [run] = keyed_runs(api.engine.ledger, sku)
    assert run["sop_id"] == "inventory-warning"
    before = record_count(api)
    bad = api.as_("alertmanager").post(
        "/v1/metrics",
        json={"samples": [{"metric": "inventory_cover_days", "value": 1, "at": "yesterday", "labels": {"sku": sku}}]},
    )
    assert bad.status_code == 422 and bad.json()["field"] == "body.samples.0.at"
    assert api.as_("alertmanager").post("/v1/metrics", json={"samples": []}).json()["field"] == "body.samples"
    assert record_count(api) == before


def test_a_storm_of_10000_alerts_over_100_keys_starts_exactly_100_runs(api: Api) -> None:
    storm = unique("storm")
    alerts = [
        {
            "labels": {
                "alertname": "ServerOverload",
                "severity": "page",
                "service": f"{storm}-{i % 100:03d}",
                "instance": f"10.0.{i // 250}.{i % 250}",
            }
        }
        for i in range(10_000)
    ]
    batches = [am_body(*alerts[i : i + 500]) for i in range(0, len(alerts), 500)]
    client = api.as_("alertmanager")

    def post(body: dict) -> dict:
        answer = client.post("/v1/alerts/alertmanager", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()["counts"]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        counts = list(pool.map(post, batches))
    elapsed = time.perf_counter() - started
    assert sum(c.get("started", 0) for c in counts) == 100
    assert sum(c.get("attached", 0) for c in counts) == 9_900
    found = keyed_runs(api.engine.ledger, storm)
    assert len(found) == 100 and sum(r["repeats"] for r in found) == 9_900
    print(f"storm: 10,000 alerts in {elapsed:.1f}s ({10_000 / elapsed:.0f}/s)")


@pytest.fixture
def two_api_processes(repo_root: Path, token_env: dict[str, str], tmp_path: Path, database_url: str):  # noqa: ANN201
    """Two API processes (uvicorn, the app factory) on one ledger, no Prefect."""
    Ledger(database_url).migrate()
    env = {
        **os.environ,
        **token_env,
        "SOP_HOME": str(repo_root),
        "SOP_DATABASE_URL": database_url,
        "SOP_INBOX_DIR": str(tmp_path / "inbox"),
        "SOP_API_LAUNCH": "0",
    }
    ports = [free_port(), free_port()]
    procs = [api_process(env, port, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for port in ports]
    try:
        for proc, port in zip(procs, ports, strict=True):
            wait_healthy(proc, f"http://127.0.0.1:{port}", 30)
        yield [f"http://127.0.0.1:{port}" for port in ports], Ledger(database_url)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def test_two_api_processes_receiving_the_same_alert_start_one_run(two_api_processes, token_env) -> None:  # noqa: ANN001
    urls, ledger = two_api_processes
    service = unique("race")
    body = am_body({"labels": {"alertname": "HighErrorRate", "severity": "critical", "service": service}})
    headers = {"Authorization": f"Bearer {token_env[TOKEN_ENV['alertmanager']]}"}
    barrier = threading.Barrier(10)
    statuses: list[str] = []

    def post(k: int) -> None:
        with httpx.Client(base_url=urls[k % 2], headers=headers, timeout=30) as client:
            barrier.wait()
            answer = client.post("/v1/alerts/alertmanager", json=body)
            statuses.extend(o["status"] for o in answer.json()["outcomes"])

    threads = [threading.Thread(target=post, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["attached"] * 9 + ["started"]
    [run] = keyed_runs(ledger, service)
    assert run["repeats"] == 9
    ledger.dispose()
