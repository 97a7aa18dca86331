"""A step whose deadline ends it (``on_timeout: skip``, ``fail`` or a fallback): its owner reads what happened.

Not "Overdue … finish it now; the escalation ladder goes on": the step is closed, it is not the owner's, and no
ladder follows. And crisis-pr's legal step keeps its own word: the operations director hears of it before it is
skipped. No Prefect: a real SQLite ledger, the real engine, pager and timer service, time on a manual clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.clock import ManualClock
from flows.engine.timers import TimerService
from flows.language.actors import Actor
from flows.language.library import load_library
from flows.language.steps.human import HumanReport
from notifications import read_inbox
from tests.engine.conftest import clocked_engine_of

START = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
ASSESSED = {"severity": "high", "topic": "late parcels", "category": "delivery", "platforms": "weibo",
            "trend": "rising", "kol_involved": False}

# growth-lead (zhang-min) owns it; each step of sre-oncall ends by its deadline in its own way
PROBE = """\
id: t-timeouts
title: Timeout probe
class: policy
owner: growth-lead
steps:
  - id: optional
    title: Check the optional dashboard
    assignee: data-analyst
    due: 30m
    on_timeout: skip
  - id: after-optional
    title: Use what the dashboard said
    needs: [optional]
    assignee: data-analyst
    due: 1h
  - id: vital
    title: Confirm the vital number
    assignee: data-analyst
    due: 30m
    on_timeout: fail
  - id: primary
    title: Reach the supplier by phone
    assignee: data-analyst
    due: 30m
    on_timeout: fallback:by-mail
  - id: by-mail
    title: Write to the supplier
    assignee: ads-specialist
    due: 1h
