"""A team's services started at once on a new ledger (systemd starts every unit together): each migrates it on
open (Alembic ``upgrade head``); one does, the others wait and find it done. A command opening a ledger that is
already at the newest version does not load Alembic at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

import flows.ledger
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


OPEN = ("import json, sys; from flows.ledger import Ledger; Ledger(sys.argv[1]).migrate(); "
        "print(json.dumps('alembic' in sys.modules))")


def test_a_ledger_at_the_newest_version_opens_without_alembic_and_an_older_one_is_upgraded(
        database: TestDatabase, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}" if database.is_sqlite else database.cluster.database("migrate_once")
    old = Ledger(url)
    with old.engine.begin() as conn:  # a ledger of the release before the newest
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(flows.ledger.__file__).parent / "migrations"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0014_wide_ids")
    old.dispose()

    def opened() -> tuple[bool, list[str]]:
        done = subprocess.run([sys.executable, "-c", OPEN, url], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-600:]
        ledger = Ledger(url)
        with ledger.read() as conn:
            versions = list(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
        ledger.dispose()
        return done.stdout.strip() == "true", versions

    assert opened() == (True, [flows.ledger.head_revision()])  # upgraded, by Alembic
    assert opened() == (False, [flows.ledger.head_revision()])  # found at the newest: Alembic not loaded


def test_the_newest_revision_is_read_as_alembics_template_writes_it(tmp_path: Path, monkeypatch) -> None:
    """Alembic's template (``script.py.mako``) writes ``revision = '0016_x'``: read either quote, and an
    unreadable file leaves the decision to Alembic instead of failing every command."""
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0015_attach_alone.py").write_text('revision = "0015_attach_alone"\n')
    monkeypatch.setattr(flows.ledger, "_MIGRATIONS", tmp_path)
    newest = versions / "0016_next_thing.py"
    for text, expected in (("revision = '0016_next_thing'\n", "0016_next_thing"),
                           ('revision: str = "0016_next_thing"\n', "0016_next_thing"),
                           ("REVISION = 16\n", "")):
        newest.write_text(f'"""x"""\n{text}down_revision = "0015_attach_alone"\n')
        flows.ledger.head_revision.cache_clear()
        assert flows.ledger.head_revision() == expected, text
    flows.ledger.head_revision.cache_clear()
