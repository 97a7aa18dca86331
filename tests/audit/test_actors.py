"""An auditor sees who did each thing and how it came: a link, the CLI (and its OS user), an API
token, an operator acting for someone else — for starts, claims, help asked, reports and cancels."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from flows.audit import Audit
from flows.engine.transitions import Engine
from flows.language.actors import Actor
from flows.language.library import load_library
from flows.language.steps.human import HumanReport
from flows.ledger import Ledger

ROOT_AT_THE_CONSOLE = Actor("zhao-lei", via="cli", os_user="root")
FROM_HER_LINK = Actor("wang-fang", via="link")
FOR_HER_BY_API = Actor("wang-fang", via="api", by="li-wei", token="ops-console")


@pytest.fixture
def run_id(repo_root: Path, ledger: Ledger) -> str:
    """A crisis-pr run: started at a terminal, taken and helped from a link, reported for her by an operator, cancelled."""
    engine = Engine(load_library(repo_root), ledger)
    run = engine.start("crisis-pr", {"brand": "lumi"}, initiator=ROOT_AT_THE_CONSOLE, launch=False).run_id
    engine.claim(run, "assess", FROM_HER_LINK)
    engine.ask_for_help(run, "assess", FROM_HER_LINK, "a KOL is involved")
    engine.report(run, "assess", HumanReport(
        actor=FOR_HER_BY_API, evidence=["https://listening.example/q/1"],
        values={"severity": "high", "topic": "a broken seal", "category": "product_quality", "platforms": "weibo",
                "trend": "rising", "kol_involved": True}))
    engine.cancel(run, "handled offline", ROOT_AT_THE_CONSOLE)
    return run


def test_the_story_says_who_and_how(ledger: Ledger, run_id: str) -> None:
    doc = Audit(ledger).show(run_id)
    assess = next(s for s in doc["steps"] if s["id"] == "assess")
    assert (doc["initiator"], doc["initiator_text"]) == ("zhao-lei", "zhao-lei (cli, self-declared, os user root)")
    assert (assess["actor"], assess["actor_text"]) == ("wang-fang", "li-wei for wang-fang (api)")
    assert (assess["claimed_by"], assess["claimed_by_text"]) == ("wang-fang", "wang-fang (link)")
    assert [(h["actor_text"], h["note"]) for h in assess["help"]] == [("wang-fang (link)", "a KOL is involved")]
    assert (doc["ended_by"], doc["ended_by_text"]) == ("zhao-lei", "zhao-lei (cli, self-declared, os user root)")
    texts = [(t["step"], t["text"]) for t in doc["timeline"] if t["kind"] != "notification"]
    assert ("assess", "wang-fang (link) took it") in texts
    assert any(step == "assess" and text.startswith("help asked by wang-fang (link) → escalation stage") for step, text in texts)
    assert ("assess", "done by li-wei for wang-fang (api)") in texts
    assert (None, "run cancelled by zhao-lei (cli, self-declared, os user root): handled offline") in texts


def test_sop_audit_show_prints_the_actors_as_described(sop: Any, ledger: Ledger, run_id: str) -> None:
    shown = sop("audit", "show", run_id, env={"SOP_DATABASE_URL": ledger.url})
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "CST (UTC+8) by zhao-lei (cli, self-declared, os user root) · speed" in out  # who started it
    assert "run started by zhao-lei (cli, self-declared, os user root)" in out
    assert "assess wang-fang (link) took it" in out
    assert "assess help asked by wang-fang (link)" in out and "note: a KOL is involved" in out
    assert "assess done by li-wei for wang-fang (api)" in out and "token: ops-console" in out
    assert "run cancelled by zhao-lei (cli, self-declared, os user root): handled offline" in out
    assert "cancelled by zhao-lei (cli, self-declared, os user root) · time to acknowledge" in out
    # who acknowledged, not only how fast: the first answer by a person, where the time to acknowledge ends
    assert re.search(r"acknowledged: \S+ after the first ask, by wang-fang \(link\): assess took it \(#\d+\)", out), out

    machine = json.loads(sop("audit", "show", run_id, "--json", env={"SOP_DATABASE_URL": ledger.url}).stdout)
    assess = next(s for s in machine["steps"] if s["id"] == "assess")
    assert assess["actor_text"] == "li-wei for wang-fang (api)" and assess["claimed_by_text"] == "wang-fang (link)"
