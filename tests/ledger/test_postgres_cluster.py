"""The test session's own PostgreSQL cluster (tests/postgres.py): private, on loopback, databases on demand."""

from __future__ import annotations

from flows.ledger import Ledger
from tests.postgres import PostgresCluster


def test_a_database_copied_from_a_migrated_template_is_a_ready_empty_ledger(postgres: PostgresCluster) -> None:
    template = Ledger(postgres.database("cluster_template"))
    template.migrate()
    with template.transaction() as tx:
        tx.append("note", actor="cli:ada", text="in the template")
    template.dispose()

    copy = Ledger(postgres.database("cluster_copy", template="cluster_template"))
    with copy.read() as conn:
        kinds = [row[0] for row in conn.exec_driver_sql("SELECT kind FROM records")]
    copy.dispose()
    assert kinds == ["note"]
    assert postgres.url("x").startswith("postgresql+psycopg://sop@127.0.0.1:")
    assert postgres.psql("cluster_copy", "SELECT count(*) FROM records").strip() == "1"
    postgres.drop("cluster_copy")
    postgres.drop("cluster_template")


def test_a_cluster_left_by_a_killed_session_is_stopped_by_the_next_and_a_living_ones_is_not(
        postgres: PostgresCluster) -> None:
    """``pg_ctl`` servers outlive the process that started them: a session killed outright (SIGKILL, an OOM) left
    its cluster running, and each such kill one more. The next cluster's start stops them."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import REPO_ROOT
    from tests.postgres import stop_orphans

    session = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom tests.postgres import PostgresCluster\n"
                               "print(PostgresCluster().start().folder, flush=True)\ntime.sleep(600)"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(session.stdout.readline().strip())  # type: ignore[union-attr]
    finally:
        session.send_signal(signal.SIGKILL)
        session.wait(30)
    server = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(server, 0)  # still running, its session dead

    assert folder in stop_orphans(postgres.bin_dir)
    assert not folder.exists()
    assert not _running(server)  # stopped, not left to notice its folder gone (it does, in its own time)
    assert postgres.folder is not None and postgres.folder.exists()  # this session's own, its owner alive
    assert postgres.psql("postgres", "SELECT 1").strip() == "1"


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended and not yet reaped, does not)."""
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
