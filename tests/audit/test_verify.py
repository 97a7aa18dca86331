"""An auditor checks that nobody changed the ledger: every kind of tampering is caught, and named.

Each story opens a copy of the ledger with ``sqlite3`` or ``psycopg`` — as someone with the file
and a shell, or with psql access, would — changes it, and runs ``sop audit verify``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.audit import Audit, AuditError
from flows.audit.verification import Anchor
from flows.audit.verify import verify_chain
from flows.ledger import GENESIS, Ledger, record_hash
from flows.ledger.schema import records
from tests.audit.conftest import HERE, Scenario, record_row, renumber, tamper
from tests.conftest import sql_on


def _seq_of(url: str, run_id: str, kind: str, step: str | None = None) -> int:
    query = "SELECT seq FROM records WHERE run_id = ? AND kind = ?" + (" AND step_id = ?" if step else "")
    [rows] = sql_on(url, (query, (run_id, kind, step) if step else (run_id, kind)))
    return rows[0]["seq"]


def _verify(sop: Callable[..., Any], url: str, *args: str) -> Any:
    return sop("audit", "verify", *args, env={"SOP_DATABASE_URL": url})


def test_an_untouched_ledger_verifies_and_gives_its_head_to_note_down(sop: Any, scenario: Scenario) -> None:
    done = _verify(sop, scenario.url, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["first_break"] is None
    assert result["records"] > 100 and result["head"]["seq"] > 0  # seqs may skip numbers (lanes' writers on PostgreSQL)
    assert result["sop_texts"] == {"checked": 3, "edited": [], "missing": []}

    plain = _verify(sop, scenario.url)
    assert "✓ chain intact" in plain.stdout
    anchor = f"{result['head']['seq']}:{result['head']['hash']}"
    assert f"--anchor {anchor}" in plain.stdout
    assert _verify(sop, scenario.url, "--anchor", anchor).returncode == 0  # the head noted down checks out


def _docs_checker(tmp_path: Path) -> Path:
    """The stand-alone checker of docs/audit.md ("Checking the chain yourself"), as an auditor copies it."""
    import re

    text = (HERE.parent.parent / "docs" / "audit.md").read_text()
    code = re.search(r"## Checking the chain yourself.*?```python\n(.*?)```", text, re.S)
    assert code, "docs/audit.md has no checker"
    script = tmp_path / "check.py"
    script.write_text(code.group(1))
    return script


@pytest.mark.sqlite_only("the docs' checker reads a SQLite file (on PostgreSQL an auditor reads the same columns "
                          "with psql)")
def test_the_checker_in_the_docs_agrees_with_verify_without_the_tool(sop: Any, scenario: Scenario, ledger_copy: str,
                                                                     tmp_path: Path) -> None:
    """An auditor who does not trust `sop audit verify` checks a copy with the docs' recipe and the standard library
    alone: the same head on an intact ledger (in lanes), the same record named on an edited one (before lanes)."""
    import subprocess
    import sys

    script = _docs_checker(tmp_path)

    def check(url: str, *anchors: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-I", str(script), url.removeprefix("sqlite:///"), *anchors],
                              capture_output=True, text=True, timeout=60)

    intact = check(scenario.url)
    head = json.loads(_verify(sop, scenario.url, "--json").stdout)["anchors"]
    assert intact.returncode == 0 and intact.stdout.startswith("intact:"), intact.stdout + intact.stderr
    assert f"head: {head[0]}" in intact.stdout
    assert [line.split(": ", 1)[1] for line in intact.stdout.splitlines() if line.startswith("newest")] == head[1:]
    assert check(scenario.url, *head).returncode == 0

    seq = _seq_of(ledger_copy, scenario.runs["B"], "step_done", "triage")
    tamper(ledger_copy, ("UPDATE records SET actor = 'mallory' WHERE seq = ?", (seq,)))
    edited = check(ledger_copy)
    assert edited.returncode == 1 and edited.stdout.startswith(f"record {seq} "), edited.stdout + edited.stderr
    assert f"✗ record {seq}: edited" in _verify(sop, ledger_copy).stdout  # what the tool says too


def test_an_edited_report_is_named_with_its_record_id(sop: Any, scenario: Scenario, ledger_copy: str) -> None:
    seq = _seq_of(ledger_copy, scenario.runs["B"], "step_done", "triage")
    data = json.loads(record_row(ledger_copy, seq)["data"])
    data["deadline_met"] = True  # someone makes a late triage look on time
    tamper(ledger_copy, ("UPDATE records SET data = ? WHERE seq = ?", (json.dumps(data), seq)))

    done = _verify(sop, ledger_copy)
    assert done.returncode == 1
    assert f"✗ record {seq}: edited" in done.stdout
    assert "does not match its hash" in done.stdout


def test_the_runs_listed_from_an_edited_ledger_say_so_and_mark_the_run_and_its_record(
        sop: Any, scenario: Scenario, ledger_copy: str) -> None:
    """`sop audit runs` read the forged verdict as any other, said nothing and exited 0; `show` warned above the story
    but told the edited record like the others. Now the list warns and fails, the run's row and its record are marked."""
    run = scenario.runs["B"]
    seq = _seq_of(ledger_copy, run, "step_done", "triage")
    data = json.loads(record_row(ledger_copy, seq)["data"])
    data["deadline_met"] = True
    tamper(ledger_copy, ("UPDATE records SET data = ? WHERE seq = ?", (json.dumps(data), seq)))
    env = {"SOP_DATABASE_URL": ledger_copy}

    listed = sop("audit", "runs", env=env)
    assert listed.returncode == 1
    assert "✗ the ledger does not verify" in listed.stderr and "these runs may not be what happened" in listed.stderr
    lines = listed.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith(run))
    assert f"✗ record {seq} edited" in lines[at + 1], lines[at:at + 2]  # under its verdict
    assert "✗ record" not in "".join(lines[:at] + lines[at + 2:])  # no other run's row
    csv_out = sop("audit", "runs", "--csv", env=env)
    assert csv_out.returncode == 1 and "does not verify" in csv_out.stderr
    assert sop("audit", "runs", "--no-verify", env=env).returncode == 0

    shown = sop("audit", "show", run, env=env).stdout
    told = shown[shown.index(f"#{seq} "):]
    assert told.splitlines()[1].strip().startswith("✗ this record does not match the chain (edited)"), told[:400]
    assert sop("audit", "runs", env={"SOP_DATABASE_URL": scenario.url}).returncode == 0


