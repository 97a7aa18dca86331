"""The ledger's database stops under the timer service: one line says so, not a traceback every 50 ms."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from flows.engine.timers import TimerService
from flows.ledger.outage import MAX_WAIT_S, Outage
from tests.postgres import PostgresCluster

pytestmark = pytest.mark.postgresql_only("stops a PostgreSQL cluster of its own under the timer service")


def test_the_timer_service_says_once_that_the_database_is_away(repo_root: Any, tmp_path: Any, monkeypatch: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    from flows import runtime
    from tests.engine.conftest import make_project

    cluster = PostgresCluster().start()
    try:
        root = make_project(repo_root, tmp_path / "site", only=("t-ladder",))
        monkeypatch.setenv("SOP_DATABASE_URL", cluster.database("away"))
        monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
        engine = runtime.engine(root, prefect=False)
        engine.start("t-ladder", initiator="li-wei")
        service, stop = TimerService(engine), threading.Event()
        service.poll = 0.05
        caplog.set_level(logging.INFO, "sop")
        loop = threading.Thread(target=service.run, args=(stop,), daemon=True)
        loop.start()
        time.sleep(0.3)
        cluster.stop("immediate")
        time.sleep(3)  # 60 passes at the service's poll
        stop.set()
        loop.join(MAX_WAIT_S + 5)
        assert not loop.is_alive()
        errors = [r for r in caplog.records if "timers_loop_error" in r.getMessage()]
        assert len(errors) == 1, [r.getMessage() for r in errors]  # a traceback per pass was megabytes a minute
        assert errors[0].exc_info is None and "cause=unreachable" in errors[0].getMessage()
        engine.pager.close()
    finally:
        cluster.stop()


def test_an_outage_waits_longer_each_pass_and_says_when_it_is_over(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("sop.test")
    trouble = Outage(log, "thing_error", 0.1)
    away = sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    caplog.set_level(logging.INFO, "sop.test")
    waits = [trouble.failed(away) for _ in range(8)]
    assert waits == sorted(waits) and waits[0] == 0.2 and waits[-1] == MAX_WAIT_S  # backs off, up to a bound
    trouble.ok()
    trouble.ok()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[1].startswith("event=thing_recovered after_s=") and "passes=8" in lines[1]
    assert trouble.failed(ValueError("a bug of ours")) == 0.1  # not the database: its traceback, no backoff
    assert caplog.records[-1].exc_info is not None


def test_a_query_sqlite_refuses_is_a_bug_not_the_database_away() -> None:
    import sqlite3

    from flows.ledger.outage import database_away

    conn = sqlite3.connect(":memory:")
    for sql, away in (("SELECT nope FROM sqlite_master", False), ("SELEC 1", False)):
        try:
            conn.execute(sql)
        except sqlite3.Error as exc:
            wrapped = sa.exc.OperationalError(sql, {}, exc)
            assert database_away(wrapped) is away, sql  # a 503 "retry" and no traceback hid our bug
    locked = sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    assert database_away(locked)

