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