def test_every_edited_record_is_marked_not_only_the_first(sop: Any, scenario: Scenario, ledger_copy: str) -> None:
    """Two records edited in two runs: the chain breaks at the first; the second matches its place in the chain but not
    its own hash (a suspect). Both runs' rows are marked, each with its record (split42 found nothing held this)."""
    runs = [scenario.runs["A"], scenario.runs["B"]]
    seqs = [_seq_of(ledger_copy, run, "run_started") for run in runs]
    for seq in seqs:
        tamper(ledger_copy, ("UPDATE records SET actor = 'mallory' WHERE seq = ?", (seq,)))
    listed = sop("audit", "runs", env={"SOP_DATABASE_URL": ledger_copy})
    assert listed.returncode == 1
    lines = listed.stdout.splitlines()
    for run, seq in zip(runs, seqs, strict=True):
        at = next(i for i, line in enumerate(lines) if line.lstrip().startswith(run))
        assert f"✗ record {seq} edited" in lines[at + 1], (run, lines[at:at + 2])


def test_a_runs_story_read_from_an_edited_ledger_says_so(sop: Any, scenario: Scenario, ledger_copy: str) -> None:
    """`sop audit show` walks the chain too: the forged verdict is shown, under a warning, and the command fails."""
    run = scenario.runs["B"]
    seq = _seq_of(ledger_copy, run, "step_done", "triage")
    data = json.loads(record_row(ledger_copy, seq)["data"])
    data["deadline_met"] = True
    tamper(ledger_copy, ("UPDATE records SET data = ? WHERE seq = ?", (json.dumps(data), seq)))

    shown = sop("audit", "show", run, env={"SOP_DATABASE_URL": ledger_copy})
    assert shown.returncode == 1
    assert "✗ the ledger does not verify" in shown.stderr and "this run's story may not be what happened" in shown.stderr
    assert f"run {run}" in shown.stdout  # the story is still shown, for the auditor to compare
    as_json = sop("audit", "show", run, "--json", env={"SOP_DATABASE_URL": ledger_copy})
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["verification"]["ok"] is False
    untouched = sop("audit", "show", run, "--json", env={"SOP_DATABASE_URL": scenario.url})
    assert untouched.returncode == 0 and json.loads(untouched.stdout)["verification"]["ok"] is True
    skipped = sop("audit", "show", run, "--no-verify", env={"SOP_DATABASE_URL": ledger_copy})
    assert skipped.returncode == 0 and "does not verify" not in skipped.stderr


