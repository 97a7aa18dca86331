"""Process wiring: what each of our processes is made of, and how it starts and stops.

Owns the engine of a CLI, API or ``sop serve`` process (:func:`engine`: the site's engine
with the Prefect launcher), the embedded stack (``serve``), the uvicorn factory of team
mode (``web``), drills (``drill``) and stopping on SIGTERM (``shutdown``). The top layer
below the CLI: it may import every layer of ``flows`` and ``notifications``; only
``flows.cli`` imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flows.engine.transitions import Engine
    from flows.language.library import Library


def engine(root: Path | None = None, *, prefect: bool = True, library: Library | None = None,
           background_pages: bool = False, migrate: bool = True, pager_process: bool = False) -> Engine:
    """The engine of this process, with a launcher for its flow runs unless ``prefect=False``.

    See :func:`flows.engine.build.build_engine` for ``background_pages``, ``migrate`` and ``pager_process``.
    """
    from flows.engine.build import build_engine, ledger_for, runnable_library

    library = library or runnable_library(root)
    launcher = None
    if prefect:
        from flows.prefect.launcher import Launcher
        from flows.prefect.names import pool_name, prefect_api_url, prefect_auth_string

        launcher = Launcher(ledger_for(library, migrate=migrate), prefect_api_url(library), pool_name(library),
                            auth_string=lambda: prefect_auth_string(library), root=library.root)
    built = build_engine(library, launcher=launcher, background_pages=background_pages, migrate=migrate,
                         pager_process=pager_process)
    if launcher is not None:
        launcher.engine = built  # a launch given up is recorded and paged by the engine
    return built
