"""`sop notify-test`: an operator checks that a person, role or channel can be reached."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from notifications import read_inbox
from tests.notifications.conftest import HttpReceiver


def test_a_role_with_its_backup_gets_a_test_message_in_the_local_inbox(sop: Any, tmp_path: Path) -> None:
    done = sop(
        "notify-test",
        "pr-oncall",
        "--backup",
        env={"SOP_INBOX_DIR": str(tmp_path), "WANG_FANG_URL": None, "SARA_LOPEZ_URL": None,
             "SOP_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"},
    )
    assert done.returncode == 0, done.stderr
    assert "wang-fang" in done.stdout and "sara-lopez" in done.stdout
    assert "role pr-oncall (primary)" in done.stdout and "role pr-oncall (backup)" in done.stdout
    assert done.stdout.count(" ok ") == 2
    [message] = read_inbox("wang-fang", tmp_path)
    assert message["title"] == "[P4] Test notification for Wang Fang 王芳"  # names are bilingual in config/
    assert "`sop notify-test pr-oncall`" in message["body"]
    assert len(read_inbox("sara-lopez", tmp_path)) == 1


def test_an_override_of_a_fixed_role_is_who_the_test_page_reaches(sop: Any, tmp_path: Path) -> None:
    """pr-oncall is fixed (wang-fang primary, sara-lopez backup); with sara-lopez standing in as primary, a test page
    reaches her as primary, as a real page would."""
    env = {"SOP_INBOX_DIR": str(tmp_path / "inbox"), "SOP_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
           "WANG_FANG_URL": None, "SARA_LOPEZ_URL": None}
    made = sop("oncall", "override", "pr-oncall", "sara-lopez", "--until", "+1d", "--reason", "on leave",
               "--as", "li-wei", env=env)
    assert made.returncode == 0, made.stderr
    done = sop("notify-test", "pr-oncall", env=env)
    assert done.returncode == 0, done.stderr
    assert "role pr-oncall (primary; override #1 by li-wei" in done.stdout and "sara-lopez" in done.stdout
    assert "wang-fang" not in done.stdout
    assert len(read_inbox("sara-lopez", tmp_path / "inbox")) == 1 and read_inbox("wang-fang", tmp_path / "inbox") == []


def test_every_contact_failing_exits_1_and_shows_why_without_the_secret(sop: Any, refused_url: str) -> None:
    done = sop("notify-test", "li-wei", "--timeout", "1", env={"LI_WEI_URL": refused_url + "?-token=s3cret-t0ken"})
    assert done.returncode == 1
    assert "failed" in done.stdout and "Connection refused" in done.stdout
    assert "every destination failed (1 tried)" in done.stderr
    assert "s3cret-t0ken" not in done.stdout + done.stderr
    assert "token=****" in done.stdout


def test_json_output_has_one_record_per_destination(sop: Any, http: HttpReceiver) -> None:
    done = sop("notify-test", "channel:incident-room", "--json", env={"INCIDENT_ROOM_URL": http.url("/ok/room")})
    assert done.returncode == 0, done.stderr
    [record] = json.loads(done.stdout)
    assert (record["recipient"], record["recipient_kind"], record["status"], record["attempts"]) == (
        "incident-room",
        "channel",
        "ok",
        1,
    )
    assert http.to("/ok/room")[0].json["title"] == "[P4] Test notification for incident-room"


def test_an_unknown_name_is_an_error_that_lists_what_exists(sop: Any) -> None:
    done = sop("notify-test", "nobody")
    assert done.returncode == 1
    assert "unknown notify target `nobody`" in done.stderr
    assert "pr-oncall" in done.stderr


def test_a_contact_test_goes_out_beside_a_half_edited_sop_and_a_ledger_never_used(sop: Any, repo_root: Path,
                                                                               tmp_path: Path) -> None:
    from tests.engine.conftest import make_project

    root = make_project(repo_root, tmp_path / "project")
    (root / "sops" / "zz-draft.yaml").write_text("id: zz-draft\ntitle: [unclosed\n")
    env = {"SOP_HOME": str(root), "SOP_INBOX_DIR": str(tmp_path / "inbox"),
           "SOP_DATABASE_URL": f"sqlite:///{tmp_path / 'never-used.db'}", "WANG_FANG_URL": None}
    done = sop("notify-test", "pr-oncall", env=env)
    assert done.returncode == 0, done.stderr
    assert "role pr-oncall (primary)" in done.stdout and len(read_inbox("wang-fang", tmp_path / "inbox")) == 1
    assert "Traceback" not in done.stderr and "no such table" not in done.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "never-used.db") as db:  # a contact test does not migrate (create) a ledger
        assert db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []
