"""An auditor reads one run end to end: who was asked, who was told (and whether it reached them),
who did what and when, every deadline, and the exact SOP text the run used."""

from __future__ import annotations

import json
from typing import Any

from flows.audit import Audit
from tests.audit.conftest import HERE, REFUSED_URL, T0, Scenario

M = 60.0


def _step(doc: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in doc["steps"] if s["id"] == step_id)


def test_a_late_run_shows_its_trigger_every_escalation_and_every_delivery(audit: Audit, scenario: Scenario) -> None:
    doc = audit.show(scenario.runs["B"][:6])  # a prefix is enough
    assert doc["run"] == scenario.runs["B"]
    assert doc["trigger"] == {"kind": "alert", "alertname": "HighErrorRate", "labels": {"service": "checkout"}}
    assert (doc["initiator"], doc["deadline"], doc["deadline_s"], doc["time_to_complete_s"]) == ("alertmanager", "met", 60 * M, 54 * M)

    triage = _step(doc, "triage")
    assert (triage["assignee"], triage["person"], triage["actor"]) == ("sre-oncall", "zhao-lei", "kenji-sato")
    assert (triage["due_s"], triage["took_s"], triage["deadline"]) == (10 * M, 12 * M, "missed")
    assert (triage["values"], triage["evidence"]) == ({"severity": "high"}, ["https://grafana.example/d/db"])
    assert [(e["offset_s"], e["message"], e["notify"]) for e in triage["escalations"]] == [
        (5 * M, "reminder", ["assignee"]), (10 * M, "escalated", ["lead"])]
    assert triage["overdue_at"] == T0.replace(hour=10, minute=10)

    sent = {(n["kind"], n["offset_s"]): n for n in triage["notifications"]}
    assert set(sent) == {("assigned", 0.0), ("reminder", 5 * M), ("escalated", 10 * M), ("step_done", 12 * M)}
    [to_oncall] = sent[("assigned", 0.0)]["deliveries"]
    assert (to_oncall["recipient"], to_oncall["destination"], to_oncall["ok"]) == ("zhao-lei", "inbox://zhao-lei", True)
    [to_lead] = sent[("escalated", 10 * M)]["deliveries"]  # the SRE lead's only contact is down
    assert (to_lead["recipient"], to_lead["destination"], to_lead["ok"]) == ("tom-becker", REFUSED_URL, False)
    assert "Connection refused" in to_lead["error"]
    # how many of a page's destinations got it: the assigned one did, the escalation to a dead contact did not
    assert (sent[("assigned", 0.0)]["delivered"], sent[("escalated", 10 * M)]["delivered"]) == (1, 0)
    assert sent[("escalated", 10 * M)]["destinations"] == 1

    assert _step(doc, "review")["deadline"] == "met"
    assert [n["kind"] for n in doc["notifications"]] == ["run_started", "run_finished"]


def test_reports_keep_their_form_values_notes_evidence_and_approvals(audit: Audit, scenario: Scenario) -> None:
    doc = audit.show(scenario.runs["A"])
    triage = _step(doc, "triage")
    assert triage["note"] == "error rate 12% on checkout"
    assert triage["evidence"] == ["https://grafana.example/d/errors"]
    assert _step(doc, "fix")["values"] == {"change": "rolled back release 2026.03.1"}

    e = audit.show(scenario.runs["E"])
    sign_off = _step(e, "sign-off")
    assert [(a["actor"], a["note"]) for a in sign_off["approvals"]] == [
        ("zhang-min", ""), ("guo-jing", "approved after the data check")]
    assert (sign_off["actor"], sign_off["deadline"], sign_off["took_s"]) == ("guo-jing", "missed", 40 * M)
    assert _step(e, "announce")["kind"] == "notify" and _step(e, "announce")["deadline"] == "none"


def test_a_cancelled_run_says_who_stopped_it_and_why(audit: Audit, scenario: Scenario) -> None:
    doc = audit.show(scenario.runs["D"])
    assert (doc["status"], doc["outcome"], doc["ended_by"], doc["deadline"]) == (
        "cancelled", "cancelled", "tom-becker", "n/a")
    assert _step(doc, "sign-off")["state"] == "cancelled"
    assert doc["timeline"][-2]["text"] == "run cancelled by tom-becker (direct): change window closed"
    assert doc["ended_by_text"] == "tom-becker (direct)"  # a Python caller: how it came is said too


def test_a_compressed_drill_reads_in_sop_time(audit: Audit, scenario: Scenario) -> None:
    doc = audit.show(scenario.runs["C"])
    assert doc["speed"] == 60.0
    assert [(t["offset_s"], t["kind"]) for t in doc["timeline"] if t["kind"] in ("run_overdue", "run_finished")] == [
        (60 * M, "run_overdue"), (65 * M, "run_finished")]
    assert (doc["ended_at"] - doc["started_at"]).total_seconds() == 65.0  # 65 real seconds


def test_the_pinned_sop_text_is_the_exact_file_the_run_started_with(audit: Audit, scenario: Scenario) -> None:
    doc = audit.show(scenario.runs["A"])
    assert doc["sop_text"] == (HERE / "sops" / "audit-incident.yaml").read_text()
    assert doc["sop_text_ok"] is True
    d = audit.show(scenario.runs["D"])  # run before the file was edited: its own text, version 1
    assert "version: 1" in d["sop_text"] and "due: 45m" not in d["sop_text"]


def test_the_cli_prints_the_whole_story_and_json_for_machines(sop: Any, scenario: Scenario) -> None:
    env = {"SOP_DATABASE_URL": scenario.url}
    done = sop("audit", "show", scenario.runs["B"], env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "trigger: alert HighErrorRate by alertmanager" in out
    assert '"labels": {"service": "checkout"}' in out
    assert "triage reminder, escalation stage 1 → assignee" in out  # the key ("level": "1") is the JSON's
    assert f"→ tom-becker {REFUSED_URL} failed" in out
    assert "triage done by kenji-sato (direct), after its due time" in out
    assert 'values: severity="high"' in out and "evidence: https://grafana.example/d/db" in out
    assert "text verified" in out and "id: audit-incident" in out  # the SOP text, last

    machine = json.loads(sop("audit", "show", scenario.runs["B"], "--json", env=env).stdout)
    assert machine["run"] == scenario.runs["B"] and machine["steps"][0]["id"] == "triage"

    missing = sop("audit", "show", "nope", env=env)
    assert missing.returncode == 1 and "no run `nope` in the ledger" in missing.stderr