"""


@pytest.fixture
def engine(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    shipped = {name: (repo_root / "sops" / f"{name}.yaml").read_text() for name in ("crisis-pr", "post-incident-review")}
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'ledger.db'}",
                                 ManualClock(START), {**shipped, "t-timeouts": PROBE})


def inbox(engine: Any, person: str, about: str) -> list[tuple[str, str]]:
    """(title, body on one line) of each message ``person`` got whose title names ``about``."""
    engine.pager.close()  # every page delivered
    return [(m["title"], " ".join(m["body"].split())) for m in read_inbox(person, engine.inbox) if about in m["title"]]


def test_the_owner_reads_that_a_step_was_skipped_failed_or_fell_back_not_that_it_is_overdue(engine: Any) -> None:
    engine.start("t-timeouts", {}, initiator="zhang-min", speed=1)
    TimerService(engine).advance_to(START + timedelta(minutes=31))

    [(title, body)] = inbox(engine, "zhang-min", "Check the optional dashboard")  # the owner
    assert title.startswith("[P3] Timed out: Check the optional dashboard was skipped (Timeout probe)"), title
    assert "Zhang Min" in body and "you own this run" in body
    assert "was not reported by its due" in body and "skipped (on_timeout: skip)" in body
    assert "Nothing more is asked of Data analyst (Priya Nair) for it, and no escalation follows" in body
    assert "What follows: the steps that need it go on without it: Use what the dashboard said." in body
    for false in ("Finish it now", "escalation ladder goes on", "Overdue"):
        assert false not in body and false not in title

    [(title, body)] = inbox(engine, "zhang-min", "Confirm the vital number")
    assert title.startswith("[P3] Timed out: Confirm the vital number failed (Timeout probe)"), title
    assert "failed (on_timeout: fail)" in body and "the run will end failed" in body

    [(title, body)] = inbox(engine, "zhang-min", "Reach the supplier by phone")
    assert title.startswith("[P3] Timed out: Reach the supplier by phone fell back to Write to the supplier"), title
    assert "fell back to **Write to the supplier** (on_timeout: fallback:by-mail), now asked of Paid media specialist" \
        in body


def test_whom_the_step_was_with_reads_it_is_no_longer_theirs_once_each_and_the_owner_not_twice(engine: Any) -> None:
    run = engine.start("t-timeouts", {}, initiator="zhang-min", speed=1).run_id
    engine.claim(run, "primary", Actor("liu-yang"))  # took it: his now, no longer priya-nair's
    engine.hand_over(run, "vital", Actor("zhang-min"), "zhang-min")  # the owner took it over himself
    TimerService(engine).advance_to(START + timedelta(minutes=31))

    [(title, body)] = inbox(engine, "priya-nair", "Timed out: Check the optional dashboard")  # data-analyst's primary
    assert title == "[P3] Timed out: Check the optional dashboard was skipped (Timeout probe); you no longer need to " \
                    "act", title
    assert ("Priya Nair, **Check the optional dashboard** in a P3 run of **Timeout probe** was with you and was not "
            "reported by its due, 2026-03-09 17:30 (Asia/Singapore), so its SOP ended it: it was skipped (on_timeout: "
            "skip). It is no longer yours: stop work on it, it takes no report now. The run's owner is told.") in body
    assert "Nothing is asked of you" in body and "sop done" not in body
    assert inbox(engine, "priya-nair", "Timed out: Reach the supplier") == []  # liu-yang had taken it

    [(title, body)] = inbox(engine, "liu-yang", "Timed out: Reach the supplier by phone")
    assert title.startswith("[P3] Timed out: Reach the supplier by phone fell back to Write to the supplier "
                            "(Timeout probe); you no longer need to act"), title
    assert "it fell back to **Write to the supplier**, now asked of Paid media specialist (on_timeout: fallback:by-mail)" \
        in body

    # the owner holds `vital` himself: one page (the owner's), not a second that it is no longer his
    [(title, _)] = inbox(engine, "zhang-min", "Timed out: Confirm the vital number")
    assert title.startswith("[P3] Timed out: Confirm the vital number failed (Timeout probe)"), title
    assert "you no longer need to act" not in title
    assert inbox(engine, "priya-nair", "Timed out: Confirm the vital number") == []  # handed away from her before


def test_crisis_pr_legal_reaches_the_operations_director_before_it_is_skipped(engine: Any) -> None:
    run = engine.start("crisis-pr", {"brand": "lumi"}, initiator="li-wei", speed=1).run_id
    engine.report(run, "assess", HumanReport("wang-fang", values=ASSESSED, evidence=["https://x.example/e"]))
    assigned = engine.view(run).steps["legal"]["ready_at"]
    TimerService(engine).advance_to(assigned + timedelta(minutes=31))
    assert engine.view(run).state("legal") == "skipped"

    director = inbox(engine, "li-wei", "Legal and compliance check")  # li-wei: ops-director's primary
    assert director and director[0][0].startswith("[P1] Escalated to you: Legal and compliance check"), director
    title, body = inbox(engine, "chen-jie", "Legal and compliance check")[-1]  # chen-jie: the owner (pr-lead)
    assert title.startswith("[P1] Timed out: Legal and compliance check of what we may say was skipped"), title


RACE = """\
id: t-race
title: Race probe
class: policy
owner: growth-lead
steps:
  - id: optional
    title: Check the optional dashboard
    assignee: data-analyst
    due: 30m
    on_timeout: skip
    escalation:
      - at: 100%
        notify: [lead]
"""


def test_a_rung_at_the_due_of_a_step_its_deadline_ends_still_reaches_its_people(engine: Any) -> None:
    """page-speed, traffic-drop, traffic-surge and weekly-review escalate at 100% a step whose on_timeout ends it
    at that same instant. The deadline's timer fired first, closed the step and took the rung's timer with it: the
    lead never heard. A rung fires before the deadline of the same instant."""
    (engine.library.root / "sops" / "t-race.yaml").write_text(RACE)
    engine.library = load_library(engine.library.root)
    engine.start("t-race", {}, initiator="zhang-min", speed=1)
    TimerService(engine).advance_to(START + timedelta(minutes=31))
    who = engine.library.site.roles["data-analyst"].lead
    primary = engine.library.site.roles[who].primary
    lead = inbox(engine, primary, "Check the optional dashboard")
    assert any(title.startswith("[P3] Escalated to you: Check the optional dashboard") for title, _ in lead), lead
