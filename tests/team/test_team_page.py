"""docs/team.md followed verbatim (issue 19's "done when"): bench/team_recipe.py reads the page's commands and
runs them; here on the session's private PostgreSQL cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.team_recipe import documented_processes, follow, table, units_disagreeing
from tests.postgres import PostgresCluster


def test_each_systemd_unit_runs_the_command_the_page_gives_its_process() -> None:
    assert units_disagreeing(documented_processes()) == []


@pytest.mark.timeout(180)  # ~25 s on a quiet machine
def test_every_process_of_the_page_starts_runs_a_run_and_stops_cleanly_on_sigterm(team_cluster: PostgresCluster,
                                                                                  tmp_path: Path) -> None:
    """The page's databases, its Prefect server on PostgreSQL, `sop deploy`, an executor, timers, a nudger, a
    pager and an API, each started with the page's command and environment file: a run started through the API
    reaches the ledger on PostgreSQL and its first automated step runs; SIGTERM stops each cleanly."""
    processes, error = follow(team_cluster, tmp_path, say=lambda _: None)
    assert error is None, f"{error}\n{table(processes)}"
    assert {p.label.rsplit("-", 1)[0] for p in processes} == {"prefect", "deploy", "executor", "timers", "nudger",
                                                              "pager", "api"}, table(processes)
    assert all(p.stopped_cleanly for p in processes), table(processes)
