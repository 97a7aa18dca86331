"""Entry point of every SOP deployment: ``flows/prefect/entrypoint.py:<sop_id_with_underscores>``.

Prefect workers load a flow by attribute; this module builds it on demand from the SOP
library (``$SOP_HOME/sops``), so adding an SOP file needs no code.
"""

from __future__ import annotations

import threading
from typing import Any

_cache: dict[str, Any] = {}


def _warm_engine() -> None:
    """Build this flow-run process's engine (SQLAlchemy, ledger, pager) while Prefect sets the run up."""
    try:
        from flows.prefect.flow_run import flow_run_engine

        flow_run_engine()
    except Exception:  # the flow body builds it again and reports what is wrong
        pass


def forget_flows() -> None:
    """Build each flow again at its next use (``sop executor`` reloaded its library)."""
    _cache.clear()


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in _cache:
        from flows.prefect.deployments import build_flow
        from flows.prefect.flow_run import flow_run_library
        from flows.prefect.names import python_name

        # the same library the run's steps use, loaded once per process: the site and this
        # SOP when its file is sops/<id>.yaml (`crisis_pr` → crisis-pr.yaml), else every SOP
        library = flow_run_library(name.replace("_", "-"))
        by_name = {python_name(sop_id): loaded for sop_id, loaded in library.sops.items()}
        if name not in by_name:
            raise AttributeError(f"no SOP for flow `{name}` in {library.root / 'sops'}")
        first = not _cache
        _cache[name] = build_flow(by_name[name])
        if first:  # a flow-run process: build its engine while Prefect sets the run up
            threading.Thread(target=_warm_engine, name="warm-engine", daemon=True).start()
    return _cache[name]

