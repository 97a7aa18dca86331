"""The pages as routes of the API's app: static files, sign-in, steps and runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

from flows.web import board, desk, library, oncall, pages, runs, signin, silences
from flows.web.app import Web
from flows.web.render import STATIC


def mount(app: FastAPI, engine: Any, env: Mapping[str, str] | None = None) -> Web:
    """Add the people's pages (and their static files) to ``app``."""
    web = Web(engine, env)
    app.state.web = web
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # browsers ask for /favicon.ico on every page they open: answer it, rather than a 404 logged each time
    app.add_api_route("/favicon.ico", lambda: FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                                                            headers={"Cache-Control": "max-age=86400"}),
                      methods=["GET"], include_in_schema=False)
    app.include_router(signin.router)
    app.include_router(pages.router)
    app.include_router(runs.router)
    app.include_router(board.router)
    app.include_router(library.router)
    app.include_router(desk.router)
    app.include_router(oncall.router)
    app.include_router(silences.router)
    return web
