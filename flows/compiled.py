"""Entry point of every SOP deployment: ``flows/compiled.py:<sop_id_with_underscores>``.

Prefect workers load a flow by attribute; this module builds it on demand from the SOP
library (``$SOP_HOME/sops``), so adding an SOP file needs no code.
"""

from __future__ import annotations

from typing import Any

_cache: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in _cache:
        from flows.compile import build_flow, python_name
        from flows.runtime import flow_run_library

        library = flow_run_library()  # the same library the run's steps use: loaded once per process
        by_name = {python_name(sop_id): loaded for sop_id, loaded in library.sops.items()}
        if name not in by_name:
            raise AttributeError(f"no SOP for flow `{name}` in {library.root / 'sops'}")
        _cache[name] = build_flow(by_name[name])
    return _cache[name]
