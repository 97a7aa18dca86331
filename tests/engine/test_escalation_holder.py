"""An escalation that reaches the late person themselves: they are told their step is late, in words meant for
them, not "Escalated to you … reach sara-lopez, or take it over yourself" sent to sara-lopez.

It happens when the SOP's owner role is the step's assignee role (a CS lead's own SOP), or when a rung names the
assignee beside others. The others on the rung still get the escalation. No Prefect: a real SQLite ledger, the
real engine, pager and timer service, time on a manual clock.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.clock import ManualClock
from flows.engine.timers import TimerService
from notifications import read_inbox
from tests.conftest import TestDatabase
from tests.engine.conftest import clocked_engine_of, make_project

START = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)

# cs-lead (sara-lopez) owns the SOP and is the assignee; ops-director (li-wei) is cs-lead's lead
OWN = """\
    id: t-own
    title: Refund review
    class: complaint
    owner: cs-lead
    steps:
      - id: review
        title: Review the refund
        assignee: cs-lead
        due: 1h
        escalation:
          - at: 100%
            notify: [owner]
      - id: close
        title: Close the ticket
        assignee: cs-lead
        due: 1h
        escalation:
          - at: 100%
            notify: [assignee, lead]
"""

# a ladder that climbs to the role's lead and its backup (crisis-pr's): the backup is a person, not a role
BACKUP = """\
    id: t-backup
    title: Refund check
    class: complaint
    owner: ops-director
    steps:
      - id: check
        title: Check the refund
        assignee: cs-lead
        due: 1h
        escalation:
          - at: 100%
            notify: [lead, backup]
