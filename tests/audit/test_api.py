"""An auditor's tool reads the same audit over HTTP, with a read-only token; nothing there can change a run."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from flows.audit import Audit
from flows.audit.export import from_csv, to_json
from flows.audit.report import Compliance
from flows.clock import ManualClock
from flows.engine.transitions import Engine
from flows.language.library import load_library
from flows.ledger import Ledger
from tests.audit.conftest import NOW, Scenario

api = pytest.importorskip("flows.api")
from tests.api.conftest import ServedApp  # noqa: E402  (the API tests' uvicorn-in-a-thread server)

AUDITOR, MONITOR = secrets.token_hex(16), secrets.token_hex(16)


@pytest.fixture(scope="module")
def client(scenario: Scenario) -> Iterator[httpx.Client]:
    """The real API over the scenario's ledger, served by uvicorn; the client carries the auditor's token."""
    ledger = Ledger(scenario.url, ManualClock(NOW))
    engine = Engine(load_library(scenario.root), ledger, clock=ledger.clock)
    served = ServedApp(api.create_app(engine, env={"SOP_TOKEN_AUDITOR": AUDITOR, "SOP_TOKEN_MONITOR": MONITOR}))
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {AUDITOR}"}, timeout=30) as http:
        yield http
    served.stop()
    ledger.dispose()


def test_the_runs_are_the_same_lines_as_the_cli(client: httpx.Client, audit: Audit, scenario: Scenario) -> None:
    answer = client.get("/v1/audit/runs")
    assert answer.status_code == 200
    assert answer.text == to_json([line.to_dict() for line in audit.lines()])
    routine = client.get("/v1/audit/runs", params={"class": "routine", "since": "2026-03-02", "format": "csv"})
    assert routine.headers["content-type"].startswith("text/csv")
    assert [line.run for line in from_csv(routine.text, type(audit.lines()[0]))] == [scenario.runs["D"], scenario.runs["E"]]


def test_one_run_in_full(client: httpx.Client, scenario: Scenario) -> None:
    doc = client.get(f"/v1/audit/runs/{scenario.runs['B'][:5]}").json()
    assert doc["run"] == scenario.runs["B"] and doc["trigger"]["alertname"] == "HighErrorRate"
    assert doc["steps"][0]["escalations"][1]["message"] == "escalated"
    missing = client.get("/v1/audit/runs/ffffffffff")
    assert missing.status_code == 404
    assert missing.json()["field"] == "path.run" and "no run `ffffffffff`" in missing.json()["error"]


def test_the_report_in_json_csv_and_html(client: httpx.Client, audit: Audit) -> None:
    expected, _ = audit.report()
    figures = client.get("/v1/audit/report").json()
    assert [Compliance(**r) for r in figures["by_sop"]] == expected.by_sop
    csv_rows = from_csv(client.get("/v1/audit/report", params={"format": "csv"}).text, Compliance)
    assert csv_rows == expected.rows
    page = client.get("/v1/audit/report", params={"format": "html", "timelines": 2})
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count('class="gantt"') == 2 and "4 more run(s) not drawn" in page.text
    refused = client.get("/v1/audit/report", params={"class": "urgent"})
    assert refused.status_code == 422 and refused.json()["field"] == "query.class"


def test_the_report_leaves_drills_out_when_asked(client: httpx.Client, audit: Audit, scenario: Scenario) -> None:
    figures = client.get("/v1/audit/report", params={"drills": "exclude", "format": "csv"})
    assert figures.status_code == 200
    assert from_csv(figures.text, Compliance) == audit.report(drills="exclude")[0].rows
    assert next(r for r in from_csv(figures.text, Compliance) if r.key == "all").runs == 5  # C, the drill, left out
    assert client.get("/v1/audit/report", params={"drills": "exclude"}).json()["drills"] == "exclude"
    assert "drills left out" in client.get("/v1/audit/report", params={"drills": "exclude", "format": "html"}).text
    assert "1 drill counted with the real runs" in client.get("/v1/audit/report", params={"format": "html"}).text
    only = client.get("/v1/audit/runs", params={"drills": "only"}).json()
    assert [(r["run"], r["drill"]) for r in only] == [(scenario.runs["C"], True)]
    typo = client.get("/v1/audit/runs", params={"sop": "audit-incidnt"})
    assert typo.status_code == 422 and typo.json()["field"] == "query.sop"
    refused = client.get("/v1/audit/report", params={"drills": "skip"})
    assert refused.status_code == 422 and refused.json()["field"] == "query.drills"
    assert "unknown drills choice `skip`" in refused.json()["error"]


def test_verify_and_history(client: httpx.Client) -> None:
    checked = client.get("/v1/audit/verify").json()
    assert checked["ok"] is True and checked["first_break"] is None
    anchored = client.get("/v1/audit/verify", params={"anchor": f"{checked['head']['seq']}:{'0' * 64}"}).json()
    assert anchored["ok"] is False and anchored["first_break"]["kind"] == "rewritten"
    history = client.get("/v1/audit/sops/audit-routine/history").json()
    assert [p["version"] for p in history["periods"]] == ["1", "2"] and history["current_ran"] is True
    assert client.get("/v1/audit/sops/crisis-pr/history").status_code == 404


def test_a_token_without_read_rights_or_no_token_is_refused(client: httpx.Client) -> None:
    monitor = client.get("/v1/audit/runs", headers={"Authorization": f"Bearer {MONITOR}"})
    assert monitor.status_code == 403 and "needs" in monitor.json()["error"]
    anonymous = httpx.get(f"{client.base_url}/v1/audit/verify")
    assert anonymous.status_code == 401


def test_the_audit_cannot_write(client: httpx.Client, scenario: Scenario) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert client.request(method, f"/v1/audit/runs/{scenario.runs['A']}").status_code == 405


@pytest.mark.parametrize("path", ["/v1/audit/runs", "/v1/audit/report"])
@pytest.mark.parametrize("params, field", [
    ({"since": "garbage"}, "query.since"),
    ({"until": "garbage"}, "query.until"),
    ({"since": "2026-03-02", "until": "last week-ish"}, "query.until"),
    ({"since": "2026-03-05", "until": "2026-03-02"}, "query.since"),  # the wrong order
    ({"since": "2026-02-30"}, "query.since"),  # a date's shape, no such day
    ({"since": "2026-13-01"}, "query.since"),
    ({"until": "2026-12-32"}, "query.until"),
    ({"since": "0001-01-01T00:00+05:00"}, "query.since"),  # before the year 1 in UTC
])  # fmt: skip
def test_a_window_that_does_not_parse_names_its_own_field(client: httpx.Client, path: str, params: dict[str, str],
                                                          field: str) -> None:
    refused = client.get(path, params=params)
    assert refused.status_code == 422 and refused.json()["field"] == field, refused.json()
