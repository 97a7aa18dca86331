"""Every endpoint refuses a missing token, a wrong token and a wrong role — before reading the body, writing nothing."""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import logging
import time

import httpx
import pytest
import sqlalchemy as sa

from flows.ledger.schema import records
from tests.api.conftest import TOKEN_ROLES, Api, unique

#: (method, path, roles allowed)
ENDPOINTS = [
    ("POST", "/v1/runs", {"operator"}),
    ("GET", "/v1/runs", {"operator", "responder", "auditor"}),
    ("GET", "/v1/runs/RUN", {"operator", "responder", "auditor"}),
    ("POST", "/v1/runs/RUN/steps/assess", {"operator", "responder"}),
    ("POST", "/v1/runs/RUN/cancel", {"operator"}),
    ("POST", "/v1/alerts/alertmanager", {"monitor"}),
    ("POST", "/v1/alerts/grafana", {"monitor"}),
    ("POST", "/v1/events", {"monitor"}),
    ("POST", "/v1/metrics", {"monitor"}),
]
if importlib.util.find_spec("flows.api.audit") is not None:  # the audit router, when present, sits behind the same gate
    ENDPOINTS.append(("GET", "/v1/audit/runs", {"operator", "responder", "auditor"}))


def record_count(api: Api) -> int:
    with api.engine.ledger.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one()


@pytest.fixture(scope="module")
def run_id(api: Api) -> str:
    answer = api.as_("ops-console").post("/v1/runs", json={"sop": "crisis-pr", "inputs": {"brand": unique()}})
    assert answer.status_code == 201, answer.text
    return answer.json()["run"]


