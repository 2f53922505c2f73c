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
  the model routes unless public;
* :class:`ModelState` with :func:`load_at_start`, :func:`add_probe_routes`,
  :func:`add_metrics_route` and :func:`add_unavailable_routes`: the model once loaded or why
  there is none, the champion loaded at start-up (the app starts without one), ``/health``,
  ``/ready``, ``/metadata``, ``/metrics``, and the 503 answer of the model routes meanwhile.
"""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from fastapi import Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..config import Config, ServingConfig
from ..monitoring.metrics import CommonMetrics
from .errors import ApiError, ExitTrap, error_body, install_error_handlers, invalid_body
from .guards import BodyLimits, api_key_guard
from .observer import RequestObserver, route_label
from .schemas import COMPONENTS, ErrorResponse, Health, Readiness

log = logging.getLogger(__name__)

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



def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The entries of :data:`ERROR_RESPONSES` a route can answer with."""
    return {status: ERROR_RESPONSES[status] for status in statuses}


def feedback_responses(unknown: str, repeated: str) -> dict[int | str, dict[str, Any]]:
    """The answers of a ``POST /feedback``: the model routes', 404 (``unknown``: nothing was
    served that it could join) and 409 (``repeated``: it already has its feedback)."""
    return {
        **error_responses(400, 401, 413, 422, 503),
        404: {"model": ErrorResponse, "description": unknown},
        409: {"model": ErrorResponse, "description": repeated},
    }


#: ``guard_of(path)``: the dependencies of the route at ``path`` (the API key, or none).
Guards = Callable[[str], list]

# FastAPI's native OpenTelemetry (0.165 and later) looks up three global providers on every
# request (~3% of a text /predict's CPU in process) to find them unconfigured: the service
# exports its own Prometheus metrics and configures no OpenTelemetry, so it is off.
NO_OPENTELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {}
)


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


def service_app(
    config: Config,
    state: ModelState[Any, Any],
    description: str,
    lifespan: Callable[[FastAPI], Any],
    field_names: Callable[[], list[str]],
    version: str = "pending",
) -> tuple[FastAPI, Guards]:
    """A kind's FastAPI app around ``state`` (``app.state.service``), protected
    (:func:`protect`) and documented (:func:`add_documentation_routes`); with ``guard_of``."""
    app = FastAPI(
        title=config.project.name,
        version=version,
        description=f"{description} Errors have one shape (`ErrorResponse`).",
        lifespan=lifespan,
        # Served by add_documentation_routes, behind the key unless public.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        **NO_OPENTELEMETRY,
    )
    app.state.service = state
    guard_of = protect(app, config.serving, state.metrics, field_names)
    add_documentation_routes(app, guard_of)
    return app, guard_of


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


class Versioned(Protocol):
    """A served model: what ``/ready`` and the app's version name."""

    @property
    def version(self) -> str: ...


Model = TypeVar("Model", bound=Versioned)
Metrics = TypeVar("Metrics", bound=CommonMetrics)


class ModelState(Generic[Model, Metrics]):
    """What a kind's routes share: the model once loaded, or why there is none."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.model: Model | None = None
        self.unavailable = "The model is still loading."

    def serve(self, model: Model) -> Model:
        """``model`` answers from now on."""
        self.model = model
        self.unavailable = ""
        # The ~400,000 objects of the loaded libraries and model live as long as the process:
        # moved out of the collector's reach, full collections stop walking them all on the
        # request path (a 1,000-row tabular batch: p50 16 ms -> 6 ms).
        gc.freeze()
        return model

    def no_model(self, why: str) -> None:
        """No model could be loaded, because of ``why``: the model routes answer 503."""
        self.unavailable = (
            f"No model is loaded ({why}). Train and promote one (`make train`), then restart "
            "the service."
        )

    def require_model(self) -> Model:
        if self.model is None:
            raise ApiError(503, "model_unavailable", self.unavailable)
        return self.model


async def load_at_start(
    app: FastAPI, state: ModelState[Model, Any], load: Callable[[], Model], what: str
) -> Model | None:
    """``load()`` (in the thread pool) served by ``state``; on failure the reason is kept for
    the 503 answers and the app starts without a model rather than restarting in a loop."""
    try:
        model = await run_in_threadpool(load)
    except Exception as exc:
        log.exception("No %s could be loaded; serving 503 on the model routes", what)
        state.no_model(f"{type(exc).__name__}: {exc}")
        return None
    app.version = model.version
    return model


def add_probe_routes(
    app: FastAPI,
    state: ModelState[Model, Any],
    guard_of: Guards,
    metadata_model: type[BaseModel],
    describe: Callable[[Model], BaseModel],
    ready_doc: str,
    metadata_doc: str,
    readiness: Callable[[Model], Readiness] | None = None,
) -> None:
    """``/health``, ``/ready`` and ``/metadata`` (``describe(model)``, a ``metadata_model``).

    ``ready_doc`` and ``metadata_doc`` document the last two; ``readiness(model)`` is the
    answer of ``/ready`` once a model is loaded (by default: ready, with its version).
    """

    @app.get("/health", response_model=Health, dependencies=guard_of("/health"), tags=["service"])
    async def health() -> Health:
        """The process is up (it may still have no model: see /ready)."""
        return Health()

    @app.get(
        "/ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "No model loaded."}},
        dependencies=guard_of("/ready"),
        tags=["service"],
        description=ready_doc,
    )
    async def ready() -> Readiness | JSONResponse:
        if state.model is None:
            body = Readiness(status="not_ready", reason=state.unavailable)
            return JSONResponse(body.model_dump(), status_code=503)
        if readiness is not None:
            return readiness(state.model)
        return Readiness(status="ready", model_version=state.model.version)

    @app.get(
        "/metadata",
        response_model=metadata_model,
        responses=error_responses(401, 503),
        dependencies=guard_of("/metadata"),
        tags=["model"],
        description=metadata_doc,
    )
    async def metadata() -> Any:
        return describe(state.require_model())


def add_metrics_route(
    app: FastAPI, state: ModelState[Model, Any], guard_of: Guards, refresh: Callable[[Model], None]
) -> None:
    """``/metrics`` in Prometheus' format; ``refresh(model)`` first scores what is scored at
    scrape time, not on every request (drift, live performance)."""

    @app.get("/metrics", include_in_schema=False, dependencies=guard_of("/metrics"))
    def prometheus_metrics() -> Response:
        if state.model is not None:
            refresh(state.model)
        return Response(state.metrics.exposition(), media_type=state.metrics.content_type)


def add_unavailable_routes(app: FastAPI, paths: tuple[str, ...], guard_of: Guards) -> None:
    """The model routes at ``paths`` while no model is loaded: 503 with the reason."""

    async def unavailable(request: Request) -> JSONResponse:
        state: ModelState = request.app.state.service
        return JSONResponse(
            error_body("model_unavailable", state.unavailable, request.state.request_id),
            status_code=503,
        )

    for path in paths:
        add_post_route(app, path, unavailable, ErrorResponse, guard_of(path),
                       "No model is loaded: 503.")
