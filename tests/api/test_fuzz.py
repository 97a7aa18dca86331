"""The API fuzzed: every write endpoint gets malformed, oversized, deep, non-finite, wrongly typed and NUL-laden
bodies, and answers each with a 4xx ``{error, field, problems}``; the ledger does not change, and
``sop audit verify`` still passes.

Each generated body is a valid body of its endpoint with one defect (hypothesis picks the field
and the defect), or one whose bytes are broken (truncated, not UTF-8, not an object, random).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flows.ledger.schema import metric_samples, records
from tests.api.conftest import Api, unique
from tests.api.test_runs import report, start

#: defects that make any JSON value unacceptable wherever it stands (the raw JSON text of each)
HOSTILE_VALUES = [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", str(10**25), "9" * 5000,
    "[" * 40 + "]" * 40, "[" * 3000 + "]" * 3000, '{"a":' * 40 + "1" + "}" * 40,
    '"\\u0000"', '"nul\\u0000inside"', '"\\ud800"', '"\\udfff lone"', "[{}]",
]


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of every value in a JSON document (containers and scalars), the root excluded."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += leaves(item, (*path, i))
    return found


def with_value(document: Any, path: tuple[Any, ...], raw: str) -> bytes:
    """``document`` as JSON with the value at ``path`` replaced by the raw JSON text ``raw``."""
    marker = "\x1fHOSTILE\x1f"
    copy = json.loads(json.dumps(document))
    holder = copy
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = marker
    return json.dumps(copy).replace(json.dumps(marker), raw).encode()


def bodies(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Bodies an endpoint must refuse: its valid body with one hostile value, or broken bytes."""
    text = json.dumps(valid).encode()
    one_value = st.tuples(st.sampled_from(leaves(valid)), st.sampled_from(HOSTILE_VALUES)).map(
        lambda pv: with_value(valid, *pv))
    broken = st.one_of(
        st.integers(0, len(text) - 1).map(lambda n: text[:n]),  # truncated (empty included)
        st.binary(max_size=64).filter(lambda b: not _is_object(b)),  # random bytes
        st.sampled_from([b"\xff\xfe{}", json.dumps([valid]).encode(), b'"a string"', b"null", b"42", b"{} {}"]),
        st.sampled_from(HOSTILE_VALUES).map(lambda raw: raw.encode()),  # a hostile value as the whole body
    )
    return st.one_of(one_value, broken)


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


def ledger_state(api: Api) -> tuple[int, int]:
    with api.engine.ledger.read() as conn:
        return (conn.execute(sa.select(sa.func.count()).select_from(records)  # a checkpoint records no act
                             .where(records.c.kind != "checkpoint")).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(metric_samples)).scalar_one())


