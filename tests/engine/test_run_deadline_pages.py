"""A run that passes its own deadline: its owner and the owner role's lead are paged (directors own their deadlines
and get the escalations), and whoever holds one of its open steps reads that the run is late on them.

One page per person for the event: the owner who holds a step too, or an owner at the top of the tree (its own
lead), is paged once. No Prefect: a real SQLite ledger, the real engine, pager and timer service, the local inbox,
time on a manual clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.clock import ManualClock
from flows.engine.timers import TimerService
from flows.language.actors import Actor
from notifications import read_inbox
from tests.engine.conftest import clocked_engine_of

T0 = datetime(2026, 3, 9, 2, tzinfo=UTC)  # 10:00 in Shanghai

# growth-lead (zhang-min) owns it, ops-director (li-wei) is that role's lead
LATE = """\
id: t-late-run
title: Late run probe
class: outage
owner: growth-lead
deadline: 1h
inputs:
  brand: {type: string}
dedup: "{{ inputs.brand }}"
steps:
  - id: numbers
    title: Pull the numbers
    assignee: data-analyst
    due: 30m
  - id: ads
    title: Pause the ads
    assignee: ads-specialist
    due: 30m
  - id: budget
    title: Check the budget
    assignee: ads-specialist
    due: 40m
  - id: sign-off
    title: Sign off
    assignee: growth-lead
    due: 30m
"""

# ops-director is at the top of the tree: it is its own lead, and li-wei holds its step too
TOP = """\
id: t-top-run
title: Top run probe
class: outage
owner: ops-director
deadline: 1h
steps:
  - id: decide
    title: Decide
    assignee: ops-director
    due: 30m
"""


@pytest.fixture
def engine(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'ledger.db'}",
                                 ManualClock(T0), {"t-late-run": LATE, "t-top-run": TOP})


def late_pages(engine: Any, person: str) -> list[tuple[str, str]]:
    """(title, body on one line) of the "Run deadline passed" pages ``person`` got."""
    engine.pager.close()  # every page delivered
    return [(m["title"], " ".join(m["body"].split())) for m in read_inbox(person, engine.inbox)
            if "Run deadline passed" in m["title"]]


def test_a_missed_run_deadline_reaches_the_owner_their_lead_and_each_holder_of_an_open_step_once(engine: Any) -> None:
    run = engine.start("t-late-run", {"brand": "lumi"}, initiator="zhang-min").run_id
    engine.hand_over(run, "numbers", Actor("zhang-min"), "sun-hao")  # with sun-hao now, not priya-nair
    TimerService(engine).advance_to(T0 + timedelta(minutes=61))

    [(title, body)] = late_pages(engine, "zhang-min")  # the owner, who holds `sign-off` too: one page
    assert title == f"[P2] Run deadline passed: Late run probe · lumi, run {run}", title
    assert "4 of 4 steps are not done" in body
    assert "It comes to you as the run's owner or the owner's lead" in body
    assert "Whoever holds an open step is told too." in body
    [(title, body)] = late_pages(engine, "li-wei")  # ops-director, growth-lead's lead
    assert title == f"[P2] Run deadline passed: Late run probe · lumi, run {run}", title
    assert "| Sign off (`sign-off`) | active | — |" in body

    [(title, body)] = late_pages(engine, "liu-yang")  # two open steps of his: one page listing them
    assert title == "[P2] Run deadline passed: Late run probe · lumi, 2 of your steps are still open", title
    assert ("Liu Yang 刘洋, the P2 run of **Late run probe** was due to finish by 2026-03-09 11:00 (Asia/Shanghai) "
            "and is still open, with these steps of yours among what keeps it open: "
            "- **Pause the ads** (`ads`): due 2026-03-09 10:30 (Asia/Shanghai) (30m overdue) "
            "- **Check the budget** (`budget`): due 2026-03-09 10:40 (Asia/Shanghai) (20m overdue) "
            "The run's owner and their lead are told. Finish them now, or tell them what holds them up.") in body

    [(title, body)] = late_pages(engine, "sun-hao")
    assert title == "[P2] Run deadline passed: Late run probe · lumi, your step Pull the numbers is still open", title
    assert "your step **Pull the numbers** is among what keeps it open (due 2026-03-09 10:30 (Asia/Shanghai), " \
           "30m overdue)." in body
    assert late_pages(engine, "priya-nair") == []  # handed away before


def test_an_owner_at_the_top_of_the_tree_who_holds_the_open_step_is_paged_once(engine: Any) -> None:
    engine.start("t-top-run", {}, initiator="zhang-min")
    TimerService(engine).advance_to(T0 + timedelta(minutes=61))
    [(title, _)] = late_pages(engine, "li-wei")
    assert title.startswith("[P2] Run deadline passed: Top run probe, run "), title
