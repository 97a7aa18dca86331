"""Building the engine for a process: library, ledger, pager, launcher — one way for all.

The CLI, the API, ``sop serve``, flow runs and tests all call :func:`engine`, so every
process reads the same settings the same way (``config/`` plus environment overrides).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from flows.engine import Engine
from flows.ledger import Ledger
from flows.library import Library, load_library, project_root

_ledgers: dict[str, Ledger] = {}
_flow_run_engine: Engine | None = None
_flow_run_library: Library | None = None
_flow_run_lock = threading.Lock()


def database_url(library: Library) -> str:
    """``$SOP_DATABASE_URL``, else the settings; a relative SQLite path is under the project root."""
    url = os.environ.get("SOP_DATABASE_URL") or library.site.settings.database_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url[len("sqlite:///"):]
        url = f"sqlite:///{(Path(library.root) / relative).resolve()}"
    return url


def ledger_for(library: Library, *, migrate: bool = True) -> Ledger:
    """One Ledger per database URL per process, migrated to the newest schema unless ``migrate=False``."""
    url = database_url(library)
    if url not in _ledgers:
        ledger = Ledger(url)
        if migrate:
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


def engine(root: Path | None = None, *, prefect: bool = True, library: Library | None = None,
           background_pages: bool = False, migrate: bool = True, pager_process: bool = False) -> Engine:
    """An Engine for this process; ``prefect=False`` inside a flow run (no launching).

    ``background_pages``: render and send pages on a thread of their own (long-lived
    services: ``sop serve`` and the API), so a request returns once its transition is written.
    ``pager_process``: this process delivers the outbox (``sop pager``); it never leaves a page to another.
    """
    library = library or load_library(root or project_root())
    from flows.paging import Pager

    ledger = ledger_for(library, migrate=migrate)
    launcher = None
    if prefect:
        from flows.launcher import Launcher

        launcher = Launcher(ledger, prefect_api_url(library), pool_name(library))
    return Engine(library, ledger, pager=Pager(library.site, ledger, background=background_pages, drains=pager_process), launcher=launcher)


def flow_run_library(sop_id: str | None = None) -> Library:
    """The SOP library of this flow-run process, loaded once.

    A flow-run process lives for one run (or until it suspends), so the library cannot
    change under it; loading it once instead of per step saves about 0.2 s per step.
    ``sop_id`` (the flow being loaded) narrows it to the site and that SOP when its file
    is ``sops/<id>.yaml``: a flow-run process needs nothing else.
    """
    global _flow_run_library
    with _flow_run_lock:
        if _flow_run_library is None or (sop_id is not None and sop_id not in _flow_run_library.sops):
            _flow_run_library = load_library(only=sop_id)
        return _flow_run_library


def flow_run_engine() -> Engine:
    """The engine of this flow-run process (no launcher), built once on the cached library.

    Building it also starts importing the notification stack (Apprise) in a background
    thread, so the first page the run sends does not wait for that import; not when a pager
    process is alive (it delivers the run's pages) and the SOP has no notify step.
    ``flows.compiled`` starts building it on a thread while Prefect loads the flow.
    """
    global _flow_run_engine
    library = flow_run_library()
    with _flow_run_lock:
        if _flow_run_engine is None:
            # `sop serve` migrated the ledger before it launched this flow run: no Alembic here
            _flow_run_engine = engine(prefect=False, library=library, migrate=False)
            notifies = any(s.kind == "notify" for loaded in library.sops.values() for s in loaded.sop.steps)  # type: ignore[attr-defined]
            if notifies or not _pager_process_alive(_flow_run_engine):  # else it only queues its pages
                threading.Thread(target=_warm_notifications, name="warm-notifications", daemon=True).start()
        return _flow_run_engine


def _pager_process_alive(engine: Engine) -> bool:
    """A pager process delivers this stack's pages (see flows.outbox); False when unsure."""
    from flows.outbox import pager_alive

    try:
        with engine.ledger.read() as conn:
            return pager_alive(conn)
    except Exception:
        return False


def _warm_notifications() -> None:
    try:
        import notifications  # noqa: F401  (Apprise and its plugins: a few hundred ms)
    except Exception:  # the page that needs it will report the error
        pass
