"""`sop drill --late STEP` on business time: an author drills her SOP to see its ladder climb, and a step due in 4h of
business hours asked at 16:00 is due the next morning. The late answer comes after that instant, not after 4h of wall
time (before its due: "met", and no level of the ladder fired)."""

from __future__ import annotations

from typing import Any

import pytest

from flows.engine.transitions import Engine
from flows.runtime.drill import Drill
from tests.engine.conftest import make_project

# ten working minutes a day: a 20m step is due on the second working day, a day or two of wall time after it began
TINY = """\
calendars:
  t-tiny:
    timezone: UTC
    hours: {mon: 00:00-00:10, tue: 00:00-00:10, wed: 00:00-00:10, thu: 00:00-00:10, fri: 00:00-00:10,
            sat: 00:00-00:10, sun: 00:00-00:10}
"""

REVIEW = """\
id: t-late-biz
title: Late review on business time
class: policy
owner: growth-lead
escalation:
  - at: 100%
    notify: [lead]
steps:
  - id: review
    title: Review the refund list
    assignee: ads-specialist
    due: 20m
    calendar: t-tiny
"""


@pytest.fixture
def business_engine(repo_root, tmp_path, monkeypatch) -> Any:
    """An engine without Prefect on the repo's config plus the calendar ``t-tiny``, and only the SOP ``t-late-biz``."""
    from flows import runtime

    root = make_project(repo_root, tmp_path / "site", only=())
    (root / "config" / "t-tiny.yaml").write_text(TINY)
    (root / "sops" / "t-late-biz.yaml").write_text(REVIEW)
    monkeypatch.setenv("SOP_DATABASE_URL", f"sqlite:///{root / 'var' / 'ledger.db'}")
    monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
    engine = runtime.engine(root, prefect=False)
    yield engine
    engine.pager.close()


def test_a_late_step_on_business_time_is_answered_after_its_due_and_its_ladder_climbs(business_engine: Engine) -> None:
    result = Drill(business_engine, "t-late-biz", speed=50000, seed=1, late={"review"}).run(timeout=60)
    assert result.outcome == "done"
    [row] = result.steps
    assert row["deadline"] == "missed", row  # the table says what --late asked for
    assert row["due"].total_seconds() > 20 * 60  # its due instant is a working day or more away, not 20m
    assert [(r["step"], r["notify"], r["paged"]) for r in result.ladder] == [("review", ["lead"], ["zhang-min"])]
