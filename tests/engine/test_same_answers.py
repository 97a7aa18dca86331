"""What PostgreSQL refuses and SQLite takes (a NUL character, a string longer than its column, an integer past
32 bits) is refused by the engine with the same clear error on both, or stored on both: the engine is the door
the CLI, the pages and the API all go through. Without Prefect (``local_engine``), once per database.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from flows.engine.timers import TimerService
from flows.engine.transitions import InputRefused
from flows.language.steps.human import HumanReport, ReportRefused
from flows.ledger.schema import records as records_table
from flows.ledger.schema import runs, timers
from tests.engine.conftest import records
from tests.engine.test_timers_unit import local_engine  # noqa: F401  (an engine on a project copy, no Prefect)

MONTH = timedelta(days=30)  # 2,592,000,000 ms: past PostgreSQL's integer (2,147,483,647)


def chain(engine: Any) -> list[tuple[str | None, str]]:
    """The ledger's records but the pages' (which the pager writes after each commit, in its own time)."""
    with engine.ledger.read() as conn:
        return [tuple(r) for r in conn.execute(sa.select(records_table.c.run_id, records_table.c.kind)
                                               .where(records_table.c.kind != "notification"))]


def test_a_timer_that_comes_due_a_month_late_still_fires(local_engine: Any) -> None:  # noqa: F811
    """A timer service down for a month (a restored backup, a forgotten unit): each timer fires once, late."""
    engine = local_engine
    run_id = engine.start("t-ladder", initiator="li-wei", speed=1).run_id
    with engine.ledger.transaction() as tx:
        tx.conn.execute(timers.update().where(timers.c.run_id == run_id).values(
            due_at=engine.clock.now() - MONTH))
    with engine.ledger.read() as conn:
        armed = set(conn.execute(sa.select(timers.c.id).where(timers.c.run_id == run_id)).scalars())
    fired = TimerService(engine).fire_due()
    assert {f.kind for f in fired} == {"due", "ladder", "run_deadline", "cadence"}
    assert armed <= {f.timer_id for f in fired}  # none left behind (to be retried, and fail, at every tick)
    [late] = records(engine, run_id, "run_overdue")
    assert late["data"]["late_ms"] >= MONTH.total_seconds() * 1000 and late["data"]["late"] is True  # exact


def test_a_long_cancel_reason_is_kept_whole(local_engine: Any) -> None:  # noqa: F811
    """The API takes 2,000 characters of reason (the CLI and the page as many): the run's outcome shows
    its start, the ledger keeps all of it, and the people asked are told all of it."""
    engine = local_engine
    run_id = engine.start("t-ladder", initiator="li-wei").run_id
    reason = "the supplier called back: " + "details " * 250
    view = engine.cancel(run_id, reason, "li-wei")
    assert view.run["status"] == "cancelled"
    with engine.ledger.read() as conn:
        outcome = conn.execute(sa.select(runs.c.outcome).where(runs.c.id == run_id)).scalar_one()
    assert outcome.startswith("cancelled: the supplier called back") and len(outcome) <= runs.c.outcome.type.length
    assert records(engine, run_id, "run_cancelled")[0]["data"]["reason"] == reason


def test_a_nul_in_an_input_is_refused_and_starts_nothing(local_engine: Any) -> None:  # noqa: F811
    before = chain(local_engine)
    with pytest.raises(InputRefused, match="input `brand`: holds a NUL character"):
        local_engine.start("crisis-pr", {"brand": "lu\x00mi"}, initiator="li-wei")
    assert chain(local_engine) == before


ASSESS = {"severity": "high", "topic": "late parcels", "category": "delivery", "platforms": "weibo",
          "trend": "rising", "kol_involved": False}


@pytest.mark.parametrize(("values", "note", "evidence", "says"), [
    ({**ASSESS, "topic": "late\x00parcels"}, "", ["https://x.example/e"], "field `topic`: holds a NUL character"),
    (ASSESS, "checked\x00", ["https://x.example/e"], "the note holds a NUL character"),
    (ASSESS, "", ["https://x.example/\x00"], "evidence holds a NUL character"),
])
def test_a_nul_in_a_report_is_refused_and_changes_nothing(local_engine: Any, values: dict[str, Any],  # noqa: F811
                                                          note: str, evidence: list[str], says: str) -> None:
    run_id = local_engine.start("crisis-pr", {"brand": "nul-report"}, initiator="li-wei").run_id
    before = chain(local_engine)
    with pytest.raises(ReportRefused, match=says):
        local_engine.report(run_id, "assess", HumanReport("wang-fang", values=values, note=note, evidence=evidence))
    assert chain(local_engine) == before and local_engine.view(run_id).state("assess") == "active"


def test_a_nul_in_a_cancel_reason_is_refused_in_an_update_kept(local_engine: Any) -> None:  # noqa: F811
    """A cancel's reason is a column of the run (refused on both); an update is only JSON in its record (kept on both)."""
    engine = local_engine
    run_id = engine.start("t-ladder", initiator="li-wei").run_id
    before = chain(engine)
    with pytest.raises(InputRefused, match="the reason holds a NUL character"):
        engine.cancel(run_id, "drill\x00over", "li-wei")
    assert chain(engine) == before and engine.view(run_id).is_open
    engine.post_update(run_id, "li-wei", "on it\x00")
    assert records(engine, run_id, "status_update")[0]["data"]["text"] == "on it\x00"


