"""The embedded Prefect server's SQLite writers take turns, and its refusals say when to try again.

Each check runs in a child Python (the changes are to Prefect's server code, which this test
process must not carry into other tests), against a real SQLite file and Prefect's own classes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import asyncio, json, os, sqlite3, sys
    import sqlalchemy as sa
    from flows.prefect import server

    missed = server.tune() if sys.argv[1] == "tuned" else None
    from prefect.server.database import provide_database_interface

    async def writer_holds_the_lock_from_its_begin():
        db = provide_database_interface()
        async with db.session_context(begin_transaction=True) as session:
            await session.execute(sa.text("SELECT 1"))  # no table read: a DEFERRED begin holds nothing yet
            other = sqlite3.connect(os.environ["DB"], timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.rollback()
                return False
            except sqlite3.OperationalError:
                return True
            finally:
                other.close()

    async def refusal_headers():
        from prefect.server.api import server as api
        busy = sqlite3.OperationalError("database is locked")
        busy.sqlite_errorname = "SQLITE_BUSY"
        exc = sa.exc.OperationalError("INSERT INTO flow_run_state ...", {}, busy)
        response = await api.custom_internal_exception_handler(None, exc)
        return response.status_code, response.headers.get("retry-after")

    held = asyncio.run(writer_holds_the_lock_from_its_begin())
    status, retry_after = asyncio.run(refusal_headers())
    print(json.dumps({"missed": missed, "held": held, "status": status, "retry_after": retry_after}))
""")


def _child(tmp_path: Path, mode: str) -> dict:
    db = tmp_path / "prefect.db"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "home"), "DB": str(db),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_write_transaction_of_the_embedded_server_holds_sqlites_write_lock_from_its_begin(tmp_path):
    """A transaction that read first no longer finds at its write that another writer went in between (Prefect
    answered those 503, "database is locked"): it waits for the lock before it reads."""
    tuned = _child(tmp_path, "tuned")
    assert tuned["missed"] == [], f"Prefect's names moved: {tuned['missed']}"
    assert tuned["held"] is True, "a write transaction began without SQLite's write lock"


def test_a_busy_databases_refusal_tells_prefects_client_to_try_again_in_a_fifth_of_a_second(tmp_path):
    """Prefect's client otherwise waits 2, 4, 8, 16, 32 s between tries, a flow run idle the while."""
    tuned = _child(tmp_path, "tuned")
    assert (tuned["status"], tuned["retry_after"]) == (503, "0.2")


def test_prefect_as_shipped_begins_its_writes_deferred(tmp_path):
    """The twin that shows what the tuning changes (and fails if a Prefect upgrade made it needless)."""
    shipped = _child(tmp_path, "shipped")
    assert shipped["held"] is False
    assert (shipped["status"], shipped["retry_after"]) == (503, None)