"""


@pytest.fixture
def engine(database: TestDatabase, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, database.url_at(tmp_path / "ledger.db"),
                                 ManualClock(START), {"t-own": OWN, "t-backup": BACKUP})


def titles(engine: Any, person: str, step_title: str) -> list[str]:
    engine.pager.close()  # every page delivered
    return [m["title"] for m in read_inbox(person, engine.inbox) if step_title in m["title"]]


def bodies(engine: Any, person: str, step_title: str) -> list[str]:
    return [" ".join(m["body"].split()) for m in read_inbox(person, engine.inbox) if step_title in m["title"]]


def test_the_late_person_is_told_it_is_late_not_asked_to_reach_themselves(engine: Any) -> None:
    engine.start("t-own", {}, initiator="li-wei", speed=1)
    TimerService(engine).advance_to(START + timedelta(hours=1, minutes=1))

    # `review`: the rung names the owner, who is cs-lead, whose primary holds the step
    assigned, late = titles(engine, "sara-lopez", "Review the refund")
    assert assigned.startswith("[P1] Assigned to you: Review the refund (Refund review)")
    assert late.startswith("[P1] Overdue: Review the refund (Refund review)"), late
    told = bodies(engine, "sara-lopez", "Review the refund")[-1]
    assert "reach sara-lopez" not in told and "take it over yourself" not in told
    assert "Finish it now, or say what blocks you" in told


def test_the_others_on_the_rung_still_get_the_escalation(engine: Any) -> None:
    run = engine.start("t-own", {}, initiator="li-wei", speed=1)
    engine.claim(run.run_id, "close", "sara-lopez")  # held: "assignee" on the rung is its holder
    TimerService(engine).advance_to(START + timedelta(hours=1, minutes=1))

    late = titles(engine, "sara-lopez", "Close the ticket")[-1]
    assert late.startswith("[P1] Overdue: Close the ticket (Refund review)"), late
    [lead] = titles(engine, "li-wei", "Close the ticket")
    # its rung is at the due instant: late, without a "0s left" or "0s overdue" after it
    assert lead == "[P1] Escalated to you: Close the ticket (Refund review) is late", lead
    assert "reach Sara Lopez, or take it over yourself" in bodies(engine, "li-wei", "Close the ticket")[0]



def test_who_asks_for_help_is_not_asked_to_help_themselves(engine: Any) -> None:
    run = engine.start("t-own", {}, initiator="li-wei", speed=1)
    engine.claim(run.run_id, "close", "sara-lopez")
    paged = engine.ask_for_help(run.run_id, "close", "sara-lopez", "the refund system is down")  # [assignee, lead]
    assert paged == ["lead (li-wei)"]  # what `sop need-help` prints: whom it reached, not "paged assignee, lead"

    [assigned] = titles(engine, "sara-lopez", "Close the ticket")  # nothing more: she knows, she asked
    assert assigned.startswith("[P1] Assigned to you: Close the ticket"), assigned
    [lead] = titles(engine, "li-wei", "Close the ticket")
    assert lead.startswith("[P1] Help asked: Sara Lopez needs a hand with Close the ticket"), lead


def test_a_help_request_that_reaches_the_holder_is_the_help_request(engine: Any) -> None:
    """The lead asks for help on a step its holder is on the next level of: she reads the request and its note,
    not a reminder (review)."""
    run = engine.start("t-own", {}, initiator="li-wei", speed=1)
    engine.claim(run.run_id, "close", "sara-lopez")
    engine.ask_for_help(run.run_id, "close", "li-wei", "call the bank first")  # the rung: [assignee, lead]
    told = titles(engine, "sara-lopez", "Close the ticket")  # (delivered side by side: in any order)
    assert any(t.startswith("[P1] Help asked: Li Wei 李伟 needs a hand with Close the ticket") for t in told), told
    assert not any("Reminder" in t or "overdue" in t.lower() for t in told), told


def test_an_escalation_resolves_its_people_without_importing_apprise_in_its_transaction(
        repo_root: Path, tmp_path: Path) -> None:
    """An escalation records whom it paged, resolved inside the write transaction: importing the notifications
    package there (Apprise, ~0.85 s the first time) held SQLite's write lock that long (review)."""
    import subprocess
    import sys

    root = make_project(repo_root, tmp_path / "site", only=())
    (root / "sops" / "t-own.yaml").write_text(textwrap.dedent(OWN))
    script = textwrap.dedent(f"""
        import sys
        from flows.engine.transitions import Engine
        from flows.language.library import load_library
        from flows.ledger import Ledger
        ledger = Ledger("sqlite:///{tmp_path / 'ledger.db'}")
        ledger.migrate()
        from pathlib import Path
        engine = Engine(load_library(Path("{root}")), ledger)
        run = engine.start("t-own", {{}}, initiator="li-wei", launch=False)
        with engine.transaction() as t:
            change = t.change(run.run_id)
            print(change.people_paged(["lead"], "close"), "apprise" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=repo_root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "False", done.stdout
    assert "li-wei" in done.stdout


def test_whom_need_help_would_page_is_read_without_writing_and_is_whom_it_then_pages(engine: Any) -> None:
    """The step's page names whom "Need help" will page before she presses it (walk 40, item 4): the engine's answer,
    read without a record, is the people the help then pages; with no level left, the role's lead."""
    from tests.engine.conftest import records

    run = engine.start("t-own", {}, initiator="li-wei", speed=1)
    engine.claim(run.run_id, "close", "sara-lopez")
    view = engine.view(run.run_id)
    step = view.sop.step("close")
    assert engine.help_would_page(view, step, "sara-lopez") == [("li-wei", "ops-director")]  # [assignee, lead]
    assert not records(engine, run.run_id, "help_asked") and not records(engine, run.run_id, "escalation")
    engine.ask_for_help(run.run_id, "close", "sara-lopez", "the refund system is down")
    assert records(engine, run.run_id, "escalation")[-1]["data"]["paged"] == ["li-wei"]
    view = engine.view(run.run_id)  # its one level fired: the next help goes to cs-lead's lead
    assert engine.help_would_page(view, step, "sara-lopez") == [("li-wei", "ops-director")]
    assert engine.help_would_page(view, view.sop.step("review"), "li-wei") == [("sara-lopez", "cs-lead")]  # [owner]


def test_the_backup_a_level_reaches_answers_for_the_steps_role_before_and_after_it_fires(engine: Any) -> None:
    """`backup` resolves to a person: "Need help" named them without a role ("Pages Li Wei, Operations Director;
    Wang Fang") where the lead had one. The backup answers for the step's role, before the level fires and as
    recorded after (on call as when it fired)."""
    run = engine.start("t-backup", {}, initiator="li-wei", speed=1)
    view = engine.view(run.run_id)
    step = view.sop.step("check")
    reach = [("li-wei", "ops-director"), ("wang-fang", "cs-lead")]  # cs-lead's lead; cs-lead's backup
    assert engine.help_would_page(view, step, "sara-lopez") == reach
    engine.ask_for_help(run.run_id, "check", "sara-lopez", "is this a duplicate?")
    fired = engine.view(run.run_id)
    from tests.engine.conftest import records

    [escalation] = records(engine, run.run_id, "escalation")
    assert escalation["data"]["paged"] == ["li-wei", "wang-fang"]
    assert engine.roles_paged(fired, step, escalation["data"]["notify"], START) == dict(reach)
