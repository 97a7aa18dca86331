"""A service's last writes are folded into a checkpoint soon, even when nothing is written after them.

A writer folds the lanes into a checkpoint after a commit once its last checkpoint is ``checkpoint_every`` old. Until
2026-12-07 the writes of a service that then fell quiet (a drill's end, the day's last sign-ins) waited for the next
commit after that, maybe hours later: all that while cutting them off the ledger left no trace. A service
(``Ledger.keep_checkpoints``: the API, ``sop serve``, ``sop pager``) now folds them when the checkpoint is due, and
when it stops (``Ledger.settle``, from ``Pager.close``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.audit.verify import verify_chain
from flows.engine.build import build_engine
from flows.language.library import load_library
from flows.ledger import Ledger

EVERY = 0.4


@pytest.fixture
def service(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv("SOP_LEDGER_CHECKPOINT_S", str(EVERY))
    ledger = Ledger(database_url)
    ledger.migrate()
    yield ledger
    ledger.dispose()


def write(ledger: Ledger, kind: str = "step_done") -> None:
    with ledger.transaction(per_run=True) as tx:
        tx.append(kind, "run-1", "assess", actor="wang-fang")


def past_the_head(ledger: Ledger) -> int:
    """Records of the writers' lanes that no checkpoint folds (all of them before the first checkpoint)."""
    with ledger.read() as conn:
        assert verify_chain(conn).ok
        last = conn.exec_driver_sql("SELECT data FROM records WHERE kind = 'checkpoint' ORDER BY seq DESC LIMIT 1").first()
        folded = json.loads(last[0])["lanes"] if last else {}
        places = conn.exec_driver_sql("SELECT chain, pos FROM records WHERE chain > 0").all()
    return sum(1 for chain, pos in places if pos > folded.get(str(chain), [0])[0])


def checkpoints(ledger: Ledger) -> int:
    with ledger.read() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM records WHERE kind = 'checkpoint'").scalar_one()


def paged(ledger: Ledger) -> int:
    with ledger.read() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM records WHERE kind = 'notification'").scalar_one()


def settled(ledger: Ledger, seconds: float = EVERY * 10) -> int:
    """Records past the head once checkpoints folded them all (or ``seconds`` passed): a checkpoint may come between
    two writes, and the second's is the next one."""
    deadline = time.monotonic() + seconds
    while (checkpoints(ledger) == 0 or past_the_head(ledger)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return past_the_head(ledger)


def test_a_services_last_writes_are_in_a_checkpoint_once_one_is_due(service: Ledger) -> None:
    service.keep_checkpoints()
    write(service)
    write(service, "run_finished")  # then nothing more is written

    assert settled(service) == 0
    assert checkpoints(service) in (1, 2)  # two when one came between the writes


def test_a_process_that_is_no_service_folds_only_at_a_later_commit(service: Ledger) -> None:
    """A CLI command's writes (``sop done``): folded by the next commit of a process once a checkpoint is due."""
    write(service)
    time.sleep(EVERY * 3)
    assert checkpoints(service) == 0 and past_the_head(service) == 1
    write(service, "run_finished")  # a commit after the checkpoint came due folds both
    assert checkpoints(service) == 1 and past_the_head(service) == 0


def test_a_service_stopping_folds_its_last_writes_at_once(database_url: str, repo_root: Path,
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The API's and ``sop serve``'s stop closes the pager: the checkpoint comes then, not when it would be due."""
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    monkeypatch.setenv("SOP_LEDGER_CHECKPOINT_S", "3600")
    library = load_library(repo_root)
    ledger = Ledger(database_url)
    ledger.migrate()
    engine = build_engine(library, background_pages=True, ledger=ledger)
    try:
        engine.start("traffic-surge", {"service": "web"}, initiator="alertmanager",
                     trigger={"kind": "alert", "labels": {"service": "web"}})
        assert checkpoints(ledger) == 0 and past_the_head(ledger) > 0
        engine.pager.close()  # the service stops

        assert checkpoints(ledger) == 1 and past_the_head(ledger) == 0
    finally:
        ledger.dispose()


def test_a_transaction_that_appended_nothing_asks_for_no_checkpoint(service: Ledger) -> None:
    """A timer service's poll that found nothing to fire: no checkpoint every few seconds for nothing."""
    service.keep_checkpoints()
    with service.transaction(per_run=True):
        pass
    time.sleep(EVERY * 3)
    assert checkpoints(service) == 0


def test_a_repeat_attached_in_a_batch_is_folded_too(service: Ledger, repo_root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The intake thread's group commit: a repeat attached in it (on PostgreSQL its record appended by the server, in
    the statement that finds the run) asks for its checkpoint as any record does."""
    from flows.engine.paging import Pager
    from flows.engine.transitions import Engine

    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    library = load_library(repo_root)
    engine = Engine(library, service, pager=Pager(library.site, service))
    service.keep_checkpoints()
    alert = {"kind": "alert", "labels": {"service": "web"}}
    try:
        first = engine.start("traffic-surge", {"service": "web"}, initiator="alertmanager", trigger=alert)
        deadline = time.monotonic() + EVERY * 20  # its pages delivered and recorded, all of it folded
        while (paged(service) < 3 or past_the_head(service)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert paged(service) == 3 and past_the_head(service) == 0
        folded = checkpoints(service)
        with service.batch(per_run=True):
            again = engine.start("traffic-surge", {"service": "web"}, initiator="alertmanager", trigger=alert)
        assert again.attached and again.run_id == first.run_id
        assert past_the_head(service) == 1  # its trigger_repeated record, until the checkpoint comes due

        deadline = time.monotonic() + EVERY * 10
        while checkpoints(service) == folded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoints(service) == folded + 1 and past_the_head(service) == 0
    finally:
        engine.pager.close()
