"""The HTTP API: ``create_app(engine)`` (see ``flows.api.app``).

One module per area — ``runs`` (people), ``alerts``, ``events``, ``metrics`` (monitoring) —
plus ``auth`` (tokens, roles, HMAC), ``errors`` (located 4xx answers) and ``docs``.
"""

from flows.api.app import create_app

__all__ = ["create_app"]