def test_a_deleted_escalation_is_named(sop: Any, scenario: Scenario, ledger_copy: str) -> None:
    seq = _seq_of(ledger_copy, scenario.runs["C"], "escalation", "fix")
    tamper(ledger_copy, ("DELETE FROM records WHERE seq = ?", (seq,)))

    done = _verify(sop, ledger_copy, "--json")
    assert done.returncode == 1
    first = json.loads(done.stdout)["first_break"]
    assert (first["seq"], first["kind"]) == (seq, "deleted")
    assert f"record {seq} deleted: the chain jumps from {seq - 1} to {seq + 1}" in first["message"]


def test_two_swapped_records_are_named_as_reordered(sop: Any, scenario: Scenario, ledger_copy: str) -> None:
    done_seq = _seq_of(ledger_copy, scenario.runs["A"], "step_done", "review")
    finished = _seq_of(ledger_copy, scenario.runs["A"], "run_finished")
    tamper(ledger_copy, ("UPDATE records SET seq = -1 WHERE seq = ?", (done_seq,)),
            ("UPDATE records SET seq = ? WHERE seq = ?", (done_seq, finished)),
            ("UPDATE records SET seq = ? WHERE seq = -1", (finished,)))

    done = _verify(sop, ledger_copy)
    assert done.returncode == 1
    assert f"✗ record {done_seq}: reordered" in done.stdout
    assert f"is the record written as {finished}" in done.stdout


def test_a_forged_record_slipped_in_with_a_valid_hash_is_named_as_inserted(sop: Any, scenario: Scenario,
                                                                           ledger_copy: str) -> None:
    # the forger knows the algorithm: the forged approval links to its predecessor and hashes right
    after = _seq_of(ledger_copy, scenario.runs["D"], "approval", "sign-off")
    before = record_row(ledger_copy, after)
    forged = {"seq": after + 1, "at": before["at"], "run_id": scenario.runs["D"], "step_id": "sign-off",
              "kind": "approval", "actor": "guo-jing", "data": json.dumps({"note": "forged", "approvals": ["zhang-min", "guo-jing"]})}
    forged["hash"] = record_hash(before["hash"], forged["seq"], datetime.fromisoformat(before["at"]), forged["run_id"],
                                 forged["step_id"], forged["kind"], forged["actor"], forged["data"])
    tamper(ledger_copy, *renumber(after, 1),
            ("INSERT INTO records (seq, at, run_id, step_id, kind, actor, data, prev_hash, hash) VALUES "
             "(:seq, :at, :run_id, :step_id, :kind, :actor, :data, :prev, :hash)", {**forged, "prev": before["hash"]}))

    done = _verify(sop, ledger_copy)
    assert done.returncode == 1
    assert f"✗ record {after + 1}: inserted" in done.stdout


def test_a_clumsy_insert_with_a_made_up_hash_is_named_too(scenario: Scenario, ledger_copy: str) -> None:
    at = _seq_of(ledger_copy, scenario.runs["E"], "step_done", "prepare")
    tamper(ledger_copy, *renumber(at - 1, 1),
            ("INSERT INTO records (seq, at, run_id, step_id, kind, actor, data, prev_hash, hash) VALUES "
             "(?, '2026-03-02 13:05:00.000000', ?, 'prepare', 'note', 'x', '{}', ?, ?)",
             (at, scenario.runs["E"], "0" * 64, "f" * 64)))
    assert _first(ledger_copy) == (at, "inserted")


