"""What our objects are called on the Prefect server, where that server is and how we sign in to it.

Flow name = SOP id, deployment = SOP id (``<sop>@<pool>`` in another pool), task name =
step id, and a flow run carries the tag ``sop-run:<run id>`` so that any process can tell
which run it belongs to.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from flows.language.library import Library

POOL = "sop-pool"
#: the module Prefect workers load a flow from (``flows.prefect.entrypoint.<sop_id_with_underscores>``)
ENTRYPOINT_MODULE = "flows.prefect.entrypoint"
#: the tag naming a flow run's SOP run
RUN_TAG = "sop-run:"
#: the embedded Prefect server's auth string (``sop serve`` makes it once, 0600), under the site's root
AUTH_FILE = Path("var") / "prefect-auth"
#: what Prefect clients read it from (the server reads ``PREFECT_SERVER_API_AUTH_STRING``)
AUTH_ENV = "PREFECT_API_AUTH_STRING"


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


def prefect_auth_string(library: Library, api_url: str | None = None) -> str | None:
    """What our Prefect clients sign in with: ``$PREFECT_API_AUTH_STRING`` (a team's server, or a
    process ``sop serve`` started), else, for a server on this machine (``127.0.0.1``/``localhost``:
    ``sop serve``'s, on any port), the site's ``var/prefect-auth``, else None.

    The file is read, never made here (``sop serve`` makes it); one anyone but its owner may read
    is refused (:class:`flows.engine.secrets.SecretUnsafe`). A team's server never gets it.
    """
    given = os.environ.get(AUTH_ENV, "").strip()
    if given:
        return given
    host = urlsplit(api_url or prefect_api_url(library)).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    from flows.engine.secrets import private_file

    try:
        return private_file(library.root / AUTH_FILE, make=False).decode()
    except FileNotFoundError:
        return None
