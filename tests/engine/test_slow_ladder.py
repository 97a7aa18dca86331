"""A long ladder on a run slowed 1,000 times: its later levels fall past the last year a datetime holds.

A ladder's levels add up (``every: 366d`` repeats a year and a day apart, up to 1,000 of them), and at speed 0.001
each is some 1,000 years of real time after the one before. Asking for help climbs the ladder at once, arming each
next level: the 7th request armed the 8th level past year 9999, and failed with a traceback. Such an instant is the
run clock's latest (``flows.language.calendar.LATEST``) instead: a timer that never fires in practice.

No Prefect: a real ledger in the test's folder, the real engine and pager, time on a manual clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.clock import ManualClock
from flows.language.calendar import LATEST
from flows.language.durations import SPEED_MIN
from flows.language.steps.human import HumanReport
from tests.conftest import TestDatabase
from tests.engine.conftest import clocked_engine_of

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

YEARLY = """\
    id: t-yearly
    title: A yearly chase
    class: complaint
    owner: cs-lead
    steps:
      - id: close
        title: Close the ticket
        assignee: cs-lead
        due: 366d
        escalation:
          - every: 366d
            notify: [lead]
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def engine(database: TestDatabase, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           clock: ManualClock) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, database.url_at(tmp_path / "ledger.db"), clock,
                                 {"t-yearly": YEARLY})


def armed_ladder(engine: Any, run_id: str) -> datetime:
    """When the step's next ladder level is armed to fire."""
    from flows.ledger import utc
    from flows.ledger.schema import timers

    query = sa.select(timers.c.due_at).where((timers.c.run_id == run_id) & (timers.c.kind == "ladder")
                                             & timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None))
    with engine.ledger.read() as conn:
        [due_at] = conn.execute(query).scalars().all()
    return utc(due_at)


def test_help_climbs_a_yearly_ladder_on_a_run_slowed_1000_times(engine: Any, clock: ManualClock) -> None:
    run = engine.start("t-yearly", {}, initiator="li-wei", speed=SPEED_MIN).run_id
    assert armed_ladder(engine, run) == START + timedelta(days=366) / SPEED_MIN  # the first repeat: ~1,002 years on
    for asked in range(1, 11):
        clock.sleep(120)  # past the double-tap guard: each request climbs a level
        assert engine.ask_for_help(run, "close", "sara-lopez", f"request {asked}") == ["lead (li-wei)"]
    # the 11th repeat would be ~11,000 years on: armed at the latest instant the run's clock gives
    assert armed_ladder(engine, run) == LATEST
    engine.report(run, "close", HumanReport(actor="sara-lopez"))  # and the step still closes, its timer with it
    assert engine.view(run).run["status"] == "finished"
