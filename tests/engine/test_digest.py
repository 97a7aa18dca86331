"""Digests and urgent pages first: a person with ``digest`` gets the pages that ask nothing of them as one message,
kept in the ledger until it is due; a backlogged outbox sends the most urgent pages first.

No Prefect: a real ledger (both databases), the real pager (in a thread as ``sop pager`` runs it, or a real ``sop
pager`` process) and Apprise's delivery to the local inbox (``inbox://NAME`` → ``$SOP_INBOX_DIR/NAME.jsonl``).
Tom Becker owns traffic-surge (role sre-lead); this project gives him ``digest: 2s``. The page a test keeps for him:
Kenji Sato says "I'll take it" for traffic-surge's `command`, a step of sre-oncall, whose other members are told
(``step_claimed``: nothing asked of Tom, nothing late, nothing of his work stopped).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.engine import outbox
from flows.engine.paging import Pager
from flows.engine.transitions import Engine
from flows.language.library import Library, load_library
from flows.ledger import Ledger
from flows.ledger.schema import deliveries, digest_items, records
from flows.ledger.schema import outbox as outbox_table
from tests.conftest import TestDatabase
from tests.notifications.conftest import http, http_server  # noqa: F401 - the HTTP receiver's fixtures

OUTAGE = "traffic-surge"  # outage; owner sre-lead → tom-becker
COMPLAINT = "crisis-pr"  # complaint; owner pr-lead → chen-jie
WINDOW = 2.0


def with_digest(repo_root: Path, root: Path, person: str = "tom-becker", digest: str = f"{WINDOW:g}s") -> Path:
    """A project of the repo's SOPs and config, ``person`` with ``digest``."""
    shutil.copytree(repo_root / "config", root / "config")
    shutil.copytree(repo_root / "sops", root / "sops")
    people = root / "config" / "people.yaml"
    text = people.read_text()
    head = f"  {person}:\n"
    assert head in text
    people.write_text(text.replace(head, f"{head}    digest: {digest}\n", 1))
    return root


@pytest.fixture
def project(repo_root: Path, tmp_path: Path) -> Path:
    return with_digest(repo_root, tmp_path / "site")


@pytest.fixture
def library(project: Path) -> Library:
    return load_library(project)


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "inbox"
    monkeypatch.setenv("SOP_INBOX_DIR", str(folder))
    monkeypatch.delenv("TOM_BECKER_URL", raising=False)
    return folder


def engine_for(library: Library, ledger: Ledger, *, drains: bool = False) -> Engine:
    return Engine(library, ledger, pager=Pager(library.site, ledger, drains=drains))


def inputs(library: Library, sop_id: str, **more: object) -> dict[str, object]:
    sop = library.get(sop_id).sop
    return {**{n: (s.default if s.default is not None else "x") for n, s in sop.inputs.items()
               if s.is_required or s.default is not None}, **more}


def messages(inbox: Path, person: str) -> list[dict[str, object]]:
    path = inbox / f"{person}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def digests(inbox: Path, person: str) -> list[dict[str, object]]:
    return [m for m in messages(inbox, person) if "Digest:" in str(m["title"])]


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def taken(api: Engine, run_id: str) -> None:
    """Kenji takes `command`: Tom, a member of its role, is told (a page his digest keeps)."""
    api.claim(run_id, "command", "kenji-sato")


def kept_items(ledger: Ledger) -> list[dict[str, object]]:
    with ledger.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(digest_items).order_by(digest_items.c.id))]


def alive(ledger: Ledger) -> bool:
    with ledger.read() as conn:
        return outbox.pager_alive(conn)


def all_sent(ledger: Ledger) -> bool:
    with ledger.read() as conn:
        return not conn.execute(sa.select(sa.func.count()).select_from(outbox_table)
                                .where(outbox_table.c.done_at.is_(None))).scalar_one()


@pytest.fixture
def pager_thread(library: Library, ledger: Ledger, inbox: Path) -> Iterator[outbox.Drainer]:
    """A pager process's loop in a thread (``sop pager`` runs the same Drainer)."""
    drainer = outbox.Drainer(engine_for(library, ledger, drains=True), poll=0.02, name="test-pager")
    stop = threading.Event()
    thread = threading.Thread(target=drainer.run, args=(stop,))
    thread.start()
    wait_until(lambda: alive(ledger), 10, "the pager's heartbeat")
    yield drainer
    stop.set()
    outbox.ring([drainer.bell.address])
    thread.join(10)
    drainer.pager.close()


