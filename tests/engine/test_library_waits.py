"""The library's other SOPs with the same two gaps as complaint-review had (tests/engine/test_complaint_review.py).

inventory-warning: the new arrival date of a replenishment is the supplier's to give; the inventory manager may
hold the step for `supplier_reply`, and a supplier who does not answer within an hour ends the hold and pages the
lead. traffic-drop: a 24 h playbook, 8 h of it letting the plan work, asks its growth lead every 4 hours about the
traffic, not every 2 hours with no question (the outage class's default). No Prefect: a real SQLite ledger, the
real engine and pager, the local inbox, time on a manual clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.clock import ManualClock
from flows.engine.timers import TimerService
from flows.language.steps.human import HumanReport
from tests.engine.conftest import clocked_engine_of, records
from tests.engine.test_complaint_review import told

T0 = datetime(2026, 3, 9, 1, tzinfo=UTC)  # 09:00 in Shanghai


@pytest.fixture
def engine(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    library = {stem: (repo_root / "sops" / f"{stem}.yaml").read_text() for stem in ("inventory-warning", "traffic-drop")}
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'ledger.db'}",
                                 ManualClock(T0), library)


def test_the_inventory_manager_holds_the_replenishment_for_the_suppliers_date_and_an_hour_unanswered_escalates(
        engine: Any) -> None:
    run = engine.start("inventory-warning", {"sku": "LUMI-01", "level": 2}, initiator="monitor").run_id
    engine.report(run, "assess", HumanReport(actor="he-xin", evidence=["https://board.example/LUMI-01"], values={
        "level": 2, "sellable_units": 120, "open_orders": 80, "presale_orders": 300, "incoming_units": 200,
        "incoming_eta": "2026-03-20", "oversold_units": 0}))
    view = engine.view(run)
    assert engine.may_hold(view, view.sop.step("replenish"), "he-xin")  # his step page offers "Put on hold"
    max_at = engine.hold(run, "replenish", "he-xin", "supplier_reply", "asked Guangzhou Packaging to expedite PO 4411")
    assert max_at == engine.clock.now() + timedelta(hours=1)
    TimerService(engine).advance_to(engine.clock.now() + timedelta(hours=1))
    [expired] = records(engine, run, "step_released")
    assert expired["data"]["ended"] == "expired"
    [(title, _)] = told(engine, "li-wei", "On hold too long")  # inventory-manager's lead: ops-director's primary
    assert "Replenish" in title and "waited for supplier_reply past its 1h" in title
    assert told(engine, "he-xin", "Running again")  # and his step's clock runs again


def test_a_traffic_drop_asks_its_growth_lead_every_4h_about_the_traffic(engine: Any) -> None:
    engine.start("traffic-drop", {"site": "storefront"}, initiator="monitor")
    service = TimerService(engine)
    service.advance_to(T0 + timedelta(hours=3, minutes=59))
    assert told(engine, "zhang-min", "Status update due") == []  # not at 2h
    service.advance_to(T0 + timedelta(hours=4))
    [(title, body)] = told(engine, "zhang-min", "Status update due")
    assert title.startswith("[P2] Status update due")
    assert "UV against the baseline now, the cause named so far" in body
