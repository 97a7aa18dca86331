"""`sop silence` as a user types it: make one (a person of config, a reason), list it, end it; bad matchers are
refused with where they are wrong; `sop audit report` and `sop audit silenced` say who silenced what and why."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from flows.engine.build import build_engine
from flows.language.library import load_library
from flows.ledger import Ledger
from flows.triggers.intake import Intake
from flows.triggers.model import Alert
from tests.conftest import TestDatabase
from tests.engine.conftest import make_project

Sop = Callable[..., CompletedProcess[str]]


@pytest.fixture
def home(repo_root: Path, tmp_path: Path, database: TestDatabase) -> dict[str, str | None]:
    root = make_project(repo_root, tmp_path / "project")
    return {"SOP_HOME": str(root), "SOP_DATABASE_URL": database.url_at(root / "var" / "ledger.db"),
            "SOP_INBOX_DIR": str(root / "var" / "inbox"), "SOP_ACTOR": None, "PREFECT_API_URL": None}


def test_a_silence_is_made_listed_and_ended_from_the_terminal(sop: Sop, home: dict[str, str | None]) -> None:
    made = sop("silence", "--match", "alertname=NegativeSentimentSpike,brand=lumi", "--for", "2h",
               "--reason", "campaign launch", "--as", "li-wei", "--json", env=home)
    assert made.returncode == 0, made.stderr
    silence = json.loads(made.stdout)
    assert silence["state"] == "active" and silence["created_by"] == "li-wei" and silence["created_via"] == "cli"

    listed = sop("silence", "list", env=home)
    assert listed.returncode == 0 and silence["id"] in listed.stdout and "campaign launch" in listed.stdout

    # an alert comes in while it holds: recorded, no run (the intake of the API, on the same ledger)
    root = Path(home["SOP_HOME"] or "")
    ledger = Ledger(home["SOP_DATABASE_URL"] or "")
    engine = build_engine(load_library(root), ledger=ledger)
    try:
        [held] = Intake(engine).alerts([Alert(source="alertmanager", status="firing", labels={
            "alertname": "NegativeSentimentSpike", "brand": "lumi"})], "token:alertmanager")
        assert (held.status, held.silence) == ("silenced", silence["id"])
    finally:
        engine.pager.close()
        ledger.dispose()

    report = sop("audit", "report", env=home)
    assert report.returncode == 0, report.stderr
    assert "Silenced triggers" in report.stdout and silence["id"] in report.stdout
    assert "li-wei (cli" in report.stdout and "campaign launch" in report.stdout
    assert re.search(r"until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d CST \(UTC\+8\)", report.stdout), report.stdout  # its zone said
    exported = json.loads(sop("audit", "report", "--json", "-", env=home).stdout)
    [row] = exported["silences"]
    assert (row["silence"], row["silenced"], row["by_sop"], row["reason"]) == (
        silence["id"], 1, {"crisis-pr": 1}, "campaign launch")
    assert "Silenced triggers" in sop("audit", "report", "--html", "-", env=home).stdout
    listing = sop("audit", "silenced", "--json", env=home)
    [line] = json.loads(listing.stdout)
    assert (line["silence"], line["sop"], line["silenced_by"], line["reason"]) == (
        silence["id"], "crisis-pr", "li-wei", "campaign launch")

    nobody = sop("silence", "end", silence["id"], "--reason", "done", env=home)
    assert nobody.returncode == 1 and "--as" in nobody.stderr
    ended = sop("silence", "end", silence["id"], "--reason", "launch over", "--as", "li-wei", env=home)
    assert ended.returncode == 0, ended.stderr
    again = sop("silence", "end", silence["id"], "--reason", "again", "--as", "li-wei", env=home)
    assert again.returncode == 1 and "already ended" in again.stderr and "Traceback" not in again.stderr


def test_bad_matchers_and_strangers_are_refused_with_nothing_silenced(sop: Sop, home: dict[str, str | None]) -> None:
    bad = sop("silence", "--match", "alertname=X,brand~lumi", "--for", "2h", "--reason", "r", "--as", "li-wei",
              env=home)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "--match: at column 13: `brand` has no operator" in bad.stderr and "nothing was silenced" in bad.stderr
    negated = sop("silence", "--match", "alertname!=X", "--for", "2h", "--reason", "r", "--as", "li-wei", env=home)
    assert negated.returncode == 1 and "`!=` is not supported" in negated.stderr
    long = sop("silence", "--match", "alertname=X", "--for", "2 hours", "--reason", "r", "--as", "li-wei", env=home)
    assert long.returncode == 1 and "--for:" in long.stderr
    stranger = sop("silence", "--match", "alertname=X", "--for", "2h", "--reason", "r", "--as", "mallory", env=home)
    assert stranger.returncode == 1 and "not a person in config/" in stranger.stderr
    creative = sop("silence", "--match", "service=checkout", "--for", "30m", "--reason", "r", "--as", "maria-costa",
                   env=home)  # a person of config/, no operator: as on the /silences page
    assert creative.returncode == 1 and "maria-costa is not one of settings.web.operators" in creative.stderr
    assert "no silences" in sop("silence", "list", env=home).stdout


def test_a_maintenance_window_is_typed_and_shown_in_the_sites_time_zone(sop: Sop, home: dict[str, str | None]) -> None:
    """An ops manager in Shanghai plans tonight's window as the on-call overrides are typed: local time, or +2h."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    shanghai = ZoneInfo("Asia/Shanghai")  # config/settings.yaml's timezone
    begins = (datetime.now(shanghai) + timedelta(days=1)).replace(hour=22, minute=0, second=0, microsecond=0)
    made = sop("silence", "--match", "alertname=HighErrorRate", "--for", "2h", "--from",
               begins.strftime("%Y-%m-%dT%H:%M"), "--reason", "db upgrade", "--as", "li-wei", "--json", env=home)
    assert made.returncode == 0, made.stderr
    silence = json.loads(made.stdout)
    assert datetime.fromisoformat(silence["starts_at"]) == begins.astimezone(UTC)  # 22:00 Shanghai, 14:00 UTC

    listed = sop("silence", "list", env=home)
    assert f"{begins:%Y-%m-%d} 22:00:00 CST (UTC+8)" in listed.stdout and "Times in Asia/Shanghai" in listed.stdout

    later = sop("silence", "--match", "alertname=DiskFull", "--for", "1h", "--from", "+2h", "--reason", "disk swap",
                "--as", "li-wei", "--json", env=home)
    assert later.returncode == 0, later.stderr
    starts = datetime.fromisoformat(json.loads(later.stdout)["starts_at"])
    assert timedelta(minutes=118) < starts - datetime.now(UTC) <= timedelta(hours=2)

    bad = sop("silence", "--match", "alertname=X", "--for", "1h", "--from", "tonight", "--reason", "r",
              "--as", "li-wei", env=home)
    assert bad.returncode == 1 and "--from: expected a time such as 2026-12-06T22:00 (Asia/Shanghai)" in bad.stderr and "Asia/Shanghai" in bad.stderr
    assert "Traceback" not in bad.stderr
