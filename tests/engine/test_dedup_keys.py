"""Dedup keys compared as people read them: "Lumi", " LUMI " and the alert's ``lumi`` are one run.

On a big-sale day a director started crisis-pr by hand for "Lumi" while the alert's run was keyed
``lumi``: a second P1 run was opened instead of attaching. Letter case, whitespace and Unicode
compatibility forms no longer count (``flows.engine.dedup``), while the run keeps the subject its
first start wrote. Runs open when the release arrives are rewritten by migration 0017. A real
engine and ledger (each database), time on a manual clock; no Prefect.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.clock import ManualClock
from flows.engine.board import status_rows
from flows.engine.dedup import comparable
from flows.ledger.schema import runs
from tests.conftest import TestDatabase
from tests.engine.conftest import as_released_at, clocked_engine_of, records

T0 = datetime(2026, 11, 11, 9, 0, tzinfo=UTC)  # a big-sale day

BRAND = """\
    id: t-brand
    title: Brand probe - negative mentions
    class: complaint
    owner: pr-lead
    inputs:
      brand: {type: string}
    dedup: "{{ inputs.brand }}"
    steps:
      - id: assess
        title: Size the problem
        assignee: pr-oncall
"""

# a run that ends as it starts (its one check decides at once) and starts t-brand for its brand, upper-cased
PARENT = """\
    id: t-parent
    title: Parent probe
    class: routine
    owner: pr-lead
    inputs:
      brand: {type: string}
    steps:
      - id: look
        kind: check
        check: "{{ true }}"
    follow_ups:
      - start: t-brand
        within: 1d
        inputs:
          brand: "{{ inputs.brand | upper }} "
"""

ALERT = {"kind": "alert", "labels": {"alertname": "NegativeSentimentSpike", "brand": "lumi"}}
BY_HAND = {"kind": "manual", "by": "ops-director", "via": "cli"}


@pytest.fixture
def engine(database: TestDatabase, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, database.url_at(tmp_path / "ledger.db"),
                                 ManualClock(T0), {"t-brand": BRAND, "t-parent": PARENT})


def start(engine: Any, brand: str, trigger: dict[str, Any] | None = None) -> Any:
    return engine.start("t-brand", {"brand": brand}, initiator="ops-director", trigger=trigger or BY_HAND)


def open_runs(engine: Any) -> dict[str, dict[str, Any]]:
    with engine.ledger.read() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(sa.select(runs).where(runs.c.status == "running"))}


def test_keys_fold_case_spacing_and_compatibility_forms_but_not_spelling() -> None:
    assert {comparable(k) for k in ("lumi", "Lumi", " LUMI ", "ＬＵＭＩ", "Lumi\u3000", "\tlumi\n")} == {"lumi"}
    assert comparable("Lumi  Beauty") == comparable("lumi\u00a0beauty") == "lumi beauty"
    assert comparable("Straße") == comparable("STRASSE")
    assert len({comparable(k) for k in ("lumi", "lumi-cn", "lumi cn", "lumí")}) == 4
    assert comparable(comparable(" ＬＵＭＩ  Beauty ")) == comparable(" ＬＵＭＩ  Beauty ")


def test_a_start_by_hand_that_differs_in_case_or_spacing_attaches_to_the_alerts_run(engine: Any) -> None:
    """The incident: the alert opened ``lumi``; the director's "Lumi", " LUMI " (and a full-width ＬＵＭＩ typed on
    a Chinese keyboard) attach to it and are counted as repeats; "lumi-cn" is another brand, another run."""
    alerted = start(engine, "lumi", ALERT)
    by_hand = [start(engine, brand) for brand in ("Lumi", " LUMI ", "ＬＵＭＩ")]
    assert [(r.attached, r.run_id, r.repeats) for r in by_hand] == [(True, alerted.run_id, n) for n in (1, 2, 3)]
    other = start(engine, "lumi-cn")
    assert not other.attached and set(open_runs(engine)) == {alerted.run_id, other.run_id}
    # a resolved alert finds the run whatever the case of its label (Engine.open_run, the intake's resolve)
    assert engine.open_run("t-brand", {"brand": "LUMI"}, ALERT) == alerted.run_id
    # the run's subject is what its first start wrote, on the board and in `sop status`
    assert engine.view(alerted.run_id).subject == "lumi"
    assert {row["run"]: row["subject"] for row in status_rows(engine)}[alerted.run_id] == "lumi"


def test_the_run_keeps_the_subject_its_first_start_wrote(engine: Any) -> None:
    """The director came first: the run is "Lumi Beauty" (as typed, not a lowercased copy), and the alert's
    ``lumi beauty`` with its label's two spaces attaches to it."""
    by_hand = start(engine, "Lumi Beauty")
    alerted = start(engine, "lumi  beauty", {**ALERT, "labels": {"brand": "lumi  beauty"}})
    assert alerted.attached and alerted.run_id == by_hand.run_id
    view = engine.view(by_hand.run_id)
    assert view.subject == "Lumi Beauty" and view.run["dedup_key"] == "Lumi Beauty"
    assert {row["run"]: row["subject"] for row in status_rows(engine)}[by_hand.run_id] == "Lumi Beauty"


