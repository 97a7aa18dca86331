"""Team mode runs on PostgreSQL: these tests need the session's private cluster (tests/postgres.py)."""

from __future__ import annotations

import pytest

from tests.conftest import selected_databases
from tests.postgres import PostgresCluster


@pytest.fixture
def team_cluster(request: pytest.FixtureRequest) -> PostgresCluster:
    """The session's PostgreSQL cluster; the test is skipped, saying why, when this session runs SQLite only."""
    if "postgresql" not in selected_databases():
        pytest.skip("team mode needs PostgreSQL: SOP_TEST_DATABASE selects SQLite only (install Debian's "
                    "'postgresql', as root 'make test' does)")
    return request.getfixturevalue("postgres")
