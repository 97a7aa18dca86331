"""The side doors of `sop serve`'s Prefect server are shut: nobody calls its API without the auth
string, its UI calls its own port, and a resume through Prefect (the UI's form, a forged API call,
an empty form) finishes nothing — it is recorded and logged while the run keeps waiting on its people."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
from uuid import UUID

import httpx
import pytest

from flows.engine.secrets import site_secret
from flows.language.steps.human import HumanReport
from flows.prefect.launcher import prefect_client
from flows.prefect.resume import ResumeTokens
from tests.engine.conftest import records, step_states, wait_for


def basic(auth: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


@pytest.fixture
def auth_string(stack, project) -> str:
    return (project / "var" / "prefect-auth").read_text().strip()


def test_the_prefect_api_answers_only_callers_with_the_auth_string(stack, project, auth_string):
    assert stat.S_IMODE((project / "var" / "prefect-auth").stat().st_mode) == 0o600
    version = f"{stack.api_url}/admin/version"
    assert httpx.get(version).status_code == 401
    assert httpx.get(version, headers=basic("sop:guess")).status_code == 401
    assert httpx.get(version, headers=basic(auth_string)).status_code == 200
    # a write without the string is refused too (by CSRF protection first: 403), so is one with it but
    # without the server's CSRF token (what a page of another site could make a browser send)
    create = f"{stack.api_url}/deployments/filter"
    assert httpx.post(create, json={"limit": 1}).status_code in (401, 403)
    assert httpx.post(create, json={"limit": 1}, headers=basic(auth_string)).status_code == 403
    # Prefect's own client (the engine's launcher, workers, flow runs) fetches the CSRF token and works
    with prefect_client_of_an_engineer() as client:
        assert client.read_deployments(limit=1)
    assert httpx.get(f"{stack.api_url}/health").status_code == 200  # health probes stay open


def test_the_prefect_ui_calls_the_api_on_the_port_it_was_given(stack, auth_string):
    ui = stack.api_url.removesuffix("/api")
    assert not ui.endswith(":4200")  # the test stack runs on a free port, not Prefect's default
    settings = httpx.get(f"{ui}/ui-settings").json()
    assert settings["api_url"] == stack.api_url
    assert settings["auth"] == "BASIC" and settings["csrf_enabled"] is True
    # CORS: the UI's own origin may call the API from a browser; another site may not
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    own = httpx.options(f"{stack.api_url}/flow_runs/filter", headers={"Origin": ui, **preflight})
    assert own.headers.get("access-control-allow-origin") == ui
    other = httpx.options(f"{stack.api_url}/flow_runs/filter", headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make deps-system` as root)")
def test_an_engineer_signs_in_to_the_prefect_ui_on_its_port_with_the_auth_string(stack, engine, auth_string,
                                                                                  repo_root):
    from playwright.sync_api import sync_playwright

    run_id = engine.start("t-parallel", initiator="li-wei").run_id
    wait_for(lambda: suspended(engine, run_id), 90, "the flow run to suspend")
    ui = stack.api_url.removesuffix("/api")
    shots = repo_root / "var" / "screenshots"  # test artifacts, not committed (var/ is ignored)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            refused: list[tuple[int, str]] = []
            page.on("response", lambda r: refused.append((r.status, r.url)) if r.status >= 400 else None)
            page.goto(f"{ui}/")
            page.wait_for_url(re.compile("/login"), timeout=30_000)  # no password, no UI
            page.fill("input", "admin:pass")
            page.click("button")
            page.wait_for_timeout(1000)
            assert "/login" in page.url and any(status == 401 for status, _ in refused)
            refused.clear()
            page.fill("input", auth_string)
            page.click("button")
            page.wait_for_url(lambda url: "/login" not in url)
            page.goto(f"{ui}/v2/runs", wait_until="networkidle")
            page.get_by_text(f"t-parallel-{run_id}").wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "prefect-ui-runs.png"))
            assert refused == []  # every call went to this server's port, signed in
        finally:
            browser.close()


def suspended(engine, run_id: str, after: int = 0):
    """The run's flow run once it is suspended for the ``after``+1-th time or later (None before)."""
    view = engine.view(run_id)
    if not view.run["flow_run_id"] or view.run["suspends"] <= after:
        return None
    with prefect_client(engine.launcher.api_url) as client:
        flow_run = client.read_flow_run(UUID(view.run["flow_run_id"]))
    return flow_run if flow_run.state and flow_run.state.is_paused() else None