def test_a_digest_person_gets_one_message_with_every_kept_page_after_the_window_and_urgent_pages_at_once(
        database: TestDatabase, library: Library, ledger: Ledger, inbox: Path, tmp_path: Path,
        pager_thread: outbox.Drainer, sop) -> None:  # noqa: ANN001
    api = engine_for(library, ledger)  # another process's engine (an API's): it leaves its pages to the pager
    runs = [api.start(OUTAGE, inputs(library, OUTAGE, service=name), initiator="ana").run_id
            for name in ("checkout", "search", "login")]
    wait_until(lambda: len(messages(inbox, "tom-becker")) >= 3, 20, "the run_started pages")
    started = messages(inbox, "tom-becker")
    assert [("Started" in str(m["title"])) for m in started] == [True] * 3  # a new incident is never kept

    for run_id in runs:
        taken(api, run_id)
    wait_until(lambda: all_sent(ledger), 20, "the pager to handle the claim pages")
    kept_at = time.monotonic()
    assert len(messages(inbox, "tom-becker")) == 3  # nothing more yet: the three wait for his digest
    assert [(i["person"], i["kind"], i["sent_at"]) for i in kept_items(ledger)] == [
        ("tom-becker", "step_claimed", None)] * 3

    wait_until(lambda: digests(inbox, "tom-becker"), 20, "Tom's digest")
    assert time.monotonic() - kept_at >= WINDOW - 0.5  # not before the window
    time.sleep(0.3)
    [digest] = digests(inbox, "tom-becker")
    assert len(messages(inbox, "tom-becker")) == 4  # one message for the three
    assert str(digest["title"]).startswith("[P2] Digest: 3 updates in 3 run(s)")
    body = str(digest["body"])
    for run_id in runs:
        assert f"/runs/{run_id}" in body
    assert body.count("Taken: ") == 3 and "Traffic" in body
    wait_until(lambda: all(i["sent_at"] for i in kept_items(ledger)), 10, "the items marked sent")

    # the audit: the claim's page kept for Tom, then the digest delivered to him, on each run
    with ledger.read() as conn:
        notes = [json.loads(d) for d in conn.execute(sa.select(records.c.data).where(
            (records.c.kind == "notification") & (records.c.run_id == runs[0])).order_by(records.c.seq)).scalars()]
        digest_rows = conn.execute(sa.select(deliveries).where(deliveries.c.kind == "digest")).all()
    claim = next(n for n in notes if n["notification"] == "step_claimed")
    assert claim["kept"] == ["tom-becker"] and all(r["recipient"] != "tom-becker" for r in claim["results"])
    [sent] = [n for n in notes if n["notification"] == "digest"]
    assert sent["person"] == "tom-becker" and sent["kinds"] == ["step_claimed"]
    assert [r["ok"] for r in sent["results"]] == [True]
    assert sorted(r.run_id for r in digest_rows) == sorted(runs) and all(r.ok for r in digest_rows)

    env = {"SOP_DATABASE_URL": ledger.url, "SOP_HOME": str(tmp_path / "site")}
    shown = sop("audit", "show", runs[0], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "delivered); kept for tom-becker's digest" \
        in shown.stdout, shown.stdout
    assert "→ tom-becker kept for their digest" in shown.stdout
    assert "digest sent to tom-becker (1/1 delivered), carrying 1 kept page(s) of this run: step_claimed" \
        in shown.stdout


def test_a_cli_command_alone_sends_every_page_at_once(library: Library, ledger: Ledger, inbox: Path) -> None:
    """No pager process alive: nobody would send a digest, so nothing is kept."""
    engine = engine_for(library, ledger)
    run_id = engine.start(OUTAGE, inputs(library, OUTAGE), initiator="ana").run_id
    taken(engine, run_id)
    engine.pager.close()
    assert any("Taken: " in str(m["title"]) for m in messages(inbox, "tom-becker"))
    assert kept_items(ledger) == []


def test_a_page_that_stops_his_work_is_never_kept(library: Library, ledger: Ledger, inbox: Path,
                                                  pager_thread: outbox.Drainer) -> None:
    """A run cancelled (a step withdrawn, handed on or held) asks nothing of him, but whoever works on it must hear
    it now, not when his digest is due."""
    api = engine_for(library, ledger)
    run_id = api.start(OUTAGE, inputs(library, OUTAGE), initiator="ana").run_id
    api.cancel(run_id, "false alarm", actor="ana")
    wait_until(lambda: any("Cancelled" in str(m["title"]) for m in messages(inbox, "tom-becker")), 20,
               "the cancel page, at once")
    wait_until(lambda: all_sent(ledger), 20, "the pager to handle every page")
    assert kept_items(ledger) == []


def test_status_counts_what_waits_in_digests(library: Library, ledger: Ledger, inbox: Path, tmp_path: Path,
                                             sop) -> None:  # noqa: ANN001
    drainer = outbox.Drainer(engine_for(library, ledger, drains=True), poll=0.02, name="test-pager")
    drainer.heartbeat.beat()
    api = engine_for(library, ledger)
    run_id = api.start(OUTAGE, inputs(library, OUTAGE), initiator="ana").run_id
    taken(api, run_id)
    while drainer.drain_once():
        pass
    drainer.pager.close()
    assert len(kept_items(ledger)) == 1
    env = {"SOP_DATABASE_URL": ledger.url, "SOP_HOME": str(tmp_path / "site")}
    shown = sop("status", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "1 page(s) kept for digests: tom-becker 1 (due " in shown.stdout, shown.stdout
    theirs = sop("status", "--for", "tom-becker", env=env)
    assert theirs.returncode == 0 and "1 page(s) kept for digests: tom-becker 1 (due " in theirs.stdout, theirs.stdout
    others = sop("status", "--for", "li-wei", env=env)  # what waits on li-wei: not Tom's digest
    assert others.returncode == 0 and "kept for digests" not in others.stdout, others.stdout
    drainer.hand_over()


def pager_process(ledger: Ledger, inbox: Path, root: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SOP_HOME": str(root), "SOP_DATABASE_URL": ledger.url, "SOP_INBOX_DIR": str(inbox)}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "flows", "pager", "--poll", "0.05"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=root)


def test_a_pager_killed_before_the_digest_is_due_leaves_it_to_the_next_pager(
        repo_root: Path, ledger: Ledger, inbox: Path, tmp_path: Path) -> None:
    root = with_digest(repo_root, tmp_path / "slow", digest="4s")
    library = load_library(root)
    log = tmp_path / "pager.log"
    first = pager_process(ledger, inbox, root, log)
    second = None
    try:
        wait_until(lambda: alive(ledger), 60, "the first pager's heartbeat")
        api = engine_for(library, ledger)
        run_id = api.start(OUTAGE, inputs(library, OUTAGE), initiator="ana").run_id
        taken(api, run_id)
        wait_until(lambda: kept_items(ledger), 20, "the claim's page kept for Tom")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert digests(inbox, "tom-becker") == []

        second = pager_process(ledger, inbox, root, log)
        wait_until(lambda: digests(inbox, "tom-becker"), 60, "the next pager to send the digest")
        [digest] = digests(inbox, "tom-becker")
        assert "Taken: " in str(digest["body"]) and f"/runs/{run_id}" in str(digest["body"])
        wait_until(lambda: all(i["sent_at"] for i in kept_items(ledger)), 10, "the item marked sent")
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()
    finally:
        for child in (first, second):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait(10)


def test_a_backlog_is_claimed_most_urgent_first(library: Library, ledger: Ledger, inbox: Path) -> None:
    """A storm: the pager falls behind. An outage's pages were queued first, then a complaint's: the complaint's go
    first; within a class, pages that ask for work before those that only inform."""
    outbox.Heartbeat(ledger, "busy-pager").beat()  # a pager is alive: the pages wait for it, unclaimed
    api = engine_for(library, ledger)
    outage = api.start(OUTAGE, inputs(library, OUTAGE), initiator="ana").run_id
    taken(api, outage)  # informational
    complaint = api.start(COMPLAINT, inputs(library, COMPLAINT), initiator="ana").run_id
    claimed = [(p.run_id, p.kind) for p in outbox.claim(ledger, "test-pager", limit=100)]
    with ledger.read() as conn:
        queued = [(r.run_id, r.kind) for r in conn.execute(sa.select(outbox_table).order_by(outbox_table.c.id))]
    assert queued[0][0] == outage and claimed[0][0] == complaint  # queued last, claimed first
    runs = [run for run, _ in claimed]
    assert runs == sorted(runs, key=lambda r: r != complaint)  # every complaint page before every outage page
    outage_kinds = [kind for run, kind in claimed if run == outage]
    assert outage_kinds[-1] == "step_claimed" and "run_started" in outage_kinds
    assert sorted(claimed) == sorted(queued)


@pytest.mark.parametrize(("written", "said"), [
    ("soon", "people.tom-becker.digest: expected a duration such as 30s, 15m"),
    ("3d", "people.tom-becker.digest: a digest of 3d holds news past its use: at most 1d"),
])
def test_a_bad_digest_is_refused_where_it_is_written(repo_root: Path, tmp_path: Path, sop, written: str,  # noqa: ANN001
                                                     said: str) -> None:
    root = with_digest(repo_root, tmp_path / "typo", digest=written)
    line = (root / "config" / "people.yaml").read_text().splitlines().index(f"    digest: {written}") + 1
    for command in (("validate",), ("notify-test", "tom-becker")):
        refused = sop(*command, env={"SOP_HOME": str(root)}, cwd=root)
        assert refused.returncode != 0, refused.stdout
        assert f"people.yaml:{line}:" in refused.stderr + refused.stdout and said in refused.stderr + refused.stdout, \
            refused.stderr
        assert "Traceback" not in refused.stderr


def test_a_digest_that_fails_at_a_contact_falls_back_to_the_next_as_any_page(
        repo_root: Path, ledger: Ledger, inbox: Path, tmp_path: Path) -> None:
    root = with_digest(repo_root, tmp_path / "fallback", digest="1s")
    people = root / "config" / "people.yaml"
    people.write_text(people.read_text().replace('"${TOM_BECKER_URL:-inbox://tom-becker}"',
                                                 '"json://127.0.0.1:9/down"\n      - "inbox://tom-becker"'))
    library = load_library(root)
    drainer = outbox.Drainer(engine_for(library, ledger, drains=True), poll=0.02, name="test-pager")
    stop = threading.Event()
    thread = threading.Thread(target=drainer.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: alive(ledger), 10, "the pager's heartbeat")
        api = engine_for(library, ledger)
        run_id = api.start(OUTAGE, inputs(library, OUTAGE), initiator="ana").run_id
        taken(api, run_id)
        wait_until(lambda: digests(inbox, "tom-becker"), 30, "the digest at Tom's second contact")
        wait_until(lambda: all(i["sent_at"] for i in kept_items(ledger)), 10, "the item marked sent")
    finally:
        stop.set()
        outbox.ring([drainer.bell.address])
        thread.join(10)
        drainer.pager.close()
    with ledger.read() as conn:
        rows = conn.execute(sa.select(deliveries).where(deliveries.c.kind == "digest")
                            .order_by(deliveries.c.id)).all()
    assert [(r.run_id, r.destination.split(":")[0], r.ok) for r in rows] == [
        (run_id, "json", False), (run_id, "inbox", True)]
    assert rows[0].attempts == 3 and rows[0].error  # retried as any page is, then the next contact


def test_a_page_kept_while_a_digest_is_on_its_way_waits_for_its_own_window(
        repo_root: Path, ledger: Ledger, inbox: Path, tmp_path: Path, http) -> None:  # noqa: ANN001, F811
    """Tom's phone gateway is slow (3 s an answer). While his first digest is on its way, a new page is kept: it
    waits for its own window, not sent at once as a digest of one (it was: the digest in flight made him look due)."""
    root = with_digest(repo_root, tmp_path / "slow-gateway", digest=f"{WINDOW:g}s")
    people = root / "config" / "people.yaml"
    people.write_text(people.read_text().replace('"${TOM_BECKER_URL:-inbox://tom-becker}"',
                                                 f'"{http.url("/slow/3/tom")}"'))
    library = load_library(root)
    drainer = outbox.Drainer(engine_for(library, ledger, drains=True), poll=0.02, name="test-pager")
    stop = threading.Event()
    thread = threading.Thread(target=drainer.run, args=(stop,))
    thread.start()

    def digests_sent() -> list[float]:
        return [r.at for r in http.to("/slow/") if "Digest:" in str(r.json.get("title"))]

    try:
        wait_until(lambda: alive(ledger), 10, "the pager's heartbeat")
        api = engine_for(library, ledger)
        taken(api, api.start(OUTAGE, inputs(library, OUTAGE, service="checkout"), initiator="ana").run_id)
        wait_until(digests_sent, 20, "Tom's first digest on its way")
        taken(api, api.start(OUTAGE, inputs(library, OUTAGE, service="search"), initiator="ana").run_id)
        kept_at = time.perf_counter()  # (the receiver's clock)
        wait_until(lambda: len(digests_sent()) == 2, 30, "Tom's second digest")
        assert digests_sent()[1] - kept_at >= WINDOW - 0.5, "the second page went before its own window"
    finally:
        stop.set()
        outbox.ring([drainer.bell.address])
        thread.join(15)
        drainer.pager.close()