def test_an_edit_whose_hash_was_recomputed_is_caught_by_the_next_record(scenario: Scenario, ledger_copy: str) -> None:
    seq = _seq_of(ledger_copy, scenario.runs["A"], "step_done", "triage")
    row = record_row(ledger_copy, seq)
    fake = record_hash(row["prev_hash"], seq, datetime.fromisoformat(row["at"]), row["run_id"], row["step_id"],
                       row["kind"], "li-wei", row["data"])
    tamper(ledger_copy, ("UPDATE records SET actor = 'li-wei', hash = ? WHERE seq = ?", (fake, seq)))
    assert _first(ledger_copy) == (seq, "edited")


def test_a_deletion_hidden_by_renumbering_is_named(scenario: Scenario, ledger_copy: str) -> None:
    seq = _seq_of(ledger_copy, scenario.runs["B"], "step_overdue", "fix")
    tamper(ledger_copy, ("DELETE FROM records WHERE seq = ?", (seq,)), *renumber(seq, -1))
    assert _first(ledger_copy) == (seq, "deleted")


def test_records_cut_off_the_end_need_the_anchor_noted_last_time(scenario: Scenario, ledger_copy: str) -> None:
    ledger = Ledger(ledger_copy)
    with ledger.read() as conn:
        head = verify_chain(conn)
    tamper(ledger_copy, ("DELETE FROM records WHERE seq > ?", (head.head_seq - 3,)))
    with ledger.read() as conn:
        assert verify_chain(conn).ok  # a shorter chain is still a chain…
        result = verify_chain(conn, [Anchor(head.head_seq, head.head_hash)])
    ledger.dispose()
    assert not result.ok  # …but not the one the auditor saw
    assert (result.breaks[0].seq, result.breaks[0].kind) == (head.head_seq - 2, "truncated")


def test_an_edited_pinned_sop_text_fails_verification(sop: Any, scenario: Scenario, ledger_copy: str) -> None:
    tamper(ledger_copy, ("UPDATE sop_versions SET text = replace(text, 'due: 10m', 'due: 2h') "
                          "WHERE sop_id = 'audit-incident'", ()))
    digest = hashlib.sha256((HERE / "sops" / "audit-incident.yaml").read_bytes()).hexdigest()
    done = _verify(sop, ledger_copy)
    assert done.returncode == 1
    assert f"pinned SOP text audit-incident {digest[:12]} was edited" in done.stdout
    ledger = Ledger(ledger_copy)
    assert Audit(ledger).show(scenario.runs["A"])["sop_text_ok"] is False  # `sop audit show` flags it too
    ledger.dispose()


def test_a_malformed_anchor_is_refused_with_a_hint(sop: Any, scenario: Scenario) -> None:
    done = _verify(sop, scenario.url, "--anchor", "12")
    assert done.returncode == 1
    assert "anchor `12` is not SEQ:HASH" in done.stderr and "hint: copy it from an earlier `sop audit verify`" in done.stderr
    for bad in ("x:abc", "5:" + "0" * 10):
        with pytest.raises(AuditError, match="is not SEQ:HASH"):
            Anchor.parse(bad)


def _first(url: str) -> tuple[int, str]:
    ledger = Ledger(url)
    with ledger.read() as conn:
        first = verify_chain(conn).first_break
    ledger.dispose()
    assert first is not None
    return first.seq, first.kind


