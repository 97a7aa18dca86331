"""The HTTP API: ``create_app(engine)`` (see ``flows.api.app``).

Owns everything HTTP: the routes and their OpenAPI, tokens and roles, located 4xx
answers, the webhook pipeline and its fast path, the intake thread, and the queue that
creates flow runs off the request path.

May import ``flows.audit``, ``flows.prefect``, ``flows.triggers``, ``flows.engine`` and the
layers below them (``notifications``, ``flows.ledger``, ``flows.language``,
``flows.clock``); never ``flows.runtime`` or ``flows.cli``, which start this layer.

One module per area — ``runs`` (people), ``alerts``, ``events``, ``metrics`` (monitoring),
``audit`` (the audit desk) — plus ``auth`` (tokens, roles, HMAC), ``errors`` (located 4xx
answers), ``docs`` (OpenAPI of the bodies we parse ourselves), ``webhooks`` (the one
pipeline every monitoring webhook is answered by: authenticate → read body → verify
signature → parse → intake → answer), ``fastpath`` (that pipeline in front of FastAPI's
routing), ``intake_thread`` (one thread, group commit) and ``launches``.
"""

from flows.api.app import create_app

__all__ = ["create_app"]
