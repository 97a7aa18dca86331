"""Building the engine for a process: library, ledger, pager, launcher — one way for all.

The CLI, the API, ``sop serve``, flow runs and tests all call :func:`engine`, so every
process reads the same settings the same way (``config/`` plus environment overrides).
"""

from __future__ import annotations

import os
from pathlib import Path

from flows.engine import Engine
from flows.ledger import Ledger
from flows.library import Library, load_library, project_root

_ledgers: dict[str, Ledger] = {}


def database_url(library: Library) -> str:
    """``$SOP_DATABASE_URL``, else the settings; a relative SQLite path is under the project root."""
    url = os.environ.get("SOP_DATABASE_URL") or library.site.settings.database_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url[len("sqlite:///"):]
        url = f"sqlite:///{(Path(library.root) / relative).resolve()}"
    return url


def ledger_for(library: Library) -> Ledger:
    """One migrated Ledger per database URL per process."""
    url = database_url(library)
    if url not in _ledgers:
        ledger = Ledger(url)
        ledger.migrate()
        _ledgers[url] = ledger
    return _ledgers[url]


def prefect_api_url(library: Library) -> str:
    """``$PREFECT_API_URL``, else ``settings.prefect.api_url``, else the embedded server's URL."""
    settings = library.site.settings.prefect
    return os.environ.get("PREFECT_API_URL") or settings.api_url or f"http://127.0.0.1:{settings.port}/api"


def pool_name(library: Library) -> str:
    """``$SOP_PREFECT_POOL``, else ``settings.prefect.pool``: several stacks can share one server."""
    return os.environ.get("SOP_PREFECT_POOL") or library.site.settings.prefect.pool


def engine(root: Path | None = None, *, prefect: bool = True, library: Library | None = None) -> Engine:
    """An Engine for this process; ``prefect=False`` inside a flow run (no launching)."""
    library = library or load_library(root or project_root())
    from flows.paging import Pager

    ledger = ledger_for(library)
    launcher = None
    if prefect:
        from flows.launcher import Launcher

        launcher = Launcher(ledger, prefect_api_url(library), pool_name(library))
    return Engine(library, ledger, pager=Pager(library.site, ledger), launcher=launcher)
