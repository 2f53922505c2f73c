"""*Routes* every kind's HTTP app shares: its guards, its self-served POST routes, its docs.

A kind's app (``app.py`` for tabular models, ``kinds/recommendation/serving.py``, ...) is its
endpoints and their bodies; what is the same for every kind lives here, once:

* :func:`protect`: the middleware (request ids and HTTP metrics, body size and time limits,
  the SystemExit trap), the JSON error handlers, and the API key of ``serving.auth_enabled``
  as a route dependency for every path ``serving.public_paths`` does not list;
* :func:`add_post_route` with :class:`SelfServedRoute`: a POST route that reads its raw body
  (:func:`json_body`), validates it once with pydantic-core (:func:`validated`) and answers
  with bytes serialised once; its request schema reaches the OpenAPI document through
  ``openapi_extra``;
* :func:`add_documentation_routes`: ``/openapi.json``, ``/docs`` and ``/redoc``, guarded like
  the model routes unless public.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..config import ServingConfig
from ..monitoring.metrics import CommonMetrics
from .errors import ExitTrap, install_error_handlers, invalid_body
from .guards import BodyLimits, api_key_guard
from .observer import RequestObserver, route_label
from .schemas import COMPONENTS, ErrorResponse

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "The body could not be read (e.g. not UTF-8).",
        401: "Missing or wrong X-API-Key (only when serving.auth_enabled).",
        408: "The body did not arrive within serving.timeouts.body_read_s.",
        413: "Body larger than serving.max_body_bytes, or a batch over serving.max_batch_size.",
        422: "The body does not match the model's input schema; `fields` says where.",
        503: "No model is loaded; `message` says why.",
    }.items()
}

#: ``guard_of(path)``: the dependencies of the route at ``path`` (the API key, or none).
Guards = Callable[[str], list]


def protect(
    app: FastAPI,
    serving: ServingConfig,
    metrics: CommonMetrics,
    field_names: Callable[[], list[str]],
) -> Guards:
    """Install the shared middleware and error handlers on ``app``; return ``guard_of``.

    ``field_names()`` lists the fields a request may have, for the message about an unknown
    one. Call it before adding routes: the key is read once, here, so an empty key with auth
    enabled fails at start-up (see :func:`.guards.api_key_guard`).
    """
    guard = [Depends(api_key_guard(serving.api_key_env))] if serving.auth_enabled else []
    install_error_handlers(
        app,
        feature_names=field_names,
        on_validation_error=lambda request: metrics.validation_errors.labels(
            route_label(request.scope, app.router)
        ).inc(),
    )
    # The last added is the outermost: the observer sees every answer, the trap's included.
    app.add_middleware(ExitTrap)
    app.add_middleware(
        BodyLimits, max_bytes=serving.max_body_bytes, read_timeout=serving.timeouts.body_read_s
    )
    app.add_middleware(RequestObserver, metrics=metrics, router=app.router)

    def guard_of(path: str) -> list:
        return [] if path in serving.public_paths else guard

    return guard_of


def add_documentation_routes(app: FastAPI, guard_of: Guards) -> None:
    """The OpenAPI document and its two viewers, as FastAPI serves them, guarded like the
    model routes unless ``serving.public_paths`` lists them."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard_of("/openapi.json"))
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard_of("/docs"))
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI")

    @app.get("/redoc", include_in_schema=False, dependencies=guard_of("/redoc"))
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


async def json_body(request: Request) -> bytes:
    """The raw body; a declared media type other than JSON is a 422, as FastAPI would answer."""
    kind = request.headers.get("content-type")
    if kind is not None and not _is_json(kind):
        raise invalid_body(
            [{"type": "media_type", "loc": (), "msg": f"send JSON with Content-Type: "
              f"application/json, not {kind}"}]
        )
    return await request.body()


def _is_json(content_type: str) -> bool:
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def validated(adapter: TypeAdapter, body: bytes) -> Any:
    """``body`` parsed and validated by ``adapter``; a 422 naming each problem otherwise."""
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        raise invalid_body(exc.errors(include_url=False)) from None


class SelfServedRoute(APIRoute):
    """A route whose endpoint reads the ``Request`` and returns the ``Response`` itself.

    FastAPI documents it as usual (``response_model``, ``openapi_extra``). Without route
    dependencies the endpoint is called directly, skipping FastAPI's per-request dependency
    solving (~15 us of a ~150 us /predict); with them (the API key) FastAPI solves them first.
    """

    def get_route_handler(self) -> Callable[[Request], Any]:
        if self.dependencies:
            return super().get_route_handler()
        return self.endpoint


def add_post_route(
    app: FastAPI,
    path: str,
    endpoint: Callable[..., Any],
    response_model: type[BaseModel],
    guard: list,
    summary: str,
    body: str | None = None,
    examples: dict[str, Any] | None = None,
) -> None:
    """A :class:`SelfServedRoute` for ``POST path``.

    ``body``: the component schema of the request body the endpoint validates itself (the app
    adds it to the document's components); ``examples``: such bodies by name, each a dict with
    ``summary`` and ``value``, shown (and sent by "Try it out") in /docs.
    """
    extra = None
    if body is not None:
        content: dict[str, Any] = {"schema": {"$ref": f"{COMPONENTS}{body}"}}
        if examples:
            content["examples"] = examples
        extra = {"requestBody": {"required": True, "content": {"application/json": content}}}
    app.router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        response_model=response_model,
        responses=ERROR_RESPONSES,
        dependencies=guard,
        summary=summary,
        tags=["model"],
        openapi_extra=extra,
        route_class_override=SelfServedRoute,
    )


def hot_routes_first(app: FastAPI) -> None:
    """Move the self-served routes to the front: routing tries routes in order, and these
    answer most requests (~5 us saved each)."""
    hot = [route for route in app.router.routes if isinstance(route, SelfServedRoute)]
    app.router.routes[:] = hot + [r for r in app.router.routes if r not in hot]


def add_component_schemas(app: FastAPI, schemas: Callable[[], dict[str, Any]]) -> None:
    """Add ``schemas()`` (request bodies the routes validate themselves) to the OpenAPI
    document's components, when the document is first built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = app.openapi_schema
        if document is None:
            document = build()
            document.setdefault("components", {}).setdefault("schemas", {}).update(schemas())
        return document

    app.openapi = openapi  # type: ignore[method-assign]
