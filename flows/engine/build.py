"""Building an engine for a site: the library it runs, its ledger, its pager.

Every process (the CLI, the API, ``sop serve``, a flow run, tests) gets its engine through
:func:`build_engine` (``flows.runtime.engine`` adds the Prefect launcher), so each reads the
same settings the same way (``config/`` plus environment overrides).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.language.library import Library, load_library, project_root
from flows.language.loader import SpecInvalid

if TYPE_CHECKING:
    from flows.engine.transitions import Engine
    from flows.ledger import Ledger

_ledgers: dict[str, Ledger] = {}


def runnable_library(root: Path | None = None, env: dict[str, str] | None = None, *,
                     only: str | None = None, lenient: bool = False) -> Library:
    """The library a process runs: ``sops/`` and ``config/`` (see ``load_library``) and the site's
    message templates (``config/templates/``, checked by ``notifications``), all valid; SpecInvalid
    lists every error otherwise.

    The language does not know notifications (it sits below them): this is where the two meet.
    """
    root = root or project_root()
    template_errors = site_template_errors(root / "config")
    try:
        library = load_library(root, env, only=only, lenient=lenient)
    except SpecInvalid as exc:
        raise SpecInvalid([*exc.errors, *template_errors]) from None
    if template_errors:
        raise SpecInvalid(template_errors)
    return library


def site_template_errors(config_dir: Path) -> list[Any]:
    """Every problem in the site's message templates (``<config_dir>/templates``), at file:line;
    an empty list when the site overrides none."""
    if not (config_dir / "templates").is_dir():
        return []
    from notifications.overrides import validate_overrides  # Apprise is imported only for a site that overrides

    return validate_overrides(config_dir)


def database_url(library: Library) -> str:
    """``$SOP_DATABASE_URL``, else the settings; a relative SQLite path is under the project root."""
    url = os.environ.get("SOP_DATABASE_URL") or library.site.settings.database_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url[len("sqlite:///"):]
        url = f"sqlite:///{(Path(library.root) / relative).resolve()}"
    return url


def ledger_for(library: Library, *, migrate: bool = True) -> Ledger:
    """One Ledger per database URL per process, migrated to the newest schema unless ``migrate=False``."""
    from flows.ledger import Ledger

    url = database_url(library)
    if url not in _ledgers:
        ledger = Ledger(url)
        if migrate:
            ledger.migrate()
        _ledgers[url] = ledger
    return _ledgers[url]


def retire(engine: Engine, successor: Ledger | None) -> None:
    """An engine a reload replaced, once nothing runs on it: the pages it has in flight delivered (its delivery
    threads end), then its ledger's connections closed, unless ``successor`` (the ledger of the engine that replaced
    it) is the same one: :func:`ledger_for` keeps one per database URL per process."""
    engine.pager.close()
    if engine.ledger is not successor:
        engine.ledger.dispose()


def build_engine(library: Library, *, launcher: Any = None, background_pages: bool = False, migrate: bool = True,
                 pager_process: bool = False, ledger: Ledger | None = None) -> Engine:
    """An Engine over the site's ledger, with its pager; ``launcher`` creates the flow runs (None: no Prefect).

    ``background_pages``: render and send pages on a thread of their own (long-lived
    services: ``sop serve`` and the API), so a request returns once its transition is written.
    ``pager_process``: this process delivers the outbox (``sop pager``); it never leaves a page to another.
    """
    from flows.engine.paging import Pager
    from flows.engine.transitions import Engine

    ledger = ledger or ledger_for(library, migrate=migrate)
    pager = Pager(library.site, ledger, background=background_pages, drains=pager_process)
    engine = Engine(library, ledger, pager=pager, launcher=launcher)
    pager.links_from = lambda: engine.links  # when a page first needs a link: the secret is read only then
    if background_pages or pager_process:  # a service: an unusable secret stops it now, not its pages later
        _ = engine.links
        ledger.keep_checkpoints()  # and what it writes is in a checkpoint soon, even when nothing follows
    return engine
