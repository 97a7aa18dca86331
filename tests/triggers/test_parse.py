"""The parse stage: real webhook bodies in, common alerts out; a bad field is named by its path."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from flows.triggers import alertmanager, grafana
from tests.triggers.payloads import GRAFANA, GRAFANA_LEGACY
from tests.triggers.payloads import alertmanager as am_body


def test_alertmanager_v4_body_becomes_alerts() -> None:
    body = am_body(
        {
            "labels": {"alertname": "HighErrorRate", "severity": "critical", "service": "cart"},
            "fingerprint": "4b6f3d2a1c0e9f8d",
        },
        {"labels": {"alertname": "HighErrorRate", "severity": "critical", "service": "pay"}, "status": "resolved"},
    )
    body["someFutureField"] = {"ignored": True}
    alerts = alertmanager.parse(body)
    assert [a.status for a in alerts] == ["firing", "resolved"]
    first = alerts[0]
    assert first.source == "alertmanager" and first.labels["service"] == "cart"
    assert first.fingerprint == "4b6f3d2a1c0e9f8d" and first.ends_at is None  # Go's zero time: not ended
    assert alerts[1].ends_at == "2026-11-22T10:06:03.157076+08:00"
    payload = first.payload()
    assert payload["kind"] == "alert" and payload["labels"]["severity"] == "critical"
    assert payload["annotations"]["summary"] and payload["generator_url"].startswith("http://prometheus")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda b: b.update(version="3"), ("version",)),
        (lambda b: b["alerts"][1].update(status="burning"), ("alerts", 1, "status")),
        (lambda b: b["alerts"][0]["labels"].update(service=42), ("alerts", 0, "labels", "service")),
        (lambda b: b.pop("alerts"), ("alerts",)),
    ],
)
def test_alertmanager_bad_field_is_named(change, where) -> None:  # noqa: ANN001
    body = am_body({"labels": {"alertname": "A"}}, {"labels": {"alertname": "B"}})
    change(body)
    with pytest.raises(ValidationError) as caught:
        alertmanager.parse(body)
    assert where in [tuple(e["loc"]) for e in caught.value.errors()]


def test_grafana_unified_body_keeps_its_extras() -> None:
    alerts = grafana.parse(copy.deepcopy(GRAFANA))
    assert [(a.source, a.status, a.labels["alertname"]) for a in alerts] == [
        ("grafana", "firing", "NegativeSentimentSpike"),
        ("grafana", "resolved", "DetailPageSlow"),
    ]
    spike = alerts[0]
    assert spike.values == {"B": 312.0, "C": 1}
    assert spike.annotations["dashboard_url"] == "https://grafana.local/d/pr-overview?orgId=1"
    assert spike.annotations["panel_url"].endswith("viewPanel=3")
    assert spike.annotations["value_string"].startswith("[ var='B'")
    assert alerts[1].annotations.get("dashboard_url") is None  # empty strings are not kept


def test_grafana_legacy_body_is_one_alert_named_after_the_rule() -> None:
    [alert] = grafana.parse(copy.deepcopy(GRAFANA_LEGACY))
    assert alert.status == "firing" and alert.labels == {"alertname": "DetailPageSlow", "page": "/p/42"}
    assert alert.values == {"detail_page_load_seconds": 1.8}
    ok = {**GRAFANA_LEGACY, "state": "ok"}
    assert grafana.parse(ok)[0].status == "resolved"
    assert grafana.parse({**GRAFANA_LEGACY, "state": "no_data"}) == []


def test_grafana_bad_field_is_named() -> None:
    body = copy.deepcopy(GRAFANA)
    body["alerts"][0]["values"] = {"B": "lots"}
    with pytest.raises(ValidationError) as caught:
        grafana.parse(body)
    assert caught.value.errors()[0]["loc"][:3] == ("alerts", 0, "values")


def test_alerts_without_fingerprint_get_a_stable_one() -> None:
    body = am_body({"labels": {"alertname": "A", "x": "1"}})
    body["alerts"][0]["fingerprint"] = ""
    one, again = alertmanager.parse(body)[0], alertmanager.parse(body)[0]
    assert one.fingerprint and one.fingerprint == again.fingerprint
