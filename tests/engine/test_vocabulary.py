"""One vocabulary for what the ledger says: every record written is a kind of the vocabulary, every
step moves only as the vocabulary allows, and the audit reads the same names."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flows.audit.builder import HANDLERS
from flows.engine.change import IllegalMove
from flows.engine.transitions import Engine
from flows.language.steps.human import HumanReport
from flows.ledger.schema import records
from flows.ledger.vocabulary import TERMINAL_STEP, TRANSITIONS, RecordKind, StepState
from tests.engine.test_new_run import clock, library, local  # noqa: F401, F811  (the same local engine)


def test_every_state_has_its_moves_and_terminal_states_have_none() -> None:
    assert set(TRANSITIONS) == set(StepState)
    # an ended step stays ended, except that a rework round (on_reject) may ask a done, rejected or
    # skipped step again: back to pending, never further
    reopenable = {StepState.DONE, StepState.REJECTED, StepState.SKIPPED}
    assert all(TRANSITIONS[state] == ({StepState.PENDING} if state in reopenable else frozenset())
               for state in TERMINAL_STEP)
    assert all(StepState.CANCELLED in moves for state, moves in TRANSITIONS.items() if state not in TERMINAL_STEP)


def test_the_audit_reads_only_kinds_of_the_vocabulary() -> None:
    assert {RecordKind(kind) for kind in HANDLERS} <= set(RecordKind)


def test_a_run_writes_only_kinds_of_the_vocabulary(local: Engine) -> None:  # noqa: F811
    run = local.start("t-newrun", {"service": "web"}, initiator="monitor", trigger={"n": 1})
    local.start("t-newrun", {"service": "web"}, initiator="monitor", trigger={"n": 2})
    local.cancel(run.run_id, "drill over", actor="li-wei")
    with local.ledger.read() as conn:
        kinds = set(conn.execute(sa.select(records.c.kind)).scalars())
    assert {"run_started", "trigger_repeated", "run_cancelled"} <= kinds
    assert all(RecordKind(kind) for kind in kinds)


def test_a_finished_step_cannot_move_again(local: Engine) -> None:  # noqa: F811
    run = local.start("t-newrun", {"service": "db"}, initiator="monitor")
    asked = "ask"
    assert local.view(run.run_id).state(asked) == StepState.ACTIVE
    local.report(run.run_id, asked, HumanReport(actor="zhao-lei"))
    with pytest.raises(IllegalMove, match="done may not become active"), local.transaction() as t:
        t.change(run.run_id).update_step(asked, state=StepState.ACTIVE)
    assert local.view(run.run_id).state(asked) == StepState.DONE  # nothing written