@pytest.mark.parametrize(("method", "path", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_missing_or_wrong_token_is_401(api: Api, run_id: str, method: str, path: str, allowed: set[str]) -> None:
    before = record_count(api)
    for client in (api.as_(None), api.as_(None, secret="not-a-token")):
        answer = client.request(method, path.replace("RUN", run_id), content=b'{"malformed')
        assert answer.status_code == 401, answer.text  # authentication comes before parsing the body
        assert answer.json()["field"] == "header.authorization"
        assert answer.headers["www-authenticate"] == "Bearer"
    assert record_count(api) == before


@pytest.mark.parametrize(("method", "path", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_a_role_that_may_not_is_403(api: Api, run_id: str, method: str, path: str, allowed: set[str]) -> None:
    before = record_count(api)
    for token, role in TOKEN_ROLES.items():
        if role in allowed:
            continue
        answer = api.as_(token).request(method, path.replace("RUN", run_id), json={"sop": "crisis-pr"})
        assert answer.status_code == 403, (token, answer.text)
        assert f"has role {role}" in answer.json()["error"]
    assert record_count(api) == before


def test_a_role_that_may_gets_past_the_gate(api: Api, run_id: str) -> None:
    for token in ("ops-console", "sre-oncall-phone", "audit-readonly"):
        assert api.as_(token).get(f"/v1/runs/{run_id}").status_code == 200


def test_a_refusal_is_logged_without_the_secret(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sop.api"):
        api.as_(None, secret="s3cret-guess").get("/v1/runs")
        api.as_("audit-readonly").post("/v1/events", json={"name": "x"})
    lines = [r.getMessage() for r in caplog.records if "event=request_refused" in r.getMessage()]
    assert any("status=401" in line and "path=/v1/runs" in line for line in lines)
    assert any("status=403" in line and "token=audit-readonly" in line for line in lines)
    assert not any("s3cret-guess" in line for line in lines)


def test_docs_and_health_need_no_token(api: Api) -> None:
    client = api.as_(None)
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/alerts/alertmanager" in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "AlertmanagerPayload" in schema["components"]["schemas"]
    assert client.get("/healthz").json() == {"ok": True}


# --- HMAC on webhooks (the grafana token asks for Grafana's signature) -------------------------------


def signed(api: Api, body: bytes, stamp: str | None = None, secret: str | None = None) -> dict[str, str]:
    key = (secret or api.hmac_secret).encode()
    headers = {"Content-Type": "application/json"}
    text = body if stamp is None else stamp.encode() + b":" + body
    headers["X-Grafana-Alerting-Signature"] = hmac.new(key, text, hashlib.sha256).hexdigest()
    if stamp is not None:
        headers["X-Grafana-Alerting-Signature-Timestamp"] = stamp
    return headers


def grafana_body(brand: str) -> bytes:
    return json.dumps(
        {
            "receiver": "sop",
            "status": "firing",
            "orgId": 1,
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "NegativeSentimentSpike", "brand": brand},
                    "annotations": {},
                    "startsAt": "2026-11-22T09:51:03+08:00",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": "c6eadffa33fcdf37",
                    "values": {"B": 3},
                }
            ],
        }
    ).encode()


def test_a_signed_grafana_webhook_is_taken(api: Api) -> None:
    body = grafana_body(unique())
    stamp = str(int(time.time()))
    answer = api.as_("grafana").post("/v1/alerts/grafana", content=body, headers=signed(api, body, stamp))
    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"] == {"started": 1}


@pytest.mark.parametrize("tamper", ["no signature", "wrong secret", "other body", "stale timestamp", "no timestamp"])
def test_a_badly_signed_webhook_is_401(api: Api, tamper: str) -> None:
    body = grafana_body(unique())
    stamp = str(int(time.time()))
    headers = {
        "no signature": {"Content-Type": "application/json"},
        "wrong secret": signed(api, body, stamp, secret="guess"),
        "other body": signed(api, body.replace(b"firing", b"FIRING", 1), stamp),
        "stale timestamp": signed(api, body, str(int(time.time()) - 3600)),
        "no timestamp": signed(api, body),
    }[tamper]
    before = record_count(api)
    answer = api.as_("grafana").post("/v1/alerts/grafana", content=body, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["field"].startswith("header.x-grafana-alerting-signature")
    assert record_count(api) == before


def test_tokens_whose_variable_is_unset_are_inactive_and_said_so(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    from flows.api.auth import Gate

    with caplog.at_level(logging.INFO, logger="sop.api"):
        gate = Gate(api.engine.site, env={"SOP_TOKEN_AUDITOR": "only-this-one-0123"})
    assert [t.principal.token for t in gate.tokens] == ["audit-readonly"]
    assert gate.inactive["ops-console"] == "environment variable SOP_TOKEN_OPERATOR is not set"
    assert "SOP_HMAC_GRAFANA" in Gate(api.engine.site, env={"SOP_TOKEN_GRAFANA": "grafana-secret-0123"}).inactive["grafana"]
    assert any("event=api_token_inactive token=ops-console" in r.getMessage() for r in caplog.records)


ANA = 'people:\n  ana-ruiz:\n    name: Ana Ruiz\n    contacts: ["inbox://ana-ruiz"]\n'


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (
            "  console:\n    env: SOP_TOKEN_CONSOLE\n    role: operator\n",
            "config.yaml:7:5: tokens.console.person: an operator token needs `person`: the person of config/ it acts as",
        ),
        (
            "  phone:\n    env: SOP_TOKEN_PHONE\n    role: responder\n",
            "config.yaml:7:5: tokens.phone.person: a responder token needs `person`",
        ),
        (
            "  console:\n    env: SOP_TOKEN_CONSOLE\n    role: operator\n    person: ana-ruis\n",
            "config.yaml:9:13: tokens.console.person: token `console`: unknown person `ana-ruis`",
        ),
    ],
)
def test_a_token_that_acts_names_a_person_of_config_or_the_config_is_refused(sop, tmp_path, token, says) -> None:
    """What loads config/ (`sop validate`, `sop serve`, the API process) refuses a token that acts as nobody."""
    (tmp_path / "config.yaml").write_text(ANA + "tokens:\n" + token)
    checked = sop("validate", str(tmp_path))
    assert checked.returncode == 1
    assert says in checked.stdout + checked.stderr


# --- Which token posts where (a monitor token's `sources`) ------------------------------------------


def test_grafanas_route_refuses_a_token_given_to_alertmanager_and_the_metrics_pushers(api: Api) -> None:
    """config/tokens.yaml gives Grafana a token of its own that signs (`sources: [grafana]`, `hmac`): the token of
    Alertmanager, the event and the metrics pushers (`sources: [alertmanager, events, metrics]`) posting a Grafana
    alert, unsigned, is refused with a 403 naming the token's sources, and nothing is recorded; Grafana's token
    posts there, signed. Each token keeps to its own routes the other way too."""
    body = grafana_body(unique())
    before = record_count(api)
    answer = api.as_("alertmanager").post("/v1/alerts/grafana", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 403, answer.text
    assert answer.json()["field"] == "header.authorization"
    assert "tokens.alertmanager.sources" in answer.json()["error"] and "not to grafana" in answer.json()["error"]
    assert record_count(api) == before

    stamp = str(int(time.time()))
    taken = api.as_("grafana").post("/v1/alerts/grafana", content=body, headers=signed(api, body, stamp))
    assert taken.status_code == 200, taken.text

    other = json.dumps({"name": "experiment.concluded", "key": unique(), "values": {"verdict": "winner"}}).encode()
    stamp = str(int(time.time()))
    wrong_door = api.as_("grafana").post("/v1/events", content=other, headers=signed(api, other, stamp))
    assert wrong_door.status_code == 403 and "tokens.grafana.sources" in wrong_door.json()["error"], wrong_door.text
    assert api.as_("alertmanager").post("/v1/events", content=other,
                                         headers={"Content-Type": "application/json"}).status_code == 200


def test_a_monitor_token_without_sources_keeps_posting_everywhere_and_is_warned_about(
        library, token_env: dict[str, str], database, tmp_path, repo_root, sop) -> None:  # noqa: ANN001
    """A site's config from before `sources` (no token names any) keeps working: its Alertmanager token still posts
    a Grafana alert. `sop validate` passes, with a warning per such token at its file:line saying what it allows and
    the fix; the API says the same when it starts."""
    import shutil

    from flows.api import create_app
    from flows.api.auth import Gate
    from flows.engine.transitions import Engine
    from flows.language.library import load_library
    from flows.ledger import Ledger
    from tests.api.conftest import ServedApp

    site = tmp_path / "site"
    shutil.copytree(repo_root / "config", site / "config")
    shutil.copytree(repo_root / "sops", site / "sops")
    tokens = site / "config" / "tokens.yaml"
    tokens.write_text("\n".join(line for line in tokens.read_text().splitlines() if "sources: [" not in line) + "\n")

    checked = sop("validate", env={"SOP_HOME": str(site)}, cwd=site)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    warnings = [line for line in checked.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, checked.stderr
    assert f"{tokens}:" in warnings[0] and "tokens.alertmanager: a monitor token without `sources`" in warnings[0]
    assert "Grafana's too, unsigned" in warnings[0] and "sources: [alertmanager]" in warnings[0]

    old = load_library(site)
    assert Gate(old.site, env=token_env).warnings == [w.split(": ", 2)[2] for w in warnings]
    ledger = Ledger(database.url_at(tmp_path / "ledger.db"))
    ledger.migrate()
    served = ServedApp(create_app(Engine(old, ledger), env=token_env))
    try:
        answer = httpx.post(f"{served.url}/v1/alerts/grafana", content=grafana_body(unique()),
                            headers={"Authorization": f"Bearer {token_env['SOP_TOKEN_MONITOR']}",
                                     "Content-Type": "application/json"}, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        served.stop()
        ledger.dispose()


def test_sources_are_a_monitor_tokens_and_name_at_least_one(tmp_path) -> None:  # noqa: ANN001
    """`sources` on an operator token, or an empty list: `sop validate`'s error names the field and the fix."""
    from flows.language.config import ApiToken

    with pytest.raises(ValueError, match="only a monitor token posts to monitoring endpoints"):
        ApiToken(env="X", role="operator", person="li-wei", sources=["grafana"])
    with pytest.raises(ValueError, match="could post nowhere"):
        ApiToken(env="X", role="monitor", sources=[])
    with pytest.raises(ValueError):
        ApiToken(env="X", role="monitor", sources=["prometheus"])
