"""Holds over HTTP: ``POST /v1/runs/{run}/steps/{step}/hold`` and ``/release`` as the token's person.

The creative refresh declares ``waiting_for: [platform_reply]``; its `impact` step is for
ads-specialist (liu-yang on call). The seed's tokens act as operators (li-wei, zhao-lei), who
may hold any step; so this module serves the API over a copy of the project with one more
token, ``ads-phone``: a responder acting as sun-hao, of ads-specialist but neither the step's
holder, its lead, the run's owner nor an operator.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.api import create_app
from flows.engine.transitions import Engine
from flows.language.library import load_library
from flows.ledger import Ledger
from flows.ledger.schema import records
from tests.api.conftest import Api, ServedApp, unique
from tests.api.test_runs import record_count
from tests.engine.conftest import make_project

ADS_TOKEN = """
  ads-phone:
    env: SOP_TOKEN_ADS
    role: responder
    person: sun-hao
"""


@pytest.fixture(scope="module")
def api(repo_root: Path, token_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API served over a copy of the project whose tokens include ``ads-phone`` (sun-hao, responder)."""
    root = make_project(repo_root, tmp_path_factory.mktemp("holds"))
    tokens = root / "config" / "tokens.yaml"
    tokens.write_text(tokens.read_text() + ADS_TOKEN)
    env = {**token_env, "SOP_TOKEN_ADS": f"ads-phone-{secrets.token_hex(8)}"}
    ledger = Ledger(f"sqlite:///{root / 'ledger.db'}")
    ledger.migrate()
    engine = Engine(load_library(root), ledger)
    served = ServedApp(create_app(engine, env=env))
    names = {"ops-console": "SOP_TOKEN_OPERATOR", "ads-phone": "SOP_TOKEN_ADS"}
    api = Api(served.url, engine, {n: env[v] for n, v in names.items()}, "")
    yield api
    for client in api.clients.values():
        client.close()
    served.stop()
    ledger.dispose()


def refresh(api: Api) -> str:
    return api.engine.start("creative-refresh", {"platform": unique("p")}, initiator="li-wei", launch=False).run_id


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def kinds(api: Api, run_id: str, kind: str) -> list[dict]:
    with api.engine.ledger.read() as conn:
        rows = conn.execute(sa.select(records).where((records.c.run_id == run_id) & (records.c.kind == kind))
                            .order_by(records.c.seq))
        return [{"actor": r.actor, "step": r.step_id, **json.loads(r.data)} for r in rows]


def test_an_allowed_person_holds_and_releases_a_step_with_their_token(api: Api) -> None:
    run_id = refresh(api)
    operator = api.as_("ops-console")
    nul = operator.post(f"/v1/runs/{run_id}/steps/impact/hold", json={"reason": "platform_reply", "note": "a\x00b"})
    assert nul.status_code == 422 and nul.json()["field"] == "body.note", nul.text
    long = operator.post(f"/v1/runs/{run_id}/steps/impact/hold", json={"reason": "platform_reply", "note": "n" * 3_000})
    assert long.status_code == 201, long.text  # free text's one bound (4,000), not 2,000
    operator.post(f"/v1/runs/{run_id}/steps/impact/release", json={})
    held = operator.post(f"/v1/runs/{run_id}/steps/impact/hold", json={"reason": "platform_reply",
                                                                      "note": "asked Douyin support"})
    assert held.status_code == 201, held.text
    assert (held.json()["held_by"], held.json()["reason"]) == ("li-wei", "platform_reply")
    first, record = kinds(api, run_id, "step_held")
    assert first["note"] == "n" * 3_000
    assert (record["actor"], record["step"], record["via"], record["token"]) == ("li-wei", "impact", "api", "ops-console")
    assert record["note"] == "asked Douyin support" and at(record["max_at"]) == at(held.json()["escalates_at"])
    assert api.engine.view(run_id).steps["impact"]["held_at"] is not None

    released = operator.post(f"/v1/runs/{run_id}/steps/impact/release", json={"note": "they answered"})
    assert released.status_code == 200, released.text
    end = kinds(api, run_id, "step_released")[-1]
    assert (end["actor"], end["via"], end["ended"], end["note"]) == ("li-wei", "api", "released", "they answered")
    assert at(released.json()["due_at"]) == at(end["due_at"]) > at(end["previous_due_at"])  # moved by the time held
    assert api.engine.view(run_id).steps["impact"]["held_at"] is None


