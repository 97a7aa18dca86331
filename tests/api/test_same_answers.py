"""The same answer on both databases for what one of them alone would refuse: NUL characters, strings longer
than their column, integers past 32 bits, times without a zone. Each is refused at the door with a located 4xx
(nothing written), or stored and read back the same, on SQLite and on PostgreSQL (this folder runs on both).

Seen before on PostgreSQL only: a cancel reason of 200+ characters and a NUL in a note were 500s.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from flows.ledger import utc
from flows.ledger.schema import metric_samples
from tests.api.conftest import Api, unique
from tests.api.test_hardening import JSON, refused
from tests.api.test_runs import recorded, report, start

# --- NUL: refused where it is, in every kind of body ----------------------------------------------------


@pytest.mark.parametrize(("step_body", "field"), [
    ({"values": {"severity": "high", "topic": "late\u0000parcels"}}, "body.values.topic"),
    ({"note": "checked\u0000"}, "body.note"),
    ({"outcome": "rejected", "note": "no\u0000"}, "body.note"),
    ({"evidence": ["https://wiki.example/\u0000"]}, "body.evidence.0"),
])
def test_a_nul_in_a_report_is_refused_where_it_is(api: Api, step_body: dict, field: str) -> None:
    run = start(api, brand=unique())["run"]
    body = report(api, "crisis-pr", "assess", actor="wang-fang")
    body = {**body, **step_body, "values": {**body["values"], **step_body.get("values", {})}}
    refused(api, "ops-console", f"/v1/runs/{run}/steps/assess", json.dumps(body).encode(), 422, field, "NUL")
    assert recorded(api, run, "step_done") == []


def test_a_nul_in_a_cancel_reason_is_refused(api: Api) -> None:
    run = start(api, brand=unique())["run"]
    refused(api, "ops-console", f"/v1/runs/{run}/cancel", b'{"reason": "drill\\u0000over"}', 422, "body.reason", "NUL")
    assert api.as_("ops-console").get(f"/v1/runs/{run}").json()["status"] == "running"


# --- long strings: taken whole, or refused with the limit named -------------------------------------------


def test_a_cancel_reason_as_long_as_the_api_takes_is_kept_whole(api: Api) -> None:
    run = start(api, brand=unique())["run"]
    reason = "the supplier called back: " + "details " * 246  # 1,994 characters, under the 2,000 taken
    answer = api.as_("ops-console").post(f"/v1/runs/{run}/cancel", json={"reason": reason})
    assert answer.status_code == 200, answer.text
    shown = api.as_("ops-console").get(f"/v1/runs/{run}").json()
    assert shown["status"] == "cancelled" and shown["outcome"].startswith("cancelled: the supplier called back")
    [(_, data)] = recorded(api, run, "run_cancelled")
    assert data["reason"] == reason.strip()
    refused(api, "ops-console", f"/v1/runs/{start(api, brand=unique())['run']}/cancel",
            json.dumps({"reason": "x" * 2001}).encode(), 422, "body.reason", "at most 2000 characters")


def test_an_alert_label_of_ten_thousand_characters_starts_one_run_its_repeat_attaches(api: Api) -> None:
    page = unique("/p") + "/" + "segment" * 1430
    alert = {"status": "firing", "labels": {"alertname": "DetailPageSlow", "page": page}}
    body = {"version": "4", "status": "firing", "alerts": [alert]}
    first = api.as_("alertmanager").post("/v1/alerts/alertmanager", json=body)
    assert first.status_code == 200, first.text
    [started] = first.json()["outcomes"]
    again = api.as_("alertmanager").post("/v1/alerts/alertmanager", json=body)
    assert again.status_code == 200, again.text
    [attached] = again.json()["outcomes"]
    assert (started["status"], attached["status"]) == ("started", "attached")
    assert attached["run"] == started["run"]
    [(_, data)] = recorded(api, started["run"], "run_started")
    assert data["trigger"]["labels"]["page"] == page  # the whole label in the ledger


def test_a_run_id_of_five_thousand_characters_is_not_found(api: Api) -> None:
    long_id = "a" * 5000
    assert api.as_("audit-readonly").get(f"/v1/runs/{long_id}").status_code == 404
    refused(api, "ops-console", f"/v1/runs/{long_id}/cancel", b'{"reason": "x"}', 404, "path.run", "no run")


# --- integers: 64 bits kept exactly, more refused where it is ---------------------------------------------


def test_an_integer_past_32_bits_is_kept_exactly_past_64_refused(api: Api) -> None:
    big = 2**40 + 7  # past PostgreSQL's integer, inside a JSON reader's and Prefect's exact range
    run = start(api, brand=unique(), mentions_per_day=big)["run"]
    assert api.as_("ops-console").get(f"/v1/runs/{run}").json()["inputs"]["mentions_per_day"] == big
    [(_, data)] = recorded(api, run, "run_started")
    assert data["inputs"]["mentions_per_day"] == big
    body = b'{"sop": "crisis-pr", "inputs": {"brand": "b", "mentions_per_day": ' + str(2**63).encode() + b"}}"
    refused(api, "ops-console", "/v1/runs", body, 422, "body.inputs.mentions_per_day", "64-bit")


# --- times: a time without a zone is UTC, the same instant on both ------------------------------------------


def test_a_sample_time_without_a_zone_is_taken_as_utc(api: Api) -> None:
    at = datetime.fromtimestamp(int(time.time()) - 120, UTC)
    site = unique("site")
    batch = {"samples": [{"metric": "daily_uv", "value": 1, "at": at.replace(tzinfo=None).isoformat(),
                          "labels": {"site": site}}]}
    answer = api.as_("alertmanager").post("/v1/metrics", content=json.dumps(batch).encode(), headers=JSON)
    assert answer.status_code == 200, answer.text
    with api.engine.ledger.read() as conn:
        stored = conn.execute(sa.select(metric_samples.c.at).where(metric_samples.c.labels.contains(site))).scalar_one()
    assert utc(stored) == at
