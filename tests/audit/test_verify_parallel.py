"""`sop audit verify` walks a long chain on two processes: the answer is one walk's, wherever the cut falls.

Each kind of tampering is done near the middle of a copy of the scenario's ledger, and the
two-process walk is cut just before, at, inside and after it: breaks, suspects and the
head must be exactly those of the one walk.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from flows.audit import parallel
from flows.audit.parallel import verify_ledger
from flows.audit.verify import verify_chain
from flows.ledger import Ledger, record_hash
from tests.audit.conftest import Scenario, record_row, renumber, tamper

pytestmark = pytest.mark.usefixtures("fork_allowed")  # these test the two-process path: see the fixture


def _edit(db: str, seq: int) -> None:
    tamper(db, ("UPDATE records SET actor = 'mallory' WHERE seq = ?", (seq,)))


def _edit_twice(db: str, seq: int) -> None:  # the second edit is a suspect after the first break
    tamper(db, ("UPDATE records SET actor = 'mallory' WHERE seq IN (?, ?)", (seq, seq + 5)))


def _delete(db: str, seq: int) -> None:
    tamper(db, ("DELETE FROM records WHERE seq = ?", (seq,)))


def _delete_hidden(db: str, seq: int) -> None:
    tamper(db, ("DELETE FROM records WHERE seq = ?", (seq,)), *renumber(seq, -1))


def _swap(db: str, seq: int) -> None:
    tamper(db, ("UPDATE records SET seq = -1 WHERE seq = ?", (seq,)), ("UPDATE records SET seq = ? WHERE seq = ?", (seq, seq + 3)),
         ("UPDATE records SET seq = ? WHERE seq = -1", (seq + 3,)))


def _insert_forged(db: str, seq: int) -> None:
    before = record_row(db, seq)
    data = json.dumps({"note": "forged"})
    digest = record_hash(before["hash"], seq + 1, datetime.fromisoformat(before["at"]), before["run_id"], before["step_id"],
                         "note", "mallory", data)
    tamper(db, *renumber(seq, 1), ("INSERT INTO records (seq, at, run_id, step_id, kind, actor, data, prev_hash, hash) "
                                  "VALUES (?, ?, ?, ?, 'note', 'mallory', ?, ?, ?)",
                                  (seq + 1, before["at"], before["run_id"], before["step_id"], data, before["hash"], digest)))


def _insert_clumsily(db: str, seq: int) -> None:  # a made-up hash: the record after it links straight past it
    row = record_row(db, seq)
    tamper(db, *renumber(seq, 1), ("INSERT INTO records (seq, at, run_id, step_id, kind, actor, data, prev_hash, hash) "
                                  "VALUES (?, ?, ?, ?, 'note', 'mallory', '{}', ?, ?)",
                                  (seq + 1, row["at"], row["run_id"], row["step_id"], "0" * 64, "f" * 64)))


def _retype(db: str, seq: int) -> None:  # values of types the ledger never writes: named, not a crash
    tamper(db, ("UPDATE records SET run_id = 12345, data = CAST(data AS BLOB) WHERE seq = ?", (seq,)))


def _rehash(db: str, seq: int) -> None:  # edited and its hash recomputed: the next record still links to the old one
    row = record_row(db, seq)
    fake = record_hash(row["prev_hash"], seq, datetime.fromisoformat(row["at"]), row["run_id"], row["step_id"],
                       row["kind"], "mallory", row["data"])
    tamper(db, ("UPDATE records SET actor = 'mallory', hash = ? WHERE seq = ?", (fake, seq)))


#: each kind of tampering, done at record AT, and the first break it gives (its seq from AT, its kind)
TAMPERING: dict[str, tuple[Callable[[str, int], None] | None, tuple[int, str] | None]] = {
    "untouched": (None, None), "edited": (_edit, (0, "edited")), "edited twice": (_edit_twice, (0, "edited")),
    "deleted": (_delete, (0, "deleted")), "deleted and renumbered": (_delete_hidden, (0, "deleted")),
    "reordered": (_swap, (0, "reordered")), "inserted": (_insert_forged, (1, "inserted")),
    "inserted clumsily": (_insert_clumsily, (1, "inserted")), "re-hashed": (_rehash, (0, "edited")),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_two_stretches_give_the_one_walks_answer_wherever_the_cut_falls(how: str, scenario: Scenario,
                                                                         ledger_copy: str) -> None:
    _the_walks_agree(how, *TAMPERING[how], ledger_copy)


@pytest.mark.sqlite_only("values of types the ledger never writes: SQLite's columns take any type, PostgreSQL's refuse")
def test_retyped_values_give_the_one_walks_answer_wherever_the_cut_falls(scenario: Scenario, ledger_copy: str) -> None:
    _the_walks_agree("retyped", _retype, (0, "edited"), ledger_copy)


def _the_walks_agree(how: str, tamper: Callable[[str, int], None] | None, expected: tuple[int, str] | None,
                     ledger_copy: str) -> None:
    ledger = Ledger(ledger_copy)
    with ledger.read() as conn:
        head = verify_chain(conn).head_seq
    at = head // 2
    if tamper is not None:
        tamper(ledger_copy, at)
    with ledger.read() as conn:
        one = verify_chain(conn).to_dict()
    first = one["first_break"]
    assert (first and (first["seq"] - at, first["kind"])) == expected
    if how == "edited twice":
        assert one["suspects"] == [at + 5]
    cuts = sorted({2, at - 1, at, at + 1, at + 2, at + 3, at + 4, at + 5, at + 6, head - 1, head})
    for cut in cuts:
        two = verify_ledger(ledger, workers=2, min_records=0, cut=cut).to_dict()
        assert two == one, f"cut at {cut}"
    ledger.dispose()


def test_if_the_child_fails_the_parent_walks_its_stretch(ledger_copy: str, monkeypatch: pytest.MonkeyPatch,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    ledger = Ledger(ledger_copy)
    with ledger.read() as conn:
        at = verify_chain(conn).head_seq // 2
    _edit_twice(ledger_copy, at + 2)  # both edits after the cut: the child's to find
    with ledger.read() as conn:
        one = verify_chain(conn).to_dict()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full (simulated in the child)")

    monkeypatch.setattr(parallel.pickle, "dump", broken)  # only the child writes a pickle
    two = verify_ledger(ledger, workers=2, min_records=0, cut=at).to_dict()
    assert two == one and two["first_break"]["seq"] == at + 2 and two["suspects"] == [at + 7]
    assert "disk full (simulated in the child)" in capfd.readouterr().err
    ledger.dispose()


def test_a_short_chain_or_one_worker_walks_in_one_process(ledger_copy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("forked")

    monkeypatch.setattr(parallel, "_Child", no_fork)
    ledger = Ledger(ledger_copy)
    assert verify_ledger(ledger).ok  # the scenario's few hundred records: below MIN_RECORDS
    assert verify_ledger(ledger, workers=1, min_records=0).ok
    ledger.dispose()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_long_walk_tells_how_far_it_is(workers: int, ledger_copy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.audit import verify

    monkeypatch.setattr(verify, "PROGRESS_EVERY", 10)  # the scenario's few hundred records: a word every ten
    ledger = Ledger(ledger_copy)
    told: list[float] = []
    result = verify_ledger(ledger, workers=workers, min_records=0, progress=told.append)
    assert result.to_dict() == verify_ledger(ledger, workers=1).to_dict()  # the same answer, told or not
    assert len(told) >= 5 and told == sorted(told) and 0 < told[0] and told[-1] <= 1.0
    assert told[-1] > 0.8  # up to the end of the stretch this process walks
    ledger.dispose()
