"""The notification outbox: pages written with their transition, delivered by this process or a pager process.

No Prefect here: a real ledger (SQLite file), the real pager and Apprise's delivery to the
local inbox (``inbox://NAME`` → ``$SOP_INBOX_DIR/NAME.jsonl``), and a real ``sop pager``
process for the hand-over.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.engine import outbox
from flows.engine.board import status_rows
from flows.engine.paging import Pager
from flows.engine.transitions import Engine, Page
from flows.language.library import Library, load_library
from flows.ledger import Ledger
from flows.ledger.schema import deliveries, pagers, records
from flows.ledger.schema import outbox as outbox_table
from tests.conftest import TestDatabase

SOP = "traffic-surge"  # owner sre-lead → tom-becker; starts with a human step


@pytest.fixture(scope="module")
def library(repo_root: Path) -> Library:
    return load_library(repo_root)


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "inbox"
    monkeypatch.setenv("SOP_INBOX_DIR", str(folder))
    return folder


def engine_for(library: Library, ledger: Ledger, *, drains: bool = False) -> Engine:
    return Engine(library, ledger, pager=Pager(library.site, ledger, drains=drains))


def inputs(library: Library) -> dict[str, object]:
    sop = library.get(SOP).sop
    return {n: (s.default if s.default is not None else "x") for n, s in sop.inputs.items()
            if s.is_required or s.default is not None}


def rows(ledger: Ledger) -> list[dict[str, object]]:
    with ledger.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(outbox_table).order_by(outbox_table.c.id))]


def messages(inbox: Path, person: str) -> list[dict[str, object]]:
    path = inbox / f"{person}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_pages_are_written_in_their_transition_and_sent_by_it_when_no_pager_process_runs(
        library: Library, ledger: Ledger, inbox: Path) -> None:
    engine = engine_for(library, ledger)
    run_id = engine.start(SOP, inputs(library), initiator="ana").run_id
    engine.pager.close()  # wait for the deliveries

    queued = rows(ledger)
    assert [(r["run_id"], r["kind"]) for r in queued][:1] == [(run_id, "run_started")]
    assert all(r["claimed_by"] == engine.pager.name for r in queued)  # claimed in the same transaction
    assert all(r["done_at"] is not None and r["error"] is None for r in queued)
    kinds = [r["kind"] for r in queued]
    with ledger.read() as conn:
        recorded = [json.loads(d)["notification"] for d in conn.execute(
            sa.select(records.c.data).where((records.c.kind == "notification") & (records.c.run_id == run_id)))
            .scalars()]
    assert sorted(recorded) == sorted(kinds)  # each queued page has its delivery record
    assert [m["title"] for m in messages(inbox, "tom-becker")][:1] and "started" in str(
        messages(inbox, "tom-becker")[0]["title"]).lower()


def test_a_failed_transition_leaves_no_page(library: Library, ledger: Ledger, inbox: Path) -> None:
    engine = engine_for(library, ledger)
    with pytest.raises(RuntimeError), engine.transaction() as t:
        t.pages.append(Page("run_started", "r-gone", None, ["sre-lead"]))
        raise RuntimeError("the transition fails after deciding its page")
    assert rows(ledger) == []


def pager_process(database_url: str, inbox: Path, repo_root: Path, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "SOP_HOME": str(repo_root), "SOP_DATABASE_URL": database_url,
           "SOP_INBOX_DIR": str(inbox)}
    log = open(tmp_path / "pager.log", "wb")  # noqa: SIM115 - inherited by the child
    return subprocess.Popen([sys.executable, "-m", "flows", "pager"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=repo_root)


def beating(ledger: Ledger) -> list[dict[str, object]]:
    with ledger.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(pagers))]


def test_a_pager_process_takes_the_pages_and_hands_back_when_it_stops(
        library: Library, ledger: Ledger, inbox: Path, tmp_path: Path, repo_root: Path) -> None:
    child = pager_process(ledger.url, inbox, repo_root, tmp_path)
    try:
        wait_until(lambda: beating(ledger), 60, "the pager process's heartbeat")
        [beat] = beating(ledger)
        assert beat["pid"] == child.pid

        engine = engine_for(library, ledger)
        run_id = engine.start(SOP, inputs(library), initiator="ana").run_id
        first = rows(ledger)[0]
        assert first["kind"] == "run_started" and first["run_id"] == run_id
        wait_until(lambda: all(r["done_at"] for r in rows(ledger)), 30, "the pager process to deliver")
        assert {r["claimed_by"] for r in rows(ledger)} == {beat["name"]}
        assert engine.pager._dispatcher is None  # this process rendered and sent nothing itself
        assert len(messages(inbox, "tom-becker")) >= 1
        with ledger.read() as conn:
            delivered = conn.execute(sa.select(deliveries.c.kind).where(deliveries.c.run_id == run_id)).scalars().all()
        assert "run_started" in delivered

        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0
        assert beating(ledger) == []  # it said goodbye: others deliver their own pages again at once
        later = engine_for(library, ledger)
        second = later.start(SOP, {**inputs(library), "service": "other"}, initiator="ana")
        later.pager.close()
        mine = [r for r in rows(ledger) if r["run_id"] == second.run_id]
        assert mine and all(r["claimed_by"] == later.pager.name and r["done_at"] for r in mine)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_a_page_outlives_the_process_that_claimed_it(library: Library, ledger: Ledger, inbox: Path) -> None:
    """A row claimed by a process that died is delivered once its lease ends; a live lease is left alone."""
    engine = engine_for(library, ledger)
    run_id = engine.start(SOP, inputs(library), initiator="ana", launch=False).run_id
    engine.pager.close()
    orphan = [Page("run_overdue", run_id, None, ["sre-lead"]), Page("run_cancelled", run_id, None, ["sre-lead"])]
    with ledger.transaction() as tx:
        outbox.queue(tx, orphan, claimed_by="ghost-host:4242")  # queued, then the process died
        tx.conn.execute(outbox_table.update().where(outbox_table.c.id == orphan[0].outbox_id)
                        .values(claimed_until=outbox.wall() - timedelta(seconds=1)))
    before = len(messages(inbox, "tom-becker"))

    drainer = outbox.Drainer(engine_for(library, ledger, drains=True), poll=0.01, name="test-pager")
    stop = threading.Event()
    thread = threading.Thread(target=drainer.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: rows(ledger)[-2]["done_at"] is not None, 20, "the expired claim to be delivered")
    finally:
        stop.set()
        thread.join(10)
        drainer.pager.close()
    expired, live = rows(ledger)[-2:]
    assert expired["claimed_by"] == "test-pager" and expired["attempts"] == 2
    assert live["claimed_by"] == "ghost-host:4242" and live["done_at"] is None  # its lease still holds
    after = messages(inbox, "tom-becker")[before:]
    assert len(after) == 1 and "run deadline passed" in str(after[0]["title"]).lower()


def test_a_page_that_cannot_be_rendered_is_set_aside_with_its_error(
        library: Library, ledger: Ledger, inbox: Path) -> None:
    with ledger.transaction() as tx:
        outbox.queue(tx, [Page("run_started", "no-such-run", None, ["sre-lead"])], claimed_by=None)
    drainer = outbox.Drainer(engine_for(library, ledger, drains=True), poll=0.01, name="test-pager")
    assert drainer.drain_once() == 1
    drainer.pager.close()
    [row] = rows(ledger)
    assert row["done_at"] is not None and "no-such-run" in row["error"]
    assert drainer.drain_once() == 0  # not retried
    assert outbox.backlog(ledger)["pending"] == 0
    with ledger.read() as conn:
        [failed] = conn.execute(sa.select(deliveries).where(deliveries.c.run_id == "no-such-run")).all()
    assert (failed.recipient, failed.ok, failed.attempts) == ("sre-lead", False, 0)
    assert "no-such-run" in failed.error


def test_a_page_that_fails_before_delivery_shows_in_status_and_the_audit(database: TestDatabase, 
        library: Library, ledger: Ledger, inbox: Path, tmp_path: Path, sop,  # noqa: ANN001
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sop.paging")
    engine = engine_for(library, ledger)
    run_id = engine.start(SOP, inputs(library), initiator="ana", launch=False).run_id
    engine.pager.close()
    assert status_rows(engine, run_id)[0]["failed_notifications"] == 0
    # a ladder that names a chat URL where a role belongs: the page fails in recipients(), before any delivery
    secret = "hunter2-pass"
    with ledger.transaction() as tx:
        outbox.queue(tx, [Page("run_overdue", run_id, None, [f"json://ops:{secret}@chat.example.com/hook"])],
                     claimed_by=None)
    drainer = outbox.Drainer(engine_for(library, ledger, drains=True), poll=0.01, name="test-pager")
    assert drainer.drain_once() == 1
    drainer.pager.close()

    with ledger.read() as conn:
        [row] = conn.execute(sa.select(deliveries).where(
            (deliveries.c.run_id == run_id) & (deliveries.c.kind == "run_overdue"))).all()
        [record] = [json.loads(d) for d in conn.execute(sa.select(records.c.data).where(
            (records.c.seq == row.page) & (records.c.kind == "notification"))).scalars()]
    assert (row.ok, row.attempts, row.destination) == (False, 0, "—")
    assert "not sent, the page failed before delivery: UnknownTarget: unknown target kind `json`" in row.error
    assert secret not in row.error + row.recipient and "json://****:****@chat.example.com/hook" in row.recipient
    assert record["notification"] == "run_overdue"
    assert [(r["status"], r["error"]) for r in record["results"]] == [("failed", row.error)]
    assert status_rows(engine, run_id)[0]["failed_notifications"] == 1

    env = {"SOP_DATABASE_URL": database.url_at(tmp_path / "ledger.db")}
    status = sop("status", run_id, env=env)
    assert status.returncode == 0, status.stderr
    assert "1 failed notification(s)" in status.stdout
    shown = sop("audit", "show", run_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "failed not sent, the page failed before delivery: UnknownTarget" in shown.stdout
    assert secret not in shown.stdout
    assert secret not in caplog.text and "event=page_failed kind=run_overdue" in caplog.text


def test_the_doorbell_wakes_a_pager_that_polls_rarely(library: Library, ledger: Ledger, inbox: Path) -> None:
    """After its commit, a process that left its pages to a pager process rings it: no waiting for the poll."""
    drainer = outbox.Drainer(engine_for(library, ledger, drains=True), poll=120.0, name="slow-poller")
    stop = threading.Event()
    thread = threading.Thread(target=drainer.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: beating(ledger), 10, "the heartbeat")
        assert beating(ledger)[0]["doorbell"] == drainer.bell.address
        engine = engine_for(library, ledger)
        run_id = engine.start(SOP, inputs(library), initiator="ana").run_id
        wait_until(lambda: rows(ledger)[0]["done_at"] is not None, 30, "the rung pager to deliver")
        assert rows(ledger)[0]["claimed_by"] == "slow-poller" and rows(ledger)[0]["run_id"] == run_id
        assert engine.pager._dispatcher is None  # the starting process left it to the pager process
    finally:
        stop.set()
        outbox.ring([drainer.bell.address])  # wake it to see the stop
        thread.join(10)
        drainer.pager.close()
    assert not thread.is_alive()


def test_status_says_when_pages_have_waited(database: TestDatabase, library: Library, ledger: Ledger, tmp_path: Path, sop) -> None:  # noqa: ANN001
    engine = Engine(library, ledger)  # no pager: the run is recorded, its pages queued by hand below
    run_id = engine.start(SOP, inputs(library), initiator="ana").run_id
    env = {"SOP_DATABASE_URL": database.url_at(tmp_path / "ledger.db")}
    with ledger.transaction() as tx:
        outbox.queue(tx, [Page("run_started", run_id, None, ["sre-lead"])], claimed_by=None)
    fresh = sop("status", env=env)
    assert fresh.returncode == 0 and "waiting to be sent" not in fresh.stdout  # a page queued a moment ago is normal

    with ledger.transaction() as tx:
        tx.conn.execute(outbox_table.update().values(queued_at=outbox.wall() - timedelta(minutes=3)))
    stale = sop("status", env=env)
    assert stale.returncode == 0, stale.stderr
    import re

    waited = re.search(r"1 page\(s\) waiting to be sent, the oldest for (\d+)s", stale.stdout)
    assert waited and int(waited.group(1)) >= 180, stale.stdout  # 3 minutes, plus how long `sop status` took
    assert "no pager process is alive: start `sop serve` or `sop pager`" in stale.stdout
    assert run_id in stale.stdout


def test_a_burst_of_sigterms_stops_a_pager_process_cleanly(ledger: Ledger, inbox: Path, tmp_path: Path,
                                                           repo_root: Path) -> None:
    """Its parent's death and the stack's stop can each send SIGTERM, a moment apart. A handler that
    took a lock (``threading.Event.set``) could be interrupted by the next signal while holding it and
    wait for it forever: a pager was once found so, long after its stack. The handler now only sets a
    flag. (The race is narrow: this is the behaviour, not a reproduction of the rare interleaving.)"""
    from flows.runtime.shutdown import Terminated, on_sigterm

    for _ in range(3):
        child = pager_process(ledger.url, inbox, repo_root, tmp_path)
        try:
            wait_until(lambda: beating(ledger), 60, "the pager process's heartbeat")
            for _ in range(300):
                child.send_signal(signal.SIGTERM)
            assert child.wait(15) == 0
            assert beating(ledger) == []  # it handed back as it does on one SIGTERM
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)

    previous = signal.getsignal(signal.SIGTERM)
    try:
        terminated = on_sigterm()
        assert isinstance(signal.getsignal(signal.SIGTERM), Terminated) and not terminated.is_set()
        os.kill(os.getpid(), signal.SIGTERM)  # handled here, in the main thread, at the next bytecode
        wait_until(terminated.is_set, 5, "the handler to run")
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_process_restarted_under_its_name_takes_its_row_over(ledger: Ledger) -> None:
    """`sop serve` restarts a dead executor or pager under the same name: the first beat of the new process puts its
    own pid and doorbell in the row, so pages and flow runs ring it, not the dead one's address."""
    dead = outbox.Heartbeat(ledger, "executor-1-4242", "127.0.0.1:40001")
    dead.beat()
    with ledger.transaction() as tx:  # as the dead process wrote it
        tx.conn.execute(pagers.update().where(pagers.c.name == "executor-1-4242").values(pid=4243))
    restarted = outbox.Heartbeat(ledger, "executor-1-4242", "127.0.0.1:40002")
    restarted.beat()
    with ledger.read() as conn:
        rows = conn.execute(sa.select(pagers.c.pid, pagers.c.doorbell).where(pagers.c.name == "executor-1-4242")).all()
    assert [tuple(r) for r in rows] == [(os.getpid(), "127.0.0.1:40002")]


