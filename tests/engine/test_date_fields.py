"""A form's date (``type: date``): a day written YYYY-MM-DD, what a phone's date picker posts. Anything else a person
types is refused with what to write, and nothing is recorded; the value is kept as that text, which `when` compares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.language.library import load_library
from tests.engine.conftest import local_engine_of

DATED = """\
id: t-dated
title: Dated plan probe
class: routine
owner: cs-lead
steps:
  - id: plan
    assignee: cs-lead
    due: 1d
    form:
      check_date: {type: date, description: "Date of the 30-day check"}
  - id: soon
    needs: [plan]
    when: "{{ steps.plan.check_date < '2027-01-01' }}"
    assignee: cs-lead
    due: 1d
"""


@pytest.fixture
def engine(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from local_engine_of(repo_root, tmp_path / "site", monkeypatch, {"t-dated": DATED})


@pytest.mark.parametrize("typed", ["31/12/2026", "2026-02-30", "20261231", "next friday"])
def test_a_date_not_written_yyyy_mm_dd_is_refused_with_what_to_write_and_nothing_recorded(engine: Any, sop,
                                                                                         typed: str) -> None:
    run_id = engine.start("t-dated", {}, initiator="li-wei", launch=False).run_id
    refused = sop("done", run_id, "plan", "--as", "sara-lopez", "-f", f"check_date={typed}",
                  env={"SOP_HOME": str(engine.library.root)})
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert "expected a date written YYYY-MM-DD (2026-12-31)" in refused.stderr, refused.stderr
    assert engine.view(run_id).state("plan") == "active"


def test_a_date_is_kept_as_written_and_compared_by_when(engine: Any, sop) -> None:
    run_id = engine.start("t-dated", {}, initiator="li-wei", launch=False).run_id
    done = sop("done", run_id, "plan", "--as", "sara-lopez", "-f", "check_date= 2026-12-31 ",
               env={"SOP_HOME": str(engine.library.root)})
    assert done.returncode == 0, done.stderr
    view = engine.view(run_id)
    assert view.result("plan")["check_date"] == "2026-12-31"
    assert view.state("soon") == "active"  # its `when` compared the day as text: before 2027-01-01


def test_an_sop_whose_date_default_is_no_day_is_refused_where_it_says_so(tmp_path: Path, repo_root: Path) -> None:
    from tests.engine.conftest import make_project

    root = make_project(repo_root, tmp_path / "site", only=())
    (root / "sops" / "t-dated.yaml").write_text(DATED.replace(
        '{type: date, description: "Date of the 30-day check"}', '{type: date, default: "2026-02-30"}'))
    with pytest.raises(Exception) as refused:
        load_library(root)
    said = str(refused.value)
    assert "t-dated.yaml:10:41: steps[0].form.check_date.default (step `plan`): default '2026-02-30' is not a date written " \
           "YYYY-MM-DD (2026-12-31)" in said, said