# --- the CLI: a shell cannot pass NUL in an argument (execve ends it there), a caller in Python can --------


@pytest.fixture
def cli(local_engine: Any, monkeypatch: pytest.MonkeyPatch) -> Any:  # noqa: F811
    """``sop`` in this process (typer's runner), on the local engine's project and database, without Prefect."""
    from typer.testing import CliRunner

    from flows import runtime
    from flows.cli import app
    from flows.cli import runs as cli_runs

    root = local_engine.library.root
    monkeypatch.setenv("SOP_HOME", str(root))
    monkeypatch.setattr(cli_runs, "_engine", lambda prefect=True, lenient=True: runtime.engine(root, prefect=False))
    runner = CliRunner()

    def run(*args: str) -> Any:
        done = runner.invoke(app, list(args))
        assert done.exception is None or isinstance(done.exception, SystemExit), done.output  # no traceback
        return done

    return run


def test_the_cli_refuses_a_nul_and_takes_a_long_reason(cli: Any, local_engine: Any) -> None:  # noqa: F811
    engine = local_engine
    refused = cli("run", "crisis-pr", "-p", "brand=lu\x00mi", "--as", "li-wei")
    assert refused.exit_code == 1 and "input `brand`: holds a NUL character" in " ".join(refused.output.split())
    run_id = engine.start("t-ladder", initiator="li-wei").run_id
    before = chain(engine)
    note = cli("done", run_id, "respond", "--actor", "zhao-lei", "-f", "answer=ok", "--note", "fixed\x00")
    assert note.exit_code == 1 and "the note holds a NUL character" in " ".join(note.output.split())
    assert chain(engine) == before
    link = "https://wiki.example/" + "a" * 4_000  # evidence is bounded like free text
    answer = cli("done", run_id, "respond", "--actor", "zhao-lei", "-f", "answer=ok", "--evidence", link)
    assert answer.exit_code == 1 and "evidence is at most 4,000 characters (4,021 given)" in answer.output
    assert chain(engine) == before
    over = cli("cancel", run_id, "--reason", "x" * 4_001, "--as", "li-wei")  # past free text's one bound: said
    assert over.exit_code == 1 and "the reason is at most 4,000 characters (4,001 given)" in over.output
    reason = "the supplier called back: " + "details " * 496  # 3,994 characters: kept whole on both databases
    cancelled = cli("cancel", run_id, "--reason", reason, "--as", "li-wei")
    assert cancelled.exit_code == 0, cancelled.output
    assert records(engine, run_id, "run_cancelled")[0]["data"]["reason"] == reason
