"""OpenAPI for bodies we parse ourselves.

Handlers read the raw body *after* authentication (see ``flows.api.auth``), so FastAPI does
not see the body models; :func:`body` documents one anyway, and :func:`with_body_schemas`
adds the models (and the models they nest) to the schema's components.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_MODELS: dict[str, type[BaseModel]] = {}
_REF = "#/components/schemas/{model}"


def body(model: type[BaseModel], roles: tuple[str, ...] = ()) -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body is ``model`` (and who may call it)."""
    _MODELS[model.__name__] = model
    extra: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
        }
    }
    if roles:
        extra["x-roles"] = list(roles)
    return extra


def roles(*names: str) -> dict[str, Any]:
    """``openapi_extra`` naming the roles a route admits."""
    return {"x-roles": list(names)}


def with_body_schemas(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """An ``app.openapi`` that includes the documented body models."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model in _MODELS.items():
            model_schema = model.model_json_schema(ref_template=_REF, by_alias=True)
            components.update(model_schema.pop("$defs", {}))
            components[name] = model_schema
        app.openapi_schema = schema
        return schema

    return openapi


def serve_offline(app: FastAPI) -> None:
    """``/docs``: Swagger UI from files on this machine (fastapi-offline's copy of swagger-ui-dist 5), no CDN."""
    from pathlib import Path

    import fastapi_offline
    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.responses import HTMLResponse
    from starlette.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")