def prefect_client_of_an_engineer():
    """Someone holding the Prefect auth string (an engineer, the UI): the door this test knocks on."""
    return prefect_client(os.environ["PREFECT_API_URL"], os.environ["PREFECT_API_AUTH_STRING"])


def resume(flow_run_id, run_input) -> str:
    """``POST /api/flow_runs/{id}/resume`` as the UI's resume form or a script sends it; Prefect's verdict."""
    with prefect_client_of_an_engineer() as client:
        result = client.resume_flow_run(flow_run_id, run_input=run_input)
    return getattr(result.status, "value", str(result.status))


def refusals(engine, run_id: str) -> list[dict]:
    return [r["data"] for r in records(engine, run_id, "resume_refused")]


def test_a_forged_resume_reports_nothing_and_is_recorded(engine, project, sop):
    run_id = engine.start("t-parallel", initiator="li-wei").run_id
    flow_run = wait_for(lambda: suspended(engine, run_id), 90, "the flow run to suspend while people work")

    # what the Prefect UI's resume form used to take as a report: a step, a free-text actor, values
    forged = {"step": "left", "actor": "zhao-lei", "choice": "no", "note": "from the UI"}
    assert resume(flow_run.id, forged) == "ACCEPT"  # Prefect takes it (the form has a token field only) …
    wait_for(lambda: refusals(engine, run_id), 90, "the forged resume to be recorded")
    assert refusals(engine, run_id)[0] | {"flow_run_id": "-"} == {
        "reason": "no_token", "flow_run_id": "-", "suspension": 1, "fields": ["actor", "choice", "note", "step"]}
    flow_run = wait_for(lambda: suspended(engine, run_id, after=1), 90, "the run to wait on its people again")
    assert step_states(engine, run_id)["left"] == "active"  # … and nobody acted as zhao-lei

    # a token made up, then the engine's own token of an earlier suspension (a replay)
    assert resume(flow_run.id, {"token": "made-up"}) == "ACCEPT"
    wait_for(lambda: len(refusals(engine, run_id)) == 2, 90, "the made-up token to be recorded")
    flow_run = wait_for(lambda: suspended(engine, run_id, after=2), 90, "the run to wait again")
    replay = ResumeTokens(site_secret(project)).sign(run_id, str(flow_run.id), 1)
    assert resume(flow_run.id, {"token": replay}) == "ACCEPT"
    wait_for(lambda: len(refusals(engine, run_id)) == 3, 90, "the replayed token to be recorded")
    assert [r["reason"] for r in refusals(engine, run_id)] == ["no_token", "forged", "stale"]
    assert step_states(engine, run_id)["left"] == "active"
    # the auditor sees each one on the run's timeline
    shown = sop("audit", "show", run_id, env={"SOP_HOME": str(project)})
    assert "Prefect resume refused (no_token): not signed by the engine, reported nothing; it carried actor, " \
           "choice, note, step" in " ".join(shown.stdout.split())


