"""`sop audit actions` and `GET /v1/audit/actions`: what people did outside any run (sign-ins, on-call overrides,
silences), each naming who and how it came, in the order it came; the same lines on the terminal and the API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.api import app as api
from flows.audit import Audit
from flows.engine.oncall import add_override, end_override
from flows.engine.silences import SilenceBook
from flows.engine.transitions import Engine
from flows.language.actors import Actor
from flows.language.library import load_library
from flows.ledger import Ledger
from tests.api.conftest import ServedApp
from tests.conftest import TestDatabase
from tests.engine.conftest import make_project


def test_overrides_and_silences_are_listed_with_who_how_and_why(sop: Any, repo_root: Path, tmp_path: Path,
                                                                 database: TestDatabase) -> None:
    root = make_project(repo_root, tmp_path / "project")
    env = {"SOP_HOME": str(root), "SOP_DATABASE_URL": database.url_at(root / "var" / "ledger.db"),
           "SOP_INBOX_DIR": str(root / "var" / "inbox"), "SOP_ACTOR": None, "PREFECT_API_URL": None}
    ledger = Ledger(env["SOP_DATABASE_URL"] or "")
    ledger.migrate()
    site = load_library(root).site
    li_wei = Actor(person="li-wei", via="cli", os_user="ops")  # as `sop oncall override … --as li-wei` records it
    now = ledger.clock.now()
    made = add_override(site, ledger, "pr-oncall", "sara-lopez", now, now + timedelta(days=1), "wang-fang on leave",
                        li_wei)
    end_override(ledger, made.id, "back early", li_wei)
    SilenceBook(ledger).create("alertname=DiskFull", "1h", "disk swap", li_wei)

    listed = json.loads(sop("audit", "actions", "--json", env=env).stdout)
    assert [line["kind"] for line in listed] == ["oncall_override", "oncall_override_ended", "silence_created"]
    assert all(line["who"] == "li-wei (cli, self-declared, os user ops)" for line in listed)
    made_line, ended, silenced = (line["what"] for line in listed)
    assert made_line.startswith("put sara-lopez on call as primary of pr-oncall instead of wang-fang from ")
    assert made_line.endswith(": wang-fang on leave") and ended.startswith(f"ended override #{made.id} (sara-lopez for")
    assert 'silenced alertname="DiskFull" from ' in silenced and silenced.endswith(": disk swap")
    assert " UTC until " in silenced and "." not in silenced.split(" from ")[1].split(" (sil-")[0]  # minutes, UTC
    # the table says those times in its own zone, as its own column (the exports' words stay UTC, as their times)
    table = " ".join(sop("audit", "actions", env={**env, "COLUMNS": "400"}).stdout.split())
    assert "times Asia/Shanghai" in table and "CST (UTC+8) until " in table and " UTC until " not in table, table
    assert [line["seq"] for line in listed] == sorted(line["seq"] for line in listed)
    bad = sop("audit", "actions", "--kind", "logins", env=env)
    assert bad.returncode == 1 and "unknown kind `logins`" in bad.stderr and "sign-in, oncall, silence" in bad.stderr

    audit = Audit(ledger)
    assert [line.kind for line in audit.actions(kinds=["silence"])] == ["silence_created"]
    served = ServedApp(api.create_app(Engine(load_library(root), ledger), env={"SOP_TOKEN_AUDITOR": "a" * 32}))
    try:
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {'a' * 32}"}) as http:
            assert http.get("/v1/audit/actions").json() == listed  # the terminal's lines
            assert [r["kind"] for r in http.get("/v1/audit/actions", params={"kind": "oncall"}).json()] == [
                "oncall_override", "oncall_override_ended"]
            refused = http.get("/v1/audit/actions", params={"kind": "logins"})
            assert refused.status_code == 422 and refused.json()["field"] == "query.kind"
            csv = http.get("/v1/audit/actions", params={"format": "csv"})
            assert csv.text.splitlines()[0] == "at,seq,kind,who,what" and len(csv.text.splitlines()) == 4
    finally:
        served.stop()
        ledger.dispose()


def test_the_terminal_draws_the_actions_as_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.audit.actions import ActionLine
    from flows.cli.audit_views import print_actions
    from flows.cli.common import console

    line = ActionLine(at=datetime(2026, 12, 6, 10, 0, tzinfo=UTC), seq=42, kind="oncall_override",
                      who="li-wei (cli, self-declared, os user ops)", what="put sara-lopez on call …: wang-fang on leave")
    monkeypatch.setattr(console, "_width", 300)  # one row per line, as a wide terminal; back to following COLUMNS after
    with console.capture() as captured:
        print_actions([line])
    table = captured.get()
    assert "1 action(s) outside runs" in table and "wang-fang on leave" in table
    assert re.search(r"2026-12-06 10:00:00 │\s+42 │ oncall_override │ li-wei \(cli, self-declared, os user ops\) │", table), table