def endpoints(api: Api) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Every write endpoint: its token, its path and a valid body (a run is opened for the run endpoints)."""
    run = start(api, "crisis-pr", brand=unique())["run"]
    alert = {"status": "firing", "labels": {"alertname": "DetailPageSlow", "page": unique("/p")},
             "annotations": {"summary": "slow"}, "startsAt": "2026-11-20T08:00:00Z", "fingerprint": "f1"}
    return {
        "start": ("ops-console", "/v1/runs", {"sop": "crisis-pr", "inputs": {"brand": unique()}, "speed": 60}),
        "report": ("ops-console", f"/v1/runs/{run}/steps/assess", report(api, "crisis-pr", "assess",
                                                                          note="seen", actor="wang-fang")),
        "cancel": ("ops-console", f"/v1/runs/{run}/cancel", {"reason": "fuzzed"}),
        "alertmanager": ("alertmanager", "/v1/alerts/alertmanager",
                         {"version": "4", "status": "firing", "receiver": "sop", "alerts": [alert]}),
        "grafana": ("grafana", "/v1/alerts/grafana",
                    {"status": "firing", "alerts": [{**alert, "values": {"B": 1.5}}]}),
        "event": ("alertmanager", "/v1/events",
                  {"name": "experiment.concluded", "key": unique(), "values": {"verdict": "winner", "uplift_pct": 12}}),
        "metrics": ("alertmanager", "/v1/metrics",
                    {"samples": [{"metric": "daily_uv", "value": 1, "at": "2026-11-20T00:00:00Z",
                                  "labels": {"site": unique()}}]}),
    }


@pytest.fixture(scope="module")
def targets(api: Api) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return endpoints(api)


def check_refused(api: Api, token: str, path: str, body: bytes) -> None:
    before = ledger_state(api)
    if token == "grafana":  # Grafana's token signs each body: the fuzz reaches the parser
        answer = api.as_(None).post(path, content=body, headers=api.grafana(body))
    else:
        answer = api.as_(token).post(path, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500, (path, body[:200], answer.status_code, answer.text[:300])
    error = answer.json()
    assert set(error) == {"error", "field", "problems"} and error["error"], error
    assert error["field"] is None or error["field"].split(".")[0] in ("body", "path", "header"), error
    assert ledger_state(api) == before, (path, body[:200], answer.text[:300])


ENDPOINTS = ["start", "report", "cancel", "alertmanager", "grafana", "event", "metrics"]


@pytest.mark.parametrize("name", ENDPOINTS)
def test_every_write_endpoint_refuses_hostile_bodies_and_writes_nothing(
    api: Api, targets: dict[str, tuple[str, str, dict[str, Any]]], name: str
) -> None:
    token, path, valid = targets[name]

    @settings(max_examples=120, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(bodies(valid))
    @example(b"")
    @example(b"{")
    def hostile(body: bytes) -> None:
        check_refused(api, token, path, body)

    hostile()


@pytest.mark.parametrize("name", ENDPOINTS)
def test_every_write_endpoint_refuses_an_oversized_body(
    api: Api, targets: dict[str, tuple[str, str, dict[str, Any]]], name: str
) -> None:
    token, path, valid = targets[name]
    limit = api.engine.site.settings.api.max_body_bytes
    padded = {**valid, "padding": "x" * limit}
    check_refused(api, token, path, json.dumps(padded).encode())


def test_the_chain_verifies_after_the_fuzz(api: Api, sop: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """Runs last in this module (pytest keeps file order): whatever the fuzz did, the chain holds."""
    verified = sop("audit", "verify", env={"SOP_DATABASE_URL": api.engine.ledger.url})
    assert verified.returncode == 0, verified.stdout + verified.stderr


#: header values HTTP can carry (RFC 9110 field-value: visible ASCII, space, tab, obs-text 0x80-0xFF); a control
#: character is refused by the server's HTTP parser before the API sees the request
HEADER_TEXT = st.binary(min_size=1, max_size=80).map(
    lambda b: bytes(c for c in b if c == 9 or 32 <= c != 127).strip()).filter(bool)


def test_hostile_headers_are_refused_with_a_401(api: Api, targets: dict[str, tuple[str, str, dict[str, Any]]]) -> None:
    """Tokens, signatures and timestamps of any bytes: a 401 naming the header, never a 500, nothing written."""
    body = json.dumps(targets["grafana"][2]).encode()

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(st.sampled_from(["authorization", "signature", "timestamp"]), HEADER_TEXT)
    def hostile(which: str, value: bytes) -> None:
        headers = {b"Authorization": f"Bearer {api.secrets['grafana']}".encode(),
                   b"X-Grafana-Alerting-Signature": b"sha256=" + b"0" * 64,
                   b"X-Grafana-Alerting-Signature-Timestamp": str(int(time.time())).encode(),
                   b"Content-Type": b"application/json"}
        key = {"authorization": b"Authorization", "signature": b"X-Grafana-Alerting-Signature",
               "timestamp": b"X-Grafana-Alerting-Signature-Timestamp"}[which]
        headers[key] = value
        before = ledger_state(api)
        answer = api.as_(None).post("/v1/alerts/grafana", content=body, headers=headers)
        assert answer.status_code == 401, (which, value, answer.text[:300])
        assert answer.json()["field"].startswith("header."), answer.text
        assert ledger_state(api) == before

    hostile()
