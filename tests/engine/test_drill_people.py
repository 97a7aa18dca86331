"""A drill that names who takes part pages them alone: everyone else's page is not sent, and recorded as not sent.

Sun Hao (compliance) got three pages of a game day he was not part of: a drill paged everyone its SOP's roles reach.
Now `sop drill … --people a,b`, `sop run … --drill --people a,b` and the board's drill form name the people; who
started the drill takes part too. No Prefect: the real engine, pager and timer service, the local inbox, the
test's database (SQLite, then PostgreSQL), time on a manual clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.audit import Audit
from flows.audit.timeline import ladder, ladder_line, notification_text, reached_words
from flows.clock import ManualClock
from flows.engine.inputs import InputRefused
from flows.engine.timers import TimerService
from flows.language.actors import Actor
from notifications import read_inbox
from tests.conftest import TestDatabase, sql_on
from tests.engine.conftest import clocked_engine_of, records

T0 = datetime(2026, 3, 9, 2, tzinfo=UTC)

# growth-lead (zhang-min) owns it; priya-nair pulls the numbers, sun-hao does the legal check; a late step reaches
# its role's lead: zhang-min for the numbers, ops-director (li-wei) for the legal check
GAME = """\
id: t-game
title: Game day probe
class: policy
owner: growth-lead
steps:
  - id: numbers
    title: Pull the numbers
    assignee: data-analyst
    due: 30m
  - id: legal
    title: Legal check
    assignee: compliance-officer
    due: 30m
escalation:
  - at: 100%
    notify: [lead]
"""


@pytest.fixture
def engine(database: TestDatabase, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, database.url_at(tmp_path / "ledger.db"),
                                 ManualClock(T0), {"t-game": GAME})


def pages(engine: Any, person: str) -> list[str]:
    """The titles of the pages ``person`` got."""
    engine.pager.close()  # every page delivered
    return [m["title"] for m in read_inbox(person, engine.inbox)]


def game_day(engine: Any, **trigger: Any) -> str:
    """Li Wei starts the probe as a drill; nobody answers for 31 minutes (both steps late, their leads paged)."""
    run = engine.start("t-game", {}, initiator=Actor("li-wei", via="web"), speed=1,
                       trigger={"kind": "drill", "by": "li-wei", "via": "web", **trigger}).run_id
    TimerService(engine).advance_to(engine.clock.now() + timedelta(minutes=31))
    return run


def test_a_drill_naming_its_people_pages_no_one_else_and_records_each_page_not_sent(engine: Any) -> None:
    run = game_day(engine, people=["priya-nair"])

    assert pages(engine, "sun-hao") == []  # not in the drill: not his legal check, nor anything else
    assert pages(engine, "zhang-min") == []  # the owner, the numbers' lead: not in it either
    assert any("Assigned to you: Pull the numbers" in t for t in pages(engine, "priya-nair"))
    # who started it takes part without naming herself: the legal check's lead is her
    assert any("Escalated to you: Legal check" in t for t in pages(engine, "li-wei"))

    told = {(r["step_id"], r["data"]["notification"]): r["data"] for r in records(engine, run, "notification")}
    assigned = told[("legal", "assigned")]
    assert assigned["results"] == [] and assigned["not_sent"] == [{"to": "sun-hao", "why": "not in the drill"}]
    assert notification_text(assigned) == "assigned not sent to sun-hao: not in the drill"  # the audit's line
    # whom each escalation paged, as its record (and the review's table) says: the people taking part only
    paged = {r["step_id"]: r["data"]["paged"] for r in records(engine, run, "escalation")}
    assert paged == {"numbers": [], "legal": ["li-wei"]}


def test_the_audit_tells_a_level_that_reached_nobody_in_the_drill_from_one_whose_record_does_not_say(
        engine: Any) -> None:
    """The review read "→ lead: nobody recorded" both for a level whose people were all left out of the drill (its
    record says so: ``paged: []``) and for a record written before escalations named anyone (2026-12): not the same
    answer to "who was escalated to"."""
    run = game_day(engine, people=["priya-nair"])

    lines = {row["step"]: ladder_line(row) for row in ladder(Audit(engine.ledger).run(run))}
    assert lines["numbers"].endswith("numbers escalation stage 1 → lead: nobody: none of them takes part in the drill "
                                     "(zhang-min)")  # whom its page left out, as the page's record says
    assert lines["legal"].endswith("legal escalation stage 1 → lead: li-wei")
    # a level that reached some of its people and not the others says both
    assert reached_words(["chen-jie"], True, ["sara-lopez"]) == "chen-jie (not in the drill: sara-lopez)"

    # the same level as a ledger of November wrote it: no `paged` at all
    [[row]] = sql_on(engine.ledger.url, ("SELECT seq, data FROM records WHERE run_id = ? AND kind = 'escalation' AND "
                                         "step_id = 'numbers'", (run,)))
    older = {key: value for key, value in json.loads(row["data"]).items() if key != "paged"}
    sql_on(engine.ledger.url, ("UPDATE records SET data = ? WHERE seq = ?", (json.dumps(older), row["seq"])))
    [numbers] = [row for row in ladder(Audit(engine.ledger).run(run)) if row["step"] == "numbers"]
    assert numbers["paged"] is None  # the JSON's `paged`: null, not []
    assert ladder_line(numbers).endswith("→ lead: not recorded (written before 2026-12, when escalations did not "
                                         "name whom they reached)")


def test_without_people_a_drill_pages_everyone_its_sop_reaches_as_before(engine: Any) -> None:
    run = game_day(engine)

    assert any("Assigned to you: Legal check" in t for t in pages(engine, "sun-hao"))
    assert all("not_sent" not in r["data"] for r in records(engine, run, "notification"))


@pytest.mark.parametrize(("trigger", "said"), [
    ({"kind": "drill", "people": ["priya-nair", "sunhao"]}, "people: person `sunhao` is not a person in config/"),
    ({"kind": "drill", "people": []}, "people names nobody"),
    ({"kind": "manual", "people": ["priya-nair"]}, "people: only a drill names who takes part"),
])
def test_people_who_are_nobody_or_a_run_that_is_no_drill_are_refused_and_nothing_starts(
        engine: Any, trigger: dict[str, Any], said: str) -> None:
    with pytest.raises(InputRefused) as refused:
        engine.start("t-game", {}, initiator=Actor("li-wei", via="web"), speed=1, trigger=trigger)
    assert said in str(refused.value), refused.value
    with engine.ledger.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 0


def test_the_terminal_refuses_people_who_are_nobody_before_anything_starts(
        sop: Any, site: tuple[Any, dict[str, str]]) -> None:
    engine, shell = site
    for command in (["run", "crisis-pr", "--drill", "--speed", "100"], ["drill", "crisis-pr"]):
        refused = sop(*command, "--people", "wang-fang,sunhao", "--as", "li-wei", env=shell)
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 1, refused.stdout
        assert "--people: person `sunhao` is not a person in config/" in said and "sun-hao" in said, said
        assert "nothing was started" in said and "Traceback" not in said, said
    not_a_drill = sop("run", "crisis-pr", "--people", "wang-fang", "--as", "li-wei", env=shell)
    assert "--people: only a drill names who takes part" in " ".join(not_a_drill.stderr.split())
    with engine.ledger.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 0

