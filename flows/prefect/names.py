"""What our objects are called on the Prefect server, and where that server is.

Flow name = SOP id, deployment = SOP id (``<sop>@<pool>`` in another pool), task name =
step id, and a flow run carries the tag ``sop-run:<run id>`` so that any process can tell
which run it belongs to.
"""

from __future__ import annotations

import os

from flows.language.library import Library

POOL = "sop-pool"
#: the module Prefect workers load a flow from (``flows.prefect.entrypoint.<sop_id_with_underscores>``)
ENTRYPOINT_MODULE = "flows.prefect.entrypoint"
#: the tag naming a flow run's SOP run
RUN_TAG = "sop-run:"


def deployment_name(sop_id: str, pool: str = POOL) -> str:
    """``crisis-pr`` in the default pool; ``crisis-pr@<pool>`` in another (several stacks, one server)."""
    return sop_id if pool == POOL else f"{sop_id}@{pool}"


def python_name(sop_id: str) -> str:
    """The attribute of the entry-point module that holds an SOP's flow (``crisis-pr`` → ``crisis_pr``)."""
    return sop_id.replace("-", "_")


def prefect_api_url(library: Library) -> str:
    """``$PREFECT_API_URL``, else ``settings.prefect.api_url``, else the embedded server's URL."""
    settings = library.site.settings.prefect
    return os.environ.get("PREFECT_API_URL") or settings.api_url or f"http://127.0.0.1:{settings.port}/api"


def pool_name(library: Library) -> str:
    """``$SOP_PREFECT_POOL``, else ``settings.prefect.pool``: several stacks can share one server."""
    return os.environ.get("SOP_PREFECT_POOL") or library.site.settings.prefect.pool
