"""A team's services started at once on a new ledger (systemd starts every unit together): each migrates it on
open (Alembic ``upgrade head``); one does, the others wait and find it done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flows.ledger import Ledger
from tests.conftest import TestDatabase

MIGRATE = "import sys; from flows.ledger import Ledger; Ledger(sys.argv[1]).migrate()"


def test_four_processes_opening_a_new_ledger_at_once_all_start(database: TestDatabase, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}" if database.is_sqlite else database.cluster.database("migrate_at_once")
    processes = [subprocess.Popen([sys.executable, "-c", MIGRATE, url], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    ended = [(process.wait(timeout=120), process.stderr.read()) for process in processes]
    assert [code for code, _ in ended] == [0, 0, 0, 0], [said[-600:] for code, said in ended if code]
    ledger = Ledger(url)
    with ledger.read() as conn:
        versions = conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar_one()
    ledger.dispose()
    assert versions == 1
