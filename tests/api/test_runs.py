"""People's endpoints: start a run, list and read runs, report on a step, cancel — and every bad input named."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa

from flows.ledger.schema import records
from tests.api.conftest import Api, unique


def record_count(api: Api) -> int:
    """The records a request could have written: all but the ledger's checkpoints (which any transaction, even
    one that only remembers a signature taken, may add when one is due: they record no act)."""
    with api.engine.ledger.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(records)
                            .where(records.c.kind != "checkpoint")).scalar_one()


def recorded(api: Api, run: str, kind: str) -> list[tuple[str | None, dict]]:
    """The actor and data of each record of ``kind`` on ``run``, in chain order."""
    query = sa.select(records.c.actor, records.c.data).where(records.c.run_id == run, records.c.kind == kind)
    with api.engine.ledger.read() as conn:
        return [(actor, json.loads(data or "{}")) for actor, data in conn.execute(query.order_by(records.c.seq))]


def how(data: dict) -> dict:
    """How an action came, as its record keeps it."""
    return {k: data[k] for k in ("via", "by", "token", "os_user") if k in data}


def form_values(api: Api, sop: str, step: str) -> dict:
    """Values that fill a step's form (its required fields)."""
    form = api.engine.library.sops[sop].sop.step(step).form
    sample = {"string": "x", "integer": 1, "number": 1.0, "boolean": True}
    return {n: (f.enum[0] if f.enum else sample[f.type]) for n, f in form.items() if f.is_required}


def report(api: Api, sop: str, step: str, **more: object) -> dict:
    """A report body that satisfies the step: its form, and evidence when it asks for some."""
    spec = api.engine.library.sops[sop].sop.step(step)
    body: dict = {"values": form_values(api, sop, step), **more}
    if spec.evidence:
        body["evidence"] = ["https://wiki.example/incidents/42"]
    return body


def start(api: Api, sop: str = "crisis-pr", **inputs: object) -> dict:
    answer = api.as_("ops-console").post("/v1/runs", json={"sop": sop, "inputs": inputs})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def test_an_operator_starts_a_run_and_a_repeat_attaches(api: Api) -> None:
    brand = unique("brand")
    first = api.as_("ops-console").post("/v1/runs", json={"sop": "crisis-pr", "inputs": {"brand": brand}})
    assert first.status_code == 201
    run = first.json()
    assert run["attached"] is False and run["url"].endswith(f"/v1/runs/{run['run']}")
    again = api.as_("ops-console").post("/v1/runs", json={"sop": "crisis-pr", "inputs": {"brand": brand}})
    assert again.status_code == 200 and again.json() == {**run, "attached": True, "repeats": 1}
    row = api.as_("audit-readonly").get(f"/v1/runs/{run['run']}").json()
    assert row["sop"] == "crisis-pr" and row["status"] == "running" and row["repeats"] == 1
    assert row["initiator"] == "li-wei" and row["trigger"] == {"kind": "api", "by": "li-wei", "token": "ops-console"}
    assert row["inputs"]["brand"] == brand and row["dedup_key"] == brand
    assert {s["step"]: s["state"] for s in row["steps"]}["assess"] == "active"


def test_runs_are_listed_open_first_by_priority(api: Api) -> None:
    start(api, "crisis-pr", brand=unique())
    start(api, "page-speed", page=unique("/p"))
    rows = api.as_("sre-oncall-phone").get("/v1/runs").json()
    priorities = [r["priority"] for r in rows]
    assert priorities == sorted(priorities) and all(r["status"] == "running" for r in rows)
    only = api.as_("sre-oncall-phone").get("/v1/runs", params={"sop": "page-speed", "status": "all"}).json()
    assert only and {r["sop"] for r in only} == {"page-speed"}
    assert api.as_("audit-readonly").get("/v1/runs", params={"limit": 1}).json().__len__() == 1


def test_an_operator_reports_and_the_next_step_opens(api: Api) -> None:
    run = start(api, brand=unique())["run"]
    answer = api.as_("ops-console").post(f"/v1/runs/{run}/steps/assess", json=report(api, "crisis-pr", "assess"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "run": run, "step": "assess", "state": "done", "actor": "li-wei", "actor_text": "li-wei (api)"
    }
    row = api.as_("ops-console").get(f"/v1/runs/{run[:6]}").json()  # a unique prefix works too
    steps = {s["step"]: s for s in row["steps"]}
    assert steps["assess"]["state"] == "done" and steps["assess"]["actor"] == "li-wei"
    [(actor, data)] = recorded(api, run, "step_done")
    assert (actor, how(data)) == ("li-wei", {"via": "api", "token": "ops-console"})


def test_an_operator_reports_for_someone_and_the_ledger_keeps_both(api: Api, sop) -> None:
    run = start(api, brand=unique())["run"]
    answer = api.as_("ops-console").post(
        f"/v1/runs/{run}/steps/assess", json=report(api, "crisis-pr", "assess", actor="wang-fang")
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["actor"], answer.json()["actor_text"]) == ("wang-fang", "li-wei for wang-fang (api)")
    [(actor, data)] = recorded(api, run, "step_done")
    assert (actor, how(data)) == ("wang-fang", {"via": "api", "by": "li-wei", "token": "ops-console"})

    story = api.as_("audit-readonly").get(f"/v1/audit/runs/{run}").json()
    assess = next(s for s in story["steps"] if s["id"] == "assess")
    assert (assess["actor"], assess["actor_text"]) == ("wang-fang", "li-wei for wang-fang (api)")
    assert story["initiator_text"] == "li-wei (api)"
    shown = sop("audit", "show", run, env={"SOP_DATABASE_URL": api.engine.ledger.url})
    assert shown.returncode == 0, shown.stderr
    assert "assess done by li-wei for wang-fang (api)" in shown.stdout
    assert "token: ops-console" in shown.stdout and "CST (UTC+8) by li-wei (api)" in shown.stdout


@pytest.mark.parametrize(
    ("named", "says"),
    [
        ("mallory", "actor `mallory` is not a person in config/ (people: "),
        ("wang-fan", "actor `wang-fan` is not a person in config/; did you mean `wang-fang`?"),
        ("pr-lead", "actor `pr-lead` is not a person in config/"),  # a role is not someone
        ("", "actor `` is not a person in config/"),
    ],
)
def test_an_operator_reports_only_for_people_of_config(api: Api, named: str, says: str) -> None:
    run = start(api, brand=unique())["run"]
    before = record_count(api)
    answer = api.as_("ops-console").post(
        f"/v1/runs/{run}/steps/assess", json=report(api, "crisis-pr", "assess", actor=named)
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "body.actor" and says in answer.json()["error"]
    assert record_count(api) == before
    assert {s["step"]: s["state"] for s in api.as_("ops-console").get(f"/v1/runs/{run}").json()["steps"]}[
        "assess"
    ] == "active"


def test_an_operator_cannot_approve_for_someone_a_run_it_started(api: Api) -> None:
    """Four-eyes: li-wei's token started the run, so li-wei may not approve it in anyone's name."""
    run = start(api, "ab-rollout", experiment_id=unique("exp"), uplift_pct=15.0)["run"]
    operator = api.as_("ops-console")
    verified = {
        "values": {"control_group": True, "single_variable": True, "full_lifecycle": True, "significant": True,
                   "consistent": True, "measured_uplift_pct": 14.2},
        "evidence": ["https://wiki.example/experiments/report"],
        "actor": "priya-nair",
    }
    assert operator.post(f"/v1/runs/{run}/steps/verify", json=verified).status_code == 200
    before = record_count(api)
    approve = operator.post(
        f"/v1/runs/{run}/steps/approve", json={"values": {"first_wave_pct": 10}, "actor": "zhang-min"}
    )
    assert approve.status_code == 422, approve.text
    assert approve.json()["field"] == "body.actor"
    assert "li-wei started this run and cannot approve it for zhang-min (four-eyes rule)" in approve.json()["error"]
    assert record_count(api) == before and recorded(api, run, "approval") == []


def test_a_responder_reports_only_on_its_steps_and_as_itself(api: Api) -> None:
    run = start(api, "page-speed", page=unique("/p"))["run"]
    responder = api.as_("sre-oncall-phone")
    not_mine = responder.post(f"/v1/runs/{run}/steps/impact", json={"values": {}})
    assert not_mine.status_code == 403 and "assigned to data-analyst" in not_mine.json()["error"]
    before = record_count(api)
    as_other = responder.post(f"/v1/runs/{run}/steps/triage", json=report(api, "page-speed", "triage",
                                                                           actor="tom-becker"))
    assert as_other.status_code == 403 and as_other.json()["field"] == "body.actor"
    assert "reports as zhao-lei, not tom-becker" in as_other.json()["error"]
    assert record_count(api) == before
    mine = responder.post(f"/v1/runs/{run}/steps/triage", json=report(api, "page-speed", "triage"))
    assert mine.status_code == 200, mine.text
    assert (mine.json()["actor"], mine.json()["actor_text"]) == ("zhao-lei", "zhao-lei (api)")
    [(actor, data)] = recorded(api, run, "step_done")
    assert (actor, how(data)) == ("zhao-lei", {"via": "api", "token": "sre-oncall-phone"})


def test_an_operator_cancels_a_run(api: Api) -> None:
    run = start(api, brand=unique())["run"]
    answer = api.as_("ops-console").post(f"/v1/runs/{run}/cancel", json={"reason": "false alarm"})
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    row = api.as_("ops-console").get(f"/v1/runs/{run}").json()
    assert row["status"] == "cancelled" and row["outcome"] == "cancelled: false alarm"
    [(actor, data)] = recorded(api, run, "run_cancelled")
    assert (actor, how(data)) == ("li-wei", {"via": "api", "token": "ops-console"})
    [(actor, data)] = recorded(api, run, "run_started")
    assert (actor, how(data)) == ("li-wei", {"via": "api", "token": "ops-console"})
    twice = api.as_("ops-console").post(f"/v1/runs/{run}/cancel", json={"reason": "again"})
    assert twice.status_code == 409 and "already cancelled" in twice.json()["error"]


# --- bad input: a 4xx naming the field, nothing written ---------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "field", "says"),
    [
        ("/v1/runs", b'{"sop": "crisis-pr", ', 400, "body", "malformed JSON"),
        ("/v1/runs", b"", 400, "body", "no body"),
        ("/v1/runs", b"[1, 2]", 422, "body", "expected a JSON object"),
        ("/v1/runs", b'{"sop": "no-such-sop"}', 404, "body.sop", "unknown SOP `no-such-sop`"),
        ("/v1/runs", b'{"sop": 42}', 422, "body.sop", "valid string"),
        ("/v1/runs", b'{"sop": "crisis-pr", "inptus": {}}', 422, "body.inptus", "unknown field"),
        (
            "/v1/runs",
            b'{"sop": "crisis-pr", "inputs": {"mentions_per_day": "lots"}}',
            422,
            "body.inputs.mentions_per_day",
            "expected integer",
        ),
        ("/v1/runs", b'{"sop": "crisis-pr", "inputs": {"colour": "red"}}', 422, "body.inputs.colour", "unknown input"),
        ("/v1/runs", b'{"sop": "creative-refresh", "inputs": {"platform": " "}}', 422, "body.inputs.platform",
         "input `platform` is required (string), got ' ': give a value"),
        ("/v1/runs", b'{"sop": "crisis-pr", "speed": 0}', 422, "body.speed", "greater than or equal to 0.001"),
    ],
)
def test_a_bad_start_is_refused_by_field(api: Api, path: str, body: bytes, status: int, field: str, says: str) -> None:
    before = record_count(api)
    answer = api.as_("ops-console").post(path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field and says in answer.json()["error"]
    assert record_count(api) == before


def test_bad_reports_are_refused_by_field(api: Api) -> None:
    run = start(api, brand=unique())["run"]
    operator = api.as_("ops-console")
    before = record_count(api)
    cases = [
        (f"/v1/runs/nope{run}/steps/assess", {}, 404, "path.run"),
        (f"/v1/runs/{run}/steps/no-such-step", {}, 404, "path.step"),
        (f"/v1/runs/{run}/steps/approve", {}, 409, "path.step"),  # not active yet
        (f"/v1/runs/{run}/steps/assess", {"values": {"severity": "apocalyptic"}}, 422, "body.values.severity"),
        (f"/v1/runs/{run}/steps/assess", {"values": {"mood": "grim"}}, 422, "body.values.mood"),
        (f"/v1/runs/{run}/steps/assess", {"outcome": "maybe"}, 422, "body.outcome"),
        (f"/v1/runs/{run}/steps/assess", {"values": form_values(api, "crisis-pr", "assess")}, 422, "body.evidence"),
        (f"/v1/runs/{run}/steps/assess", {"outcome": "rejected"}, 422, "body.note"),
        (f"/v1/runs/{run}/cancel", {"reason": ""}, 422, "body.reason"),
        (f"/v1/runs/{run}/cancel", {}, 422, "body.reason"),
    ]
    for path, body, status, field in cases:
        answer = operator.post(path, json=body)
        assert (answer.status_code, answer.json()["field"]) == (status, field), (path, body, answer.text)
    assert record_count(api) == before
    unknown_sop = operator.get("/v1/runs", params={"sop": "nope"})
    assert unknown_sop.status_code == 404 and unknown_sop.json()["field"] == "query.sop"
    bad_query = operator.get("/v1/runs", params={"status": "sleeping"})
    assert bad_query.status_code == 422 and bad_query.json()["field"] == "query.status"


def test_an_oversize_body_is_413(api: Api) -> None:
    limit = api.engine.site.settings.api.max_body_bytes
    big = b'{"sop": "crisis-pr", "inputs": {"brand": "' + b"x" * limit + b'"}}'
    answer = api.as_("ops-console").post("/v1/runs", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["field"] == "body"
    assert str(limit) in answer.json()["error"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    streamed = api.as_("ops-console").post("/v1/runs", content=chunks())
    assert streamed.status_code == 413


def test_an_unknown_endpoint_is_404_naming_the_path(api: Api) -> None:
    answer = api.as_("ops-console").get("/v1/nothing-here")
    assert answer.status_code == 404 and answer.json()["field"] == "path"


def test_a_new_run_is_handed_to_the_launcher_after_the_answer_a_repeat_is_not(api: Api, token_env: dict) -> None:
    from flows.api import create_app
    from tests.api.conftest import ServedApp

    launched: list[str] = []
    served = ServedApp(create_app(api.engine, env=token_env, launch=launched.append))
    try:
        client = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {api.secrets['ops-console']}"})
        brand = unique()
        first = client.post("/v1/runs", json={"sop": "crisis-pr", "inputs": {"brand": brand}}).json()
        client.post("/v1/runs", json={"sop": "crisis-pr", "inputs": {"brand": brand}})
        client.close()
    finally:
        served.stop()
    assert launched == [first["run"]]


def test_a_refused_status_update_names_what_was_wrong(api: Api) -> None:
    run = start(api, brand=unique("brand"))["run"]
    before = record_count(api)
    stranger = api.as_("sre-oncall-phone").post(f"/v1/runs/{run}/updates", json={"text": "all fine"})
    assert stranger.status_code == 403, stranger.text  # zhao-lei is no person of a crisis-PR run: not a body error
    assert "zhao-lei is not one of this run's people" in stranger.json()["error"]
    assert stranger.json()["field"] is None  # it said body.inputs, "the inputs do not fit the SOP"
    blank = api.as_("ops-console").post(f"/v1/runs/{run}/updates", json={"text": "   "})
    assert blank.status_code == 422 and blank.json()["field"] == "body.text", blank.text
    assert "needs some text" in blank.json()["error"]
    assert record_count(api) == before