def test_a_pager_process_told_sighup_pages_a_person_at_the_contact_config_gives_now(
        library: Library, ledger: Ledger, inbox: Path, tmp_path: Path, repo_root: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An admin changes Tom's contact in config/people.yaml and sends the running `sop pager` SIGHUP: it says it
    reloaded, and the next page to Tom goes to the new contact, not the old. Then a config/ broken by a typo and
    SIGHUP: one line says why it is refused, the pager goes on with the contacts it had."""
    from tests.engine.conftest import make_project

    monkeypatch.delenv("TOM_BECKER_URL", raising=False)
    root = make_project(repo_root, tmp_path / "site")
    people = root / "config" / "people.yaml"
    log = tmp_path / "pager.log"
    env = {**os.environ, "SOP_HOME": str(root), "SOP_DATABASE_URL": ledger.url, "SOP_INBOX_DIR": str(inbox),
           "NO_COLOR": "1", "COLUMNS": "300"}
    with open(log, "wb") as out:
        child = subprocess.Popen([sys.executable, "-m", "flows", "pager"], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=root)
    engine = engine_for(library, ledger)  # another process's engine (an API's): it only queues its pages
    try:
        wait_until(lambda: beating(ledger), 60, "the pager process's heartbeat")
        engine.start(SOP, inputs(library), initiator="ana")
        wait_until(lambda: messages(inbox, "tom-becker"), 30, "the first page to reach Tom's inbox")

        people.write_text(people.read_text().replace('"${TOM_BECKER_URL:-inbox://tom-becker}"',
                                                     '"inbox://tom-becker-phone"'))
        child.send_signal(signal.SIGHUP)
        wait_until(lambda: "pager: reloaded" in log.read_text(), 30, "the pager to say it reloaded")
        before = len(messages(inbox, "tom-becker"))
        engine.start(SOP, {**inputs(library), "service": "checkout"}, initiator="ana")
        wait_until(lambda: messages(inbox, "tom-becker-phone"), 30, "the next page to reach Tom's new contact")
        assert len(messages(inbox, "tom-becker")) == before  # nothing more at the old one

        people.write_text(people.read_text().replace("  tom-becker:\n", "  tom-becker:\n    nmae: typo\n"))
        child.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in log.read_text(), 30, "the pager to refuse the broken config")
        refused = [line for line in log.read_text().splitlines() if "reload refused" in line]
        assert len(refused) == 1 and "people.yaml" in refused[0], log.read_text()
        phone = len(messages(inbox, "tom-becker-phone"))
        engine.start(SOP, {**inputs(library), "service": "search"}, initiator="ana")
        wait_until(lambda: len(messages(inbox, "tom-becker-phone")) > phone, 30,
                   "a page after the refused reload to reach the contact loaded before")
        assert child.poll() is None

        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0, log.read_text()
    finally:
        engine.pager.close()
        if child.poll() is None:
            child.kill()
            child.wait(10)
