"""What a hostile or careless sender tries, refused at the door: a located 4xx, nothing stored, nothing wedged.

Each case was seen answering 500, or accepted and then breaking what reads it (``GET /v1/runs``,
a metric rule, the launcher). The fuzz test (``test_fuzz.py``) covers the same ground at random.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import httpx
import pytest
import sqlalchemy as sa

from flows.api.auth import Gate, SecretsRefused
from flows.engine.inputs import MAX_INPUTS_BYTES
from flows.language.durations import SPEED_MAX, SPEED_MIN
from flows.ledger.schema import metric_samples
from tests.api.conftest import TOKEN_ENV, Api, unique
from tests.api.test_runs import record_count, report, start

JSON = {"Content-Type": "application/json"}


def samples_count(api: Api) -> int:
    with api.engine.ledger.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(metric_samples)).scalar_one()


def refused(api: Api, token: str, path: str, body: bytes, status: int, field: str, says: str = "") -> dict:
    """Post ``body``; assert the located refusal and that the ledger and the samples did not change."""
    records, samples = record_count(api), samples_count(api)
    if token == "grafana":  # Grafana's token signs each body
        answer = api.as_(None).post(path, content=body, headers=api.grafana(body))
    else:
        answer = api.as_(token).post(path, content=body, headers=JSON)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert set(error) == {"error", "field", "problems"}
    assert error["field"] == field, error
    assert says in error["error"], error
    assert (record_count(api), samples_count(api)) == (records, samples)
    return error


# --- 3. bodies: deep, huge numbers, non-finite, NUL -----------------------------------------------


def test_json_nested_a_thousand_deep_is_a_400_not_a_500(api: Api) -> None:
    deep = b'{"sop": "crisis-pr", "inputs": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert len(deep) < 2100
    refused(api, "ops-console", "/v1/runs", deep, 422, "body", "more than 32 deep")
    forty = b'{"sop": "crisis-pr", "inputs": {"brand": ' + b"[" * 40 + b"]" * 40 + b"}}"
    refused(api, "ops-console", "/v1/runs", forty, 422, "body.inputs.brand" + ".0" * 30, "more than 32 deep")
    refused(api, "alertmanager", "/v1/events", b'{"name": "x", "values": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
            422, "body", "deep")


def test_a_5000_digit_integer_is_refused_where_it_is(api: Api) -> None:
    huge = b"9" * 5000
    refused(api, "ops-console", "/v1/runs", b'{"sop": "crisis-pr", "inputs": {"brand": "b"}, "speed": ' + huge + b"}",
            422, "body.speed", "5000 digits")
    refused(api, "ops-console", "/v1/runs", b'{"sop": "ab-rollout", "inputs": {"experiment_id": "e", "uplift_pct": '
            + b"1" * 30 + b"}}", 422, "body.inputs.uplift_pct", "64-bit")


@pytest.mark.parametrize(
    ("speed", "status", "says"),
    [
        (b"Infinity", 400, "Infinity is not JSON"),
        (b"-Infinity", 400, "not JSON"),
        (b"NaN", 400, "NaN is not JSON"),
        (b"1e999", 422, "too large to be a finite number"),
        (b"1e-300", 422, f"greater than or equal to {SPEED_MIN:g}"),
        (b"1e308", 422, f"less than or equal to {SPEED_MAX:g}"),
        (b'"inf"', 422, "finite number"),
        (b"0", 422, f"greater than or equal to {SPEED_MIN:g}"),
    ],
)
def test_speed_is_bounded_and_finite(api: Api, speed: bytes, status: int, says: str) -> None:
    body = b'{"sop": "crisis-pr", "inputs": {"brand": "' + unique().encode() + b'"}, "speed": ' + speed + b"}"
    refused(api, "ops-console", "/v1/runs", body, status, "body.speed", says)
    assert api.as_("ops-console").get("/v1/runs").status_code == 200  # what 1e308 used to break, until cancelled


def test_the_largest_speed_starts_a_run_that_can_be_listed(api: Api) -> None:
    run = api.as_("ops-console").post("/v1/runs", json={"sop": "crisis-pr", "inputs": {"brand": unique()},
                                                        "speed": SPEED_MAX})
    assert run.status_code == 201, run.text
    assert api.as_("ops-console").get(f"/v1/runs/{run.json()['run']}").json()["speed"] == SPEED_MAX
    assert api.as_("ops-console").get("/v1/runs").status_code == 200


@pytest.mark.parametrize(
    ("value", "status", "says"),
    [(b"NaN", 400, "NaN is not JSON"), (b'"NaN"', 422, "finite number"), (b'"-inf"', 422, "finite number"),
     (b'"1' + b"0" * 400 + b'"', 422, "finite number")],
)
def test_number_inputs_are_finite(api: Api, value: bytes, status: int, says: str) -> None:
    body = b'{"sop": "ab-rollout", "inputs": {"experiment_id": "' + unique().encode() + b'", "uplift_pct": ' + value
    refused(api, "ops-console", "/v1/runs", body + b"}}", status, "body.inputs.uplift_pct", says)


def test_form_values_are_finite(api: Api) -> None:
    run = start(api, "ab-rollout", experiment_id=unique(), uplift_pct=12.5)["run"]
    body = report(api, "ab-rollout", "verify", actor="priya-nair")
    for value, status in ((float("nan"), 400), ("Infinity", 422), (float("-inf"), 400)):
        body["values"]["measured_uplift_pct"] = value
        raw = json.dumps(body).encode()  # Python writes NaN and Infinity, as a careless client would
        refused(api, "ops-console", f"/v1/runs/{run}/steps/verify", raw, status, "body.values.measured_uplift_pct")
    assert api.as_("ops-console").get(f"/v1/runs/{run}").json()["steps"][0]["state"] == "active"


def test_event_values_are_finite(api: Api) -> None:
    refused(api, "alertmanager", "/v1/events", b'{"name": "experiment.concluded", "values": {"uplift_pct": NaN}}',
            400, "body.values.uplift_pct", "NaN")
    refused(api, "alertmanager", "/v1/events", b'{"name": "experiment.concluded", "values": {"uplift_pct": 1e400}}',
            422, "body.values.uplift_pct", "finite")


def test_grafana_values_are_finite(api: Api) -> None:
    alert = {"status": "firing", "labels": {"alertname": "DetailPageSlow", "page": unique("/p")},
             "values": {"B": "NaN"}}
    body = json.dumps({"status": "firing", "alerts": [alert]}).encode()
    refused(api, "grafana", "/v1/alerts/grafana", body, 422, "body.alerts.0.values.B.float", "finite")
    refused(api, "grafana", "/v1/alerts/grafana", body.replace(b'"NaN"', b"Infinity"), 400,
            "body.alerts.0.values.B", "Infinity")


@pytest.mark.parametrize(("token", "path"), [("alertmanager", "/v1/alerts/alertmanager"),
                                             ("grafana", "/v1/alerts/grafana")])
def test_an_alert_time_that_is_not_a_time_is_refused(api: Api, token: str, path: str) -> None:
    alert = {"status": "firing", "labels": {"alertname": "DetailPageSlow", "page": unique("/p")}, "startsAt": "yesterday"}
    body = json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()
    error = refused(api, token, path, body, 422, "body.alerts.0.startsAt", "expected an RFC 3339 time")
    assert "Value error" not in error["error"]
    for loose in ("2026-12-06", "2026-12-06T08:00:00", "2026-W49-1"):  # a date, no offset, a week date
        alert["startsAt"] = loose
        body = json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()
        refused(api, token, path, body, 422, "body.alerts.0.startsAt", "expected an RFC 3339 time")
    alert["startsAt"], alert["endsAt"] = "2026-12-06T08:00:00.123456789Z", "0001-01-01T00:00:00Z"  # as Alertmanager
    body = json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()
    headers = api.grafana(body) if token == "grafana" else {**JSON, "Authorization": f"Bearer {api.secrets[token]}"}
    taken = api.as_(None).post(path, content=body, headers=headers)
    assert taken.status_code == 200, taken.text


def test_a_body_that_is_not_an_object_is_said_in_jsons_words(api: Api) -> None:
    error = refused(api, "alertmanager", "/v1/alerts/alertmanager", b"[1, 2]", 422, "body")
    assert error["error"] == "body: expected a JSON object, got an array"  # not "instance of AlertmanagerPayload"


def test_a_raw_control_character_in_a_body_is_named_once_with_where_it_is(api: Api) -> None:
    body = b'{"name": "x", "values": {"a": "b\x00"}}'  # a raw NUL, not the escaped \u0000
    error = refused(api, "alertmanager", "/v1/events", body, 400, "body", "malformed JSON: Invalid control character")
    assert error["error"] == "malformed JSON: Invalid control character at line 1 column 33"  # not "at at"


def test_a_sample_dated_far_ahead_is_refused_and_the_batch_not_stored(api: Api) -> None:
    now = time.time()
    batch = {"samples": [{"metric": "daily_uv", "value": 1, "at": now, "labels": {"site": unique()}},
                         {"metric": "daily_uv", "value": 2, "at": "2099-01-01T00:00:00Z"}]}
    refused(api, "alertmanager", "/v1/metrics", json.dumps(batch).encode(), 422, "body.samples.1.at",
            "check the sender's clock")
    batch["samples"][1]["at"] = now + 60  # a minute of clock skew is taken
    answer = api.as_("alertmanager").post("/v1/metrics", json=batch)
    assert answer.status_code == 200 and answer.json()["samples"] == 2


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/runs", b'{"sop": "crisis-pr", "inputs": {"brand": "a\\u0000b"}}', "body.inputs.brand"),
        ("/v1/runs", b'{"sop": "crisis-pr", "inputs": {"br\\u0000and": "a"}}', "body.inputs.br\x00and"),
        ("/v1/runs", b'{"sop": "crisis-pr\\u0000"}', "body.sop"),
        ("/v1/events", b'{"name": "x", "values": {"a": "\\u0000"}}', "body.values.a"),
        ("/v1/alerts/alertmanager", b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", '
         b'"labels": {"alertname": "DetailPageSlow", "page": "/p\\u0000"}}]}', "body.alerts.0.labels.page"),
        ("/v1/metrics", b'{"samples": [{"metric": "daily_uv", "value": 1, "at": 0, "labels": {"site": "\\u0000"}}]}',
         "body.samples.0.labels.site"),
        ("/v1/runs", b'{"sop": "crisis-pr", "inputs": {"brand": "\\ud800"}}', "body.inputs.brand"),
    ],
)
def test_nul_and_half_surrogates_are_refused_at_the_door(api: Api, path: str, body: bytes, field: str) -> None:
    token = "ops-console" if path == "/v1/runs" else "alertmanager"
    refused(api, token, path, body, 422, field, "NUL" if b"u0000" in body else "surrogate")


def test_cancel_errors_name_the_reason_and_the_run(api: Api) -> None:
    run = start(api, brand=unique())["run"]
    refused(api, "ops-console", f"/v1/runs/{run}/cancel", b'{"reason": "   "}', 422, "body.reason", "a reason")
    assert api.as_("ops-console").post(f"/v1/runs/{run}/cancel", json={"reason": "drill over"}).status_code == 200
    refused(api, "ops-console", f"/v1/runs/{run}/cancel", b'{"reason": "again"}', 409, "path.run", "already cancelled")


# --- 4. what Prefect cannot take is refused before anything is written -----------------------------


def test_inputs_larger_than_a_flow_run_takes_are_refused_at_the_door(api: Api) -> None:
    brand = unique() + "x" * (MAX_INPUTS_BYTES + 1000)  # under the body limit, over Prefect's parameters limit
    body = json.dumps({"sop": "crisis-pr", "inputs": {"brand": brand}}).encode()
    assert len(body) < api.engine.site.settings.api.max_body_bytes
    refused(api, "ops-console", "/v1/runs", body, 422, "body.inputs.brand", "pass a link to the data instead")
    event = json.dumps({"name": "x", "values": {"a": "y" * (MAX_INPUTS_BYTES // 2)}}).encode()  # routes nowhere
    assert api.as_("alertmanager").post("/v1/events", content=event, headers=JSON).status_code == 200


# --- 5. logs and signatures --------------------------------------------------------------------------


def test_a_newline_in_a_path_or_an_sop_id_stays_on_its_log_line(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sop.api"):
        api.as_("ops-console").post("/v1/runs/abc%0Aevent=request_refused status=200/cancel", json={"reason": "x"})
        api.as_("ops-console").post("/v1/runs", json={"sop": "nope\nevent=run_started run=forged"})
    lines = [r.getMessage() for r in caplog.records if "request_refused" in r.getMessage()]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "abc\\nevent=request_refused status=200" in lines[0]
    assert "nope\\nevent=run_started run=forged" in lines[1]


def grafana_headers(api: Api, body: bytes, stamp: str) -> dict[str, str]:
    signature = hmac.new(api.hmac_secret.encode(), stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"Authorization": f"Bearer {api.secrets['grafana']}", "X-Grafana-Alerting-Signature": signature,
            "X-Grafana-Alerting-Signature-Timestamp": stamp, **JSON}


def test_a_grafana_timestamp_of_nan_is_refused(api: Api) -> None:
    body = json.dumps({"status": "firing", "alerts": []}).encode()
    for stamp in ("nan", "inf", "-Infinity"):
        answer = api.as_(None).post("/v1/alerts/grafana", content=body, headers=grafana_headers(api, body, stamp))
        assert answer.status_code == 401, (stamp, answer.text)
        assert answer.json()["field"] == "header.x-grafana-alerting-signature-timestamp"


def test_a_signed_request_is_taken_once(api: Api) -> None:
    alert = {"status": "firing", "labels": {"alertname": "DetailPageSlow", "page": unique("/p")}}
    body = json.dumps({"status": "firing", "alerts": [alert]}).encode()
    headers = grafana_headers(api, body, str(int(time.time())))
    first = api.as_(None).post("/v1/alerts/grafana", content=body, headers=headers)
    assert first.status_code == 200 and first.json()["counts"] == {"started": 1}
    before = record_count(api)
    again = api.as_(None).post("/v1/alerts/grafana", content=body, headers=headers)
    assert again.status_code == 401 and "replay" in again.json()["error"]
    assert record_count(api) == before
    fresh = api.as_(None).post("/v1/alerts/grafana", content=body,
                               headers=grafana_headers(api, body, str(int(time.time()) + 1)))
    assert fresh.status_code == 200 and fresh.json()["counts"] == {"attached": 1}  # signed anew: taken


def test_a_signed_request_taken_by_one_api_process_is_refused_by_another(api: Api, library, token_env) -> None:
    """Behind a balancer, a replay reaches the API process that did not take the original: it is refused there too
    (the signatures taken are the database's to remember, not each process's), and no run is touched."""
    from flows.api.app import create_app
    from flows.engine.transitions import Engine
    from flows.ledger import Ledger
    from tests.api.conftest import ServedApp

    other_ledger = Ledger(api.engine.ledger.url)
    other = ServedApp(create_app(Engine(library, other_ledger), env=token_env))
    try:
        alert = {"status": "firing", "labels": {"alertname": "DetailPageSlow", "page": unique("/p")}}
        body = json.dumps({"status": "firing", "alerts": [alert]}).encode()
        headers = api.grafana(body)
        first = api.as_(None).post("/v1/alerts/grafana", content=body, headers=headers)
        assert first.status_code == 200 and first.json()["counts"] == {"started": 1}, first.text
        before = record_count(api)
        replayed = httpx.post(f"{other.url}/v1/alerts/grafana", content=body, headers=headers, timeout=30)
        assert replayed.status_code == 401 and "already taken" in replayed.json()["error"], replayed.text
        assert record_count(api) == before
        # the other way round: the second process takes a fresh signature first, the first refuses its replay
        headers = api.grafana(body, str(int(time.time()) + 1))
        taken = httpx.post(f"{other.url}/v1/alerts/grafana", content=body, headers=headers, timeout=30)
        assert taken.status_code == 200 and taken.json()["counts"] == {"attached": 1}, taken.text
        again = api.as_(None).post("/v1/alerts/grafana", content=body, headers=headers)
        assert again.status_code == 401 and "already taken" in again.json()["error"], again.text
    finally:
        other.stop()
        other_ledger.dispose()


def test_ten_thousand_copies_of_one_alert_add_one_record(api: Api) -> None:
    alert = {"status": "firing", "labels": {"alertname": "DetailPageSlow", "page": unique("/p")}}
    body = json.dumps({"version": "4", "status": "firing", "alerts": [alert] * 10_000}).encode()
    before = record_count(api)
    answer = api.as_("alertmanager").post("/v1/alerts/alertmanager", content=body, headers=JSON)
    assert answer.status_code == 200, answer.text
    [outcome] = answer.json()["outcomes"]
    assert answer.json()["alerts"] == 10_000 and outcome["status"] == "started" and outcome["copies"] == 10_000
    assert record_count(api) - before < 10  # run_started, its first steps, one trigger_repeated
    row = api.as_("ops-console").get(f"/v1/runs/{outcome['run']}").json()
    assert row["repeats"] == 9_999
    with api.engine.ledger.read() as conn:
        from flows.ledger.schema import records

        repeated = conn.execute(sa.select(records.c.data).where(
            (records.c.run_id == outcome["run"]) & (records.c.kind == "trigger_repeated"))).scalars().all()
    assert [json.loads(d)["copies"] for d in repeated] == [9_999]


@pytest.mark.parametrize(
    ("secrets", "says"),
    [
        ({"SOP_TOKEN_OPERATOR": "short-secret"}, "tokens.ops-console: $SOP_TOKEN_OPERATOR is 12 bytes; at least 16"),
        ({"SOP_TOKEN_OPERATOR": "a-long-enough-secret\n"}, "begins or ends with whitespace (a trailing newline?)"),
        ({"SOP_TOKEN_OPERATOR": "one-shared-secret-0123", "SOP_TOKEN_AUDITOR": "one-shared-secret-0123"},
         "tokens.ops-console ($SOP_TOKEN_OPERATOR) and tokens.audit-readonly ($SOP_TOKEN_AUDITOR) share one secret"),
        ({"SOP_TOKEN_GRAFANA": "grafana-token-0123456", "SOP_HMAC_GRAFANA": "tiny"}, "tokens.grafana.hmac"),
    ],
)
def test_unsafe_secrets_stop_the_api_at_start_up(api: Api, secrets: dict[str, str], says: str) -> None:
    with pytest.raises(SecretsRefused) as refusal:
        Gate(api.engine.site, env=secrets)
    assert says in str(refusal.value) and "the API cannot start" in str(refusal.value)
    for secret in secrets.values():
        assert secret.strip() not in str(refusal.value)  # named by variable, never quoted


def test_the_sessions_own_secrets_are_safe(token_env: dict[str, str], api: Api) -> None:
    assert len(Gate(api.engine.site, env=token_env).tokens) == len(TOKEN_ENV)


# --- beyond the list ---------------------------------------------------------------------------------


def test_a_run_id_prefix_is_not_a_pattern(api: Api) -> None:
    start(api, brand=unique())
    for pattern in ("%25", "_", "%25%25%25%25", "__________"):  # (one to three characters: too short for a prefix)
        refused(api, "ops-console", f"/v1/runs/{pattern}/cancel", b'{"reason": "matched by a wildcard"}', 404,
                "path.run", "too short to name a run" if len(pattern.replace("%25", "%")) < 4 else "no run")
        assert api.as_("audit-readonly").get(f"/v1/runs/{pattern}").status_code == 404


def test_samples_whose_sum_overflows_fire_nothing_and_break_nothing(api: Api) -> None:
    brand = unique()
    day = time.time() - 60
    batch = {"samples": [{"metric": "negative_mentions", "value": 1e308, "at": day + i, "labels": {"brand": brand}}
                         for i in range(2)]}
    before = record_count(api)
    answer = api.as_("alertmanager").post("/v1/metrics", json=batch)
    assert answer.status_code == 200 and answer.json()["counts"] == {}, answer.text
    assert record_count(api) == before
    assert api.as_("ops-console").get("/v1/runs").status_code == 200


def test_a_huge_value_makes_a_short_log_line(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    alert = {"status": "firing", "labels": {"alertname": "NoSuchAlert"}, "fingerprint": "f" * 500_000}
    body = {"version": "4", "status": "firing", "alerts": [alert]}
    with caplog.at_level(logging.INFO, logger="sop.intake"):
        answer = api.as_("alertmanager").post("/v1/alerts/alertmanager", json=body)
    assert answer.status_code == 200 and answer.json()["counts"] == {"unrouted": 1}
    [line] = [r.getMessage() for r in caplog.records if r.name == "sop.intake"]
    assert len(line) < 1200 and line.endswith("…(+499000 chars)\"")


@pytest.mark.parametrize("metric", ["add_to_cart_rate", "complaint_rate", "inventory_cover_days"])
def test_a_sample_dated_before_1970_is_refused_not_a_500_nor_a_run(api: Api, metric: str) -> None:
    batch = {"samples": [{"metric": metric, "value": 0.01, "at": "0001-01-01T00:00:00Z", "labels": {"sku": unique()}}]}
    refused(api, "alertmanager", "/v1/metrics", json.dumps(batch).encode(), 422, "body.samples.0.at", "before 1970")


@pytest.mark.parametrize(
    ("method", "url", "where"),
    [("post", "/v1/runs/%00/cancel", "path"), ("get", "/v1/runs/ab%00", "path"),
     ("get", "/v1/audit/runs?sop=%00", "query"), ("post", "/v1/runs/x/steps/%00", "path")],
)
def test_nul_in_a_path_or_query_is_refused_at_the_door(api: Api, method: str, url: str, where: str) -> None:
    before = record_count(api)
    answer = getattr(api.as_("ops-console"), method)(url, **({"json": {"reason": "x"}} if method == "post" else {}))
    assert answer.status_code == 400 and answer.json()["field"] == where and "NUL" in answer.json()["error"]
    assert record_count(api) == before


def test_a_signature_that_is_not_ascii_is_a_401_not_a_500(api: Api) -> None:
    body = json.dumps({"status": "firing", "alerts": []}).encode()
    headers = {**grafana_headers(api, body, str(int(time.time()))), "X-Grafana-Alerting-Signature": "sha256=\xe9"}
    answer = api.as_(None).post("/v1/alerts/grafana", content=body,
                                headers={k: v.encode("latin-1") for k, v in headers.items()})
    assert answer.status_code == 401 and answer.json()["field"] == "header.x-grafana-alerting-signature"


def test_a_key_given_twice_in_a_body_is_refused_at_its_path(api: Api) -> None:
    before = record_count(api)
    raw = b'{"sop": "crisis-pr", "inputs": {"brand": "lumi"}, "sop": "data-backup"}'  # the last one won
    twice = api.as_("ops-console").post("/v1/runs", content=raw, headers={"Content-Type": "application/json"})
    assert twice.status_code == 422 and twice.json()["field"] == "body.sop", twice.text
    assert "`sop` is given twice in one object" in twice.json()["error"]
    nested = b'{"sop": "crisis-pr", "inputs": {"brand": "a", "brand": "b"}}'
    inner = api.as_("ops-console").post("/v1/runs", content=nested, headers={"Content-Type": "application/json"})
    assert inner.status_code == 422 and inner.json()["field"] == "body.inputs.brand", inner.text
    assert record_count(api) == before  # nothing started
