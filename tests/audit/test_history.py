"""An auditor asks which version of a playbook was in force for each run, and what changed between them."""

from __future__ import annotations

import json
from typing import Any

from tests.audit.conftest import Scenario


def test_history_lists_each_text_that_ran_with_a_diff(sop: Any, scenario: Scenario) -> None:
    # SOP_HOME is the scenario's project: its audit-routine.yaml is the edited (v2) text
    env = {"SOP_DATABASE_URL": scenario.url, "SOP_HOME": str(scenario.root)}
    done = sop("audit", "history", "audit-routine", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "audit-routine: 2 version(s) in 2 period(s)" in out
    assert scenario.runs["D"] in out and scenario.runs["E"] in out
    assert "current file" in out
    assert "-    due: 30m" in out and "+    due: 45m" in out
    assert "+    description: Export the rows the change touches." in out

    data = json.loads(sop("audit", "history", "audit-routine", "--json", env=env).stdout)
    assert [p["version"] for p in data["periods"]] == ["1", "2"]
    assert [(p["runs"], p["first_run"]) for p in data["periods"]] == [(1, scenario.runs["D"]), (1, scenario.runs["E"])]
    assert data["current_hash"] == data["versions"][1] and data["current_ran"] is True
    assert all(data["texts_ok"].values())
    [change] = data["changes"]
    assert change["diff"].startswith(f"--- audit-routine v1 ({data['versions'][0][:12]})")


def test_one_text_only_has_no_diff(sop: Any, scenario: Scenario) -> None:
    data = json.loads(sop("audit", "history", "audit-incident", "--json", env={"SOP_DATABASE_URL": scenario.url}).stdout)
    assert [(p["version"], p["runs"]) for p in data["periods"]] == [("3", 4)]
    assert data["changes"] == [] and data["current_hash"] is None  # not in the repo's library


def test_an_sop_that_never_ran_says_which_did(sop: Any, scenario: Scenario) -> None:
    done = sop("audit", "history", "crisis-pr", env={"SOP_DATABASE_URL": scenario.url})
    assert done.returncode == 1
    assert "no run of SOP `crisis-pr` in the ledger" in done.stderr
    assert "SOPs that ran: audit-incident, audit-routine" in done.stderr
