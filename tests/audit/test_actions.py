"""`sop audit actions` and `GET /v1/audit/actions`: what people did outside any run (sign-ins, on-call overrides,
silences), each naming who and how it came, in the order it came; the same lines on the terminal and the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from flows.api import app as api
from flows.engine.transitions import Engine
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
    steps = [("oncall", "override", "pr-oncall", "sara-lopez", "--until", "+1d", "--reason", "wang-fang on leave"),
             ("oncall", "override", "end", "1", "--reason", "back early"),
             ("silence", "--match", "alertname=DiskFull", "--for", "1h", "--reason", "disk swap")]
    for step in steps:
        done = sop(*step, "--as", "li-wei", env=env)
        assert done.returncode == 0, done.stderr

    listed = json.loads(sop("audit", "actions", "--json", env=env).stdout)
    assert [line["kind"] for line in listed] == ["oncall_override", "oncall_override_ended", "silence_created"]
    assert all(line["who"].startswith("li-wei (cli, os user ") for line in listed)
    made, ended, silenced = (line["what"] for line in listed)
    assert made.startswith("put sara-lopez on call as primary of pr-oncall instead of wang-fang from ")
    assert made.endswith(": wang-fang on leave") and ended.startswith("ended override #1 (sara-lopez for pr-oncall")
    assert 'silenced alertname="DiskFull" from ' in silenced and silenced.endswith(": disk swap")
    assert " UTC until " in silenced and "." not in silenced.split(" from ")[1].split(" (sil-")[0]  # minutes, UTC
    assert [line["seq"] for line in listed] == sorted(line["seq"] for line in listed)

    only = json.loads(sop("audit", "actions", "--kind", "silence", "--json", env=env).stdout)
    assert [line["kind"] for line in only] == ["silence_created"]
    table = sop("audit", "actions", env=env).stdout
    assert "3 action(s) outside runs" in table and "wang-fang on leave" in table
    bad = sop("audit", "actions", "--kind", "logins", env=env)
    assert bad.returncode == 1 and "unknown kind `logins`" in bad.stderr and "sign-in, oncall, silence" in bad.stderr

    ledger = Ledger(env["SOP_DATABASE_URL"] or "")
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
