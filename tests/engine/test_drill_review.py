"""The review after a game day answers the ops manager's first questions without reading every record: how long until
someone answered (time to acknowledge), and who was escalated to, when, and whom each level reached. `sop drill`
prints them under its table, `sop audit show` above the timeline (the desk shows the same table)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from flows.engine.transitions import Engine
from flows.runtime.drill import Drill
from tests.engine.conftest import local_engine_of, records

PROBE = """\
id: t-review
title: Review probe
class: complaint
owner: pr-lead
deadline: 2h
escalation:
  - at: 50%
    notify: [assignee]
  - at: 100%
    notify: [lead, backup]
steps:
  - id: assess
    title: Assess the spike
    assignee: pr-oncall
    due: 15m
"""


WAITS = PROBE.replace("id: t-review", "id: t-waits").replace("title: Review probe", "title: Waits probe") + """\
  - id: brief
    title: Brief the service desk
    assignee: cs-lead
    due: 15m
"""


@pytest.fixture
def local_engine(repo_root, tmp_path, monkeypatch) -> Any:
    yield from local_engine_of(repo_root, tmp_path / "site", monkeypatch, {"t-review": PROBE, "t-waits": WAITS})


def test_the_drill_and_the_audit_say_who_was_escalated_to_and_when(sop: Any, local_engine: Engine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    result = Drill(local_engine, "t-review", speed=600, seed=1, late={"assess"}).run(timeout=60)
    assert result.outcome == "done"
    assert result.time_to_acknowledge_s is not None and 15 * 60 < result.time_to_acknowledge_s < 30 * 60  # answered late
    rows = [(r["step"], r["stage"], r["notify"], r["paged"]) for r in result.ladder]
    assert rows == [("assess", "escalation stage 1", ["assignee"], ["wang-fang"]),
                    ("assess", "escalation stage 2", ["lead", "backup"], ["chen-jie", "sara-lopez"])]
    first, second = (r["offset_s"] / 60 for r in result.ladder)  # SOP minutes after the start (timers fire a little late)
    assert 7.5 <= first < 12 and 15 <= second < 20

    env = {"SOP_DATABASE_URL": f"sqlite:///{local_engine.library.root / 'var' / 'ledger.db'}",
           "SOP_HOME": str(local_engine.library.root)}
    shown = sop("audit", "show", result.run_id, env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    section = text[text.index("Escalations (SOP time"):text.index("Timeline (SOP time")]
    lines = [" ".join(line.split()) for line in section.splitlines()[1:] if line.strip()]
    # each level, then when on the wall clock (the site's zone, as the timeline below) and its record
    when = r" · \d{4}-\d\d-\d\d \d\d:\d\d:\d\d #\d+"
    assert len(lines) == 2 and re.fullmatch(r"\+\d+m\d*s? assess escalation stage 1 → assignee: wang-fang" + when,
                                            lines[0]), lines
    assert re.fullmatch(r"\+1\dm\d*s? assess escalation stage 2 → lead, backup: chen-jie, sara-lopez" + when, lines[1]), lines
    seq = lines[1].rsplit("#", 1)[1]
    assert re.search(rf"#{seq} +assess escalated", text), text  # the record it names, in the timeline


FOLLOWED = {
    "t-followed": """\
id: t-followed
title: Followed probe
class: complaint
owner: pr-lead
follow_ups:
  - {start: t-review, within: 5d}
steps:
  - {id: assess, assignee: pr-oncall, due: 15m}
""",
    "t-review": PROBE,
}


@pytest.fixture
def followed_engine(repo_root, tmp_path, monkeypatch) -> Any:
    yield from local_engine_of(repo_root, tmp_path / "site", monkeypatch, FOLLOWED)


def test_the_drill_says_the_follow_up_it_did_not_start_once_in_plain_words(followed_engine: Engine) -> None:
    from flows.cli.common import console
    from flows.cli.drill import _print_entry, _summary

    with console.capture() as shown:
        result = Drill(followed_engine, "t-followed", speed=600, seed=1, on_entry=_print_entry).run(timeout=60)
        _summary(result)
    said = [" ".join(line.split()) for line in shown.get().splitlines() if "follow-up" in line]
    assert len(said) == 1, said  # on the timeline, not again under the summary
    assert said[0].endswith("follow-up t-review skipped: not started in a drill; a live run's end starts it, to be "
                            "done within 5d"), said
    # the run page shows the reason in brackets ("t-review: skipped (…)"): none nested in them
    [skipped] = records(followed_engine, result.run_id, "follow_up_skipped")
    assert "(" not in skipped["data"]["reason"]


def test_a_drill_naming_its_people_answers_only_as_them(local_engine: Engine) -> None:
    """The auditor's walk: with `--people wang-fang,chen-jie`, "facts done by sara-lopez (drill)" though every page to
    her was not sent. Now a step whose holder is not in the drill is taken and answered by a member of its role who
    is (assess: pr-oncall's wang-fang is on call; chen-jie, a member, takes part); a step none of whose role takes
    part waits, as it would in a real drill, and the timeline says so once."""
    said: list[Any] = []  # what `sop drill` prints, line by line
    result = Drill(local_engine, "t-waits", speed=600, seed=1, people=["chen-jie"], starter="li-wei",
                   on_entry=said.append).run(timeout=15)
    done = {r["step_id"]: r["actor"] for r in records(local_engine, result.run_id, "step_done")}
    assert done.get("assess") == "chen-jie", done  # taken and answered by the member who takes part
    taken = [r for r in records(local_engine, result.run_id, "step_claimed") if r["step_id"] == "assess"]
    assert [r["actor"] for r in taken] == ["chen-jie"]
    assert "brief" not in done  # cs-lead is sara-lopez and wang-fang: neither takes part
    waits = [e for e in said if e.kind == "drill_waits"]
    assert len(waits) == 1 and waits[0].step == "brief" and "waits: sara-lopez holds it and does not take part" in waits[0].detail
    people = {r["actor"] for r in records(local_engine, result.run_id) if r["actor"] and r["kind"] == "step_done"}
    assert people <= {"chen-jie", "li-wei"}, people