def test_a_follow_up_for_the_same_brand_in_another_case_attaches_to_its_open_run(engine: Any) -> None:
    alerted = start(engine, "lumi", ALERT)
    parent = engine.start("t-parent", {"brand": "lumi"}, initiator="ops-director", trigger=BY_HAND)
    assert not engine.view(parent.run_id).is_open
    [link] = [r["data"] for r in records(engine, parent.run_id, "follow_up_started")]
    assert (link["run"], link["attached"]) == (alerted.run_id, True)
    assert set(open_runs(engine)) == {alerted.run_id}


def test_drills_still_keep_apart_from_real_runs_whatever_the_case(engine: Any) -> None:
    real = start(engine, "lumi", ALERT)
    drill = start(engine, "LUMI", {"kind": "drill", "late": []})
    again = start(engine, "Lumi", {"kind": "drill", "late": []})
    assert not drill.attached and drill.run_id != real.run_id
    assert again.attached and again.run_id == drill.run_id


def test_long_keys_that_differ_only_in_case_meet_and_keep_their_start(engine: Any) -> None:
    """A key over 300 characters keeps its start and a hash; the hash is of the folded key, so case still does not
    count, and what the run shows is the start as written."""
    first = start(engine, "Lumi " * 80)
    again = start(engine, " LUMI" * 80)
    other = start(engine, "Lumi " * 80 + "!")
    assert again.attached and again.run_id == first.run_id
    assert not other.attached
    key = engine.view(first.run_id).run["dedup_key"]
    assert len(key) <= 300 and key.startswith("Lumi Lumi")


def _as_the_last_release_left_them(engine: Any, keys: dict[str, tuple[str, str]]) -> None:
    """Rows as a release before 2026-12-08 wrote them: the schema at 0016 (later migrations downgraded), each run's
    dedup and open key as typed."""
    as_released_at(engine.ledger, "0016_drill_keys")
    with engine.ledger.engine.begin() as conn:
        for run_id, (written, held) in keys.items():
            conn.execute(sa.update(runs).where(runs.c.id == run_id).values(dedup_key=written, open_key=held))


def test_runs_open_at_the_upgrade_keep_deduplicating_and_colliding_ones_both_stay_open(
        engine: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Migration 0017. The alert's ``Lumi`` run (older) and the director's ``lumi`` run (opened apart before) now
    share one key: both stay open, the older keeps it and takes the repeats, the newer takes none. Other open
    runs get their key in the new form (a drill keeps its own), and what each shows stays as written."""
    older = start(engine, "a", ALERT).run_id
    engine.clock.sleep(60)
    newer = start(engine, "b").run_id
    engine.clock.sleep(60)
    spaced = start(engine, "c").run_id
    drill = start(engine, "d", {"kind": "drill", "late": []}).run_id
    long_one = start(engine, "e" * 400).run_id
    long_key = open_runs(engine)[long_one]["open_key"]
    _as_the_last_release_left_them(engine, {
        older: ("Lumi", "t-brand:Lumi"),  # rewritten to the key the newer run holds: the upgrade must not trip on it
        newer: ("lumi", "t-brand:lumi"),
        spaced: ("Storefront  Main", "t-brand:Storefront  Main"),
        drill: ("Web", "drill|t-brand:Web"),
    })

    with caplog.at_level(logging.WARNING, logger="sop.ledger"):
        engine.ledger.migrate()

    held = {run_id: row["open_key"] for run_id, row in open_runs(engine).items()}
    assert held == {older: "t-brand:lumi", newer: None, spaced: "t-brand:storefront main",
                    drill: "drill|t-brand:web", long_one: long_key}
    assert f"run={newer}" in caplog.text and f"kept_by={older}" in caplog.text
    assert start(engine, "LUMI").run_id == older and start(engine, "lumi").run_id == older
    assert start(engine, "storefront main").run_id == spaced
    assert start(engine, "WEB", {"kind": "drill", "late": []}).run_id == drill
    assert start(engine, "e" * 400).run_id == long_one  # shortened with a hash: left as it was, still meets itself
    assert engine.view(older).run["repeats"] == 2 and engine.view(newer).run["repeats"] == 0
    assert (engine.view(older).subject, engine.view(newer).subject) == ("Lumi", "lumi")
    assert engine.view(newer).is_open  # its people finish or cancel it as before
