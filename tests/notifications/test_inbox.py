"""The built-in inbox: a fresh clone delivers to var/inbox/<name>.jsonl with no secret at all."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from notifications import Message, Recipient, deliver, inbox_dir, read_inbox

MESSAGE = Message(
    title="[P2] Reminder: Check the CDN", body="Due in **10m**.", notify_type="warning", priority=2, kind="reminder"
)


def person(*urls: str, pid: str = "zhao-lei") -> Recipient:
    return Recipient(id=pid, name=pid.title(), kind="person", urls=urls)


def test_a_message_is_appended_as_one_json_line(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path))
    [first] = deliver(MESSAGE, [person("${ZHAO_LEI_URL:-inbox://zhao-lei}")])
    deliver(Message(title="second", body="b"), [person("inbox://zhao-lei")])
    assert (first.ok, first.destination, first.attempts) == (True, "inbox://zhao-lei", 1)
    lines = (tmp_path / "zhao-lei.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert set(record) == {"at", "title", "body", "type", "recipient"}
    assert (record["title"], record["body"], record["type"], record["recipient"]) == (
        "[P2] Reminder: Check the CDN",
        "Due in **10m**.",
        "warning",
        "zhao-lei",
    )
    assert datetime.fromisoformat(record["at"]).tzinfo is not None
    assert [m["title"] for m in read_inbox("zhao-lei", tmp_path)] == ["[P2] Reminder: Check the CDN", "second"]


def test_an_inbox_is_its_owners_alone(tmp_path: Path, monkeypatch: Any) -> None:
    folder = tmp_path / "inbox"
    monkeypatch.setenv("SOP_INBOX_DIR", str(folder))
    old = os.umask(0o022)  # a usual umask: files 0644, readable by every account on the host
    try:
        deliver(MESSAGE, [person("inbox://zhao-lei")])
    finally:
        os.umask(old)
    # its messages hold live step and sign-in links: anyone who reads them can act as zhao-lei
    assert stat.S_IMODE((folder / "zhao-lei.jsonl").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_folder_is_the_sites_setting_under_sop_home(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("SOP_INBOX_DIR", raising=False)
    monkeypatch.setenv("SOP_HOME", str(tmp_path))
    assert inbox_dir() == tmp_path / "var" / "inbox"
    deliver(MESSAGE, [person("inbox://zhao-lei")], inbox_dir="state/inbox")
    assert len(read_inbox("zhao-lei", tmp_path / "state" / "inbox")) == 1


def test_the_environment_overrides_the_setting_and_the_url_overrides_both(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "from-env"))
    deliver(MESSAGE, [person("inbox://zhao-lei")], inbox_dir=tmp_path / "from-settings")
    deliver(MESSAGE, [person(f"inbox://kenji-sato?dir={tmp_path / 'from-url'}", pid="kenji-sato")])
    assert len(read_inbox("zhao-lei", tmp_path / "from-env")) == 1
    assert not (tmp_path / "from-settings").exists()
    assert len(read_inbox("kenji-sato", tmp_path / "from-url")) == 1


def test_a_name_that_is_not_a_file_name_fails_clearly(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    [result] = deliver(MESSAGE, [person("inbox://..%2Fescape")], retries=0)
    assert (result.ok, result.attempts) == (False, 1)
    assert "must start with a letter or digit" in result.error
    assert list(tmp_path.rglob("*.jsonl")) == []


def test_many_writers_at_once_leave_whole_lines(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("SOP_INBOX_DIR", raising=False)
    results: list[Any] = []

    def send(i: int) -> None:
        results.extend(deliver(Message(title=f"m{i}", body="x" * 2000), [person("inbox://shared", pid=f"p{i}")],
                               inbox_dir=tmp_path))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.error for r in results if not r.ok] == []
    titles = sorted(m["title"] for m in read_inbox("shared", tmp_path))
    assert titles == sorted(f"m{i}" for i in range(40))