def test_a_late_engine_resume_meant_for_an_earlier_suspension_is_turned_away_by_prefect(engine, project):
    """Two services resume one flow run at once (a report in the API, a timer in `sop timers`): the second is
    late, the flow run has run and suspended again. Prefect turns it away (its suspension is not this one), so
    the audit shows no false refusal and the run waits on its people as before."""
    run_id = engine.start("t-parallel", initiator="li-wei").run_id
    wait_for(lambda: suspended(engine, run_id), 90, "the flow run to suspend while people work")
    engine.report(run_id, "left", HumanReport(actor="zhao-lei", values={"choice": "no"}))
    flow_run = wait_for(lambda: suspended(engine, run_id, after=1), 90, "the run to wait on its people again")
    late = ResumeTokens(site_secret(project)).sign(run_id, str(flow_run.id), 1)
    assert resume(flow_run.id, {"token": late, "suspension": 1}) == "REJECT"
    assert suspended(engine, run_id, after=1) is not None and refusals(engine, run_id) == []
    engine.report(run_id, "right", HumanReport(actor="zhang-min"))  # the engine's own resume still gets through
    wait_for(lambda: step_states(engine, run_id)["join"] == "active" and suspended(engine, run_id, after=2), 90,
             "the join to be assigned after the engine's resume")
    assert refusals(engine, run_id) == []


def test_an_empty_resume_is_recorded_not_silent(engine):
    run_id = engine.start("t-parallel", initiator="li-wei").run_id
    flow_run = wait_for(lambda: suspended(engine, run_id), 90, "the flow run to suspend")
    assert resume(flow_run.id, None) == "ACCEPT"  # the UI's resume button with nothing filled in
    wait_for(lambda: refusals(engine, run_id), 90, "the empty resume to be recorded")
    assert refusals(engine, run_id)[0]["reason"] == "no_token" and refusals(engine, run_id)[0]["fields"] == []
    wait_for(lambda: suspended(engine, run_id, after=1), 90, "the run to wait on its people again")
    assert step_states(engine, run_id) == {"left": "active", "right": "active", "join": "pending",
                                           "only-if-yes": "pending"}


def test_reports_through_the_engine_resume_the_run_to_its_end(engine):
    run_id = engine.start("t-parallel", initiator="li-wei").run_id
    wait_for(lambda: suspended(engine, run_id), 90, "the flow run to suspend")
    engine.report(run_id, "left", HumanReport(actor="zhao-lei", values={"choice": "no"}))
    engine.report(run_id, "right", HumanReport(actor="zhang-min"))
    wait_for(lambda: suspended(engine, run_id, after=1) and step_states(engine, run_id)["join"] == "active", 90,
             "the engine's resume to be taken and the join assigned")
    engine.report(run_id, "join", HumanReport(actor="tom-becker"))
    wait_for(lambda: not engine.view(run_id).is_open, 90, "the run to finish")

    def completed():
        with prefect_client_of_an_engineer() as client:
            state = client.read_flow_run(UUID(engine.view(run_id).run["flow_run_id"])).state
        return state is not None and state.is_completed()

    wait_for(completed, 90, "the flow run to complete")
    assert refusals(engine, run_id) == []  # the engine's tokens are taken, every time


def test_sop_run_and_sop_done_in_another_shell_sign_in_with_the_sites_auth_file(sop, project, engine):
    shell = {"SOP_HOME": str(project), "PREFECT_API_URL": engine.launcher.api_url,
             "PREFECT_API_AUTH_STRING": None}  # a fresh terminal: the auth string is only in var/prefect-auth
    started = sop("run", "t-parallel", "--as", "li-wei", "--json", env=shell)
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run"]
    wait_for(lambda: suspended(engine, run_id), 90, "the flow run `sop run` created to suspend")
    done = sop("done", run_id, "right", "--as", "zhang-min", env=shell)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: suspended(engine, run_id, after=1), 90, "`sop done`'s resume to be taken")
    assert refusals(engine, run_id) == []


@pytest.mark.parametrize("command", ["deploy", "executor"])
def test_a_wrong_auth_string_is_said_as_such_in_one_line(sop, stack, project, command):
    """The server answers, refusing us: 'start it' was the wrong hint, and the executor died with a traceback."""
    done = sop(command, env={"SOP_HOME": str(project), "PREFECT_API_URL": stack.api_url,
                             "PREFECT_API_AUTH_STRING": "sop:wrong-password"}, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"the Prefect server at {stack.api_url} refused our credentials (HTTP 401)" in done.stderr, done.stderr
    assert "PREFECT_SERVER_API_AUTH_STRING" in done.stderr and "start it" not in done.stderr