def test_the_quick_check_hashes_exactly_as_the_ledger_writes(ledger: Ledger) -> None:
    """Verify checks each record the quick way first; it must accept every record the ledger
    writes (any text, any time) and nothing else, or a tampered record could pass."""
    from datetime import UTC

    from flows.audit.verify import _intact, _rows

    odd = ['quote " backslash \\ tab \t', "控制 ünïcödé ✓ \u2028", "\x00\x1f", ""]
    # PostgreSQL cannot keep NUL in a column (the doors refuse it on both: test_same_answers); in the data it
    # is JSON-escaped on both
    column = (lambda text: text) if ledger.is_sqlite else (lambda text: text.replace("\x00", ""))
    times = [datetime(2026, 3, 2, 9, 0, tzinfo=UTC), datetime(2026, 3, 2, 9, 0, 0, 1, tzinfo=UTC),
             datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    with ledger.transaction() as tx:
        for n, text in enumerate(odd):
            tx.append("note", None if n % 2 else f"run {column(text)}", None if n == 2 else column(text),
                      None if n == 1 else column(text), at=times[n % len(times)], text=text,
                      nested={"list": [text, None, 1.5, True]})
    prev_seq, prev_hash, checked = 0, GENESIS, 0
    with ledger.read() as conn:
        [lane] = conn.execute(sa.select(records.c.chain).distinct()).scalars().all()  # the writer's lane
        for columns in _rows(conn, lane=lane):
            assert _intact(columns, prev_seq, prev_hash), columns
            tampered = list(columns)
            tampered[6] = columns[6].replace("}", " }", 1)  # the data, one blank added
            assert not _intact(tuple(tampered), prev_seq, prev_hash)
            assert not _intact(columns, prev_seq, "f" * 64)  # linked elsewhere
            prev_seq, prev_hash, checked = columns[0], columns[8], checked + 1
        assert checked == len(odd)
        assert verify_chain(conn).ok


def test_on_a_terminal_verify_shows_a_progress_bar_and_in_a_pipe_it_does_not(sop: Any, scenario: Scenario,
                                                                             repo_root: Path) -> None:
    import os
    import pty
    import subprocess

    from tests.conftest import SOP_COMMAND

    env = {**os.environ, "SOP_HOME": str(repo_root), "SOP_DATABASE_URL": scenario.url, "COLUMNS": "100"}
    main, child = pty.openpty()  # stderr is a terminal: a person waits at it
    done = subprocess.Popen([*SOP_COMMAND, "audit", "verify"], env=env, stdout=subprocess.PIPE, stderr=child)
    os.close(child)
    shown = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        shown += data
    out = done.communicate(timeout=60)[0].decode()
    os.close(main)
    assert done.returncode == 0 and "✓ chain intact" in out
    assert b"verifying the hash chain" in shown and b"100%" in shown

    piped = _verify(sop, scenario.url)  # stdout and stderr captured: no bar, nothing on stderr
    assert piped.returncode == 0 and piped.stderr == "" and "verifying" not in piped.stdout


def test_a_run_of_a_new_sop_version_started_during_the_walk_is_no_missing_text(ledger_copy: str) -> None:
    """The walk reads the run_started records and the pinned texts in two statements (on PostgreSQL, each sees
    what is committed when it runs): a first run of a new version committed between them is no missing text."""
    from flows.audit.queries import text_hash
    from flows.engine.store import RunStore

    ledger, writer = Ledger(ledger_copy), Ledger(ledger_copy)
    text = "id: late-sop\ntitle: A version pinned while the audit walked\n"
    written: list[str] = []

    def start_a_run_meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if written or "run_started" not in statement and "sop_versions" not in statement:
            return
        written.append(statement)  # right after the walk's first read of the two
        with writer.transaction() as tx:
            RunStore(tx).pin(text_hash(text), "late-sop", "1", text, datetime(2026, 3, 2, 16, 1))
            tx.append("run_started", "r-late", sop="late-sop", sop_hash=text_hash(text))

    sa.event.listen(ledger.reader, "after_cursor_execute", start_a_run_meanwhile)
    try:
        with ledger.read() as conn:
            result = verify_chain(conn)
    finally:
        ledger.dispose()
        writer.dispose()
    assert written, "the walk read neither the texts nor the starts"
    assert result.missing_texts == [] and result.ok, (result.missing_texts, result.breaks)
    with Ledger(ledger_copy).read() as conn:
        assert verify_chain(conn).ok  # and the run written meanwhile verifies on the next walk