def test_another_person_an_undeclared_reason_and_an_unknown_run_or_step_are_refused_by_field(api: Api) -> None:
    run_id = refresh(api)
    operator, other = api.as_("ops-console"), api.as_("ads-phone")
    before = record_count(api)
    cases = [
        (other, f"/v1/runs/{run_id}/steps/impact/hold", {"reason": "platform_reply"}, 403, "path.step",
         "sun-hao may not put on hold step `impact`: only the person the step is with (liu-yang)"),
        (operator, f"/v1/runs/{run_id}/steps/impact/hold", {"reason": "customer"}, 422, "body.reason",
         "`customer` is not a reason to hold `impact`: it may wait for platform_reply"),
        (operator, f"/v1/runs/nope{run_id}/steps/impact/hold", {"reason": "platform_reply"}, 404, "path.run", "nope"),
        (operator, f"/v1/runs/{run_id}/steps/no-such-step/hold", {"reason": "platform_reply"}, 404, "path.step",
         "has no step `no-such-step`"),
        (operator, f"/v1/runs/nope{run_id}/steps/impact/release", {}, 404, "path.run", "nope"),
        (operator, f"/v1/runs/{run_id}/steps/no-such-step/release", {}, 404, "path.step", "has no step"),
    ]
    for client, path, body, status, field, says in cases:
        answer = client.post(path, json=body)
        assert (answer.status_code, answer.json()["field"]) == (status, field), (path, body, answer.text)
        assert says in answer.json()["error"], answer.text
    assert record_count(api) == before

    assert operator.post(f"/v1/runs/{run_id}/steps/impact/hold", json={"reason": "platform_reply"}).status_code == 201
    held = record_count(api)
    refused = other.post(f"/v1/runs/{run_id}/steps/impact/release", json={})
    assert (refused.status_code, refused.json()["field"]) == (403, "path.step")
    assert "sun-hao may not release step `impact`" in refused.json()["error"]
    assert record_count(api) == held and api.engine.view(run_id).steps["impact"]["held_at"] is not None


def test_an_operator_holds_and_releases_a_whole_run_and_another_person_is_refused(api: Api) -> None:
    run_id = refresh(api)
    operator, other = api.as_("ops-console"), api.as_("ads-phone")
    before = record_count(api)
    refused = other.post(f"/v1/runs/{run_id}/hold", json={"reason": "platform_reply"})
    assert (refused.status_code, refused.json()["field"]) == (403, "path.run"), refused.text
    assert f"sun-hao may not put on hold run {run_id}: only its owner (creative-lead)" in refused.json()["error"]
    assert record_count(api) == before

    held = operator.post(f"/v1/runs/{run_id}/hold", json={"reason": "platform_reply", "note": "Douyin review"})
    assert held.status_code == 201, held.text
    [record] = kinds(api, run_id, "run_held")
    assert (record["actor"], record["via"], record["token"], record["steps"]) == ("li-wei", "api", "ops-console",
                                                                                  ["impact", "rules"])
    assert api.engine.view(run_id).steps["impact"]["held_at"] is not None
    released = operator.post(f"/v1/runs/{run_id}/release", json={"note": "approved"})
    assert released.status_code == 200, released.text
    [end] = kinds(api, run_id, "run_released")
    assert (end["actor"], end["via"], end["ended"]) == ("li-wei", "api", "released")
    assert at(released.json()["deadline_at"]) == at(end["deadline_at"]) > at(end["previous_deadline_at"])
    assert api.engine.view(run_id).steps["impact"]["held_at"] is None
