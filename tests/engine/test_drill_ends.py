"""A game day's drill never outlives itself: a `--hand-over` it cannot play is refused before anything starts, a drill
that stops early (an error, Ctrl-C, its time limit) cancels its run saying why, and a second drill of the same subject
does not quietly play on the first one's run (it would attach by dedup). Left open, a drill's run went on paging the
director and the PR lead for a game day that was over."""

from __future__ import annotations

from typing import Any

import pytest

from flows.engine.transitions import Engine
from flows.runtime.drill import Drill, DrillRefused
from tests.engine.conftest import local_engine_of, record_count, records

PROBE = """\
id: t-gameday
title: Game-day probe
class: complaint
owner: pr-lead
deadline: 2h
inputs:
  brand: {type: string, default: lumi}
dedup: "{{ inputs.brand }}"
steps:
  - id: assess
    title: Assess the spike
    assignee: pr-oncall
    due: 15m
"""


@pytest.fixture
def local_engine(repo_root, tmp_path, monkeypatch) -> Any:
    yield from local_engine_of(repo_root, tmp_path / "site", monkeypatch, {"t-gameday": PROBE})


def test_a_hand_over_the_drill_cannot_play_is_refused_before_anything_starts(
        sop: Any, site: tuple[Engine, dict[str, str]]) -> None:
    engine, env = site
    for given, said in (("assess=nobody", "--hand-over assess=nobody: person `nobody` is not a person in config/"),
                        ("asses=sara-lopez", "--hand-over asses=sara-lopez: crisis-pr has no step `asses` waiting on "
                                             "a person (its people's steps: assess, watch, facts, legal, draft"),
                        ("assess=li-wei", "--hand-over assess=li-wei: li-wei is not a member of pr-oncall (chen-jie, "
                                          "sara-lopez, wang-fang)")):
        refused = sop("drill", "crisis-pr", "--speed", "600", "--hand-over", given, env=env, timeout=60)
        said_all = " ".join((refused.stdout + refused.stderr).split())
        assert refused.returncode == 1 and said in said_all, said_all
        assert "nothing was started" in said_all and "Traceback" not in said_all
    assert record_count(engine, "run_started") == 0  # no run, so nobody was paged


def test_a_drill_that_stops_early_cancels_its_run_saying_why(local_engine: Engine) -> None:
    started: list[str] = []
    drill = Drill(local_engine, "t-gameday", speed=600, hand_over={"assess": "nobody"}, on_start=started.append)
    with pytest.raises(DrillRefused, match="--hand-over assess=nobody: hand over to `nobody`"):  # the engine refuses
        drill.run(timeout=30)  # the hand-over only when the step comes: said as the drill's refusal, not a traceback
    [run_id] = started
    view = local_engine.view(run_id)
    assert not view.is_open and view.run["status"] == "cancelled"
    [cancelled] = records(local_engine, run_id, "run_cancelled")
    assert ("the drill stopped before its run ended (DrillRefused: --hand-over assess=nobody: hand over to `nobody`"
            in cancelled["data"]["reason"])


def test_a_hand_over_to_the_person_who_holds_the_step_is_no_hand_over(local_engine: Engine) -> None:
    """The review's finding: `--hand-over assess=<the on-call person>` passed the check (a member of the role) and the
    engine then refused it ("holds assess already") with a traceback, after paging. The holder answers it."""
    holder = local_engine.person_for("pr-oncall")
    result = Drill(local_engine, "t-gameday", speed=600, seed=1, hand_over={"assess": holder}).run(timeout=60)
    assert result.outcome == "done"
    assert record_count(local_engine, "step_handed_over") == 0
    [done] = [r for r in records(local_engine, result.run_id, "step_done") if r["step_id"] == "assess"]
    assert done["actor"] == holder


def test_a_drill_out_of_time_cancels_its_run(local_engine: Engine) -> None:
    result = Drill(local_engine, "t-gameday", speed=1, seed=1).run(timeout=0.5)  # 15 minutes to answer: never
    assert result.outcome.startswith("cancelled")
    [cancelled] = records(local_engine, result.run_id, "run_cancelled")
    assert cancelled["data"]["reason"] == "the drill gave up after 0.5s of wall time with its run still open"


def test_a_second_drill_of_the_same_subject_is_refused_naming_the_open_one(local_engine: Engine) -> None:
    first = local_engine.start("t-gameday", {}, initiator="li-wei", speed=600, launch=False,
                               trigger={"kind": "drill", "by": "li-wei"}).run_id
    with pytest.raises(DrillRefused) as refused:
        Drill(local_engine, "t-gameday", speed=100, seed=1).run(timeout=30)
    assert str(refused.value) == (f"a drill of t-gameday with the same dedup key is still open: run {first}; this one "
                                  f"would attach to it, so nothing was started. End it first: `sop cancel {first} "
                                  '--reason "drill over"`')
    assert local_engine.view(first).run["repeats"] == 0 and record_count(local_engine, "run_started") == 1
