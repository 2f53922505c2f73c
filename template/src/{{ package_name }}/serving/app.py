"""The service's HTTP API: ``create_app`` builds the FastAPI application around one model.

Run it with ``uvicorn <package>.serving.app:create_app --factory`` (or ``python -m <package>
serve``). Without a bundle the champion is loaded at start-up; if that fails the fallback model
(``fallback.py``) answers and ``/ready`` says ``degraded``; with no fallback either the app
still starts, ``/health`` answers, and ``/ready``, ``/predict`` and ``/metadata`` answer 503
with the reason, so an orchestrator keeps the pod out of rotation instead of restarting it in
a loop.

Routes: ``POST /predict`` (one record), ``POST /predict/batch`` (``{"records": [...]}``),
``POST /feedback`` (the observed outcome of a prediction), ``GET /health``, ``GET /ready``,
``GET /metadata``, ``GET /metrics`` (Prometheus).
"""

# No `from __future__ import annotations` here: the prediction routes are closures annotated
# with request models built at runtime, which FastAPI must see as classes, not strings.

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..bundle import Bundle
from ..config import Config, load_config
from ..monitoring.drift import OnlineDrift
from ..monitoring.metrics import ServiceMetrics
from .degradation import Degradation
from .errors import ApiError, error_body, install_error_handlers
from .fastpath import build_predictor
from .feedback import FeedbackLoop, FeedbackReceipt, FeedbackRequest
from .guards import BodySizeLimit, api_key_guard
from .observer import RequestObserver, route_label
from .predictor import Predictor, Scored
from .rollout import build_rollout
from .schemas import (
    BatchResponse,
    ErrorResponse,
    Health,
    ModelMetadata,
    Prediction,
    PredictionResponse,
    Readiness,
    build_batch_model,
    build_record_model,
)

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "The body could not be read (e.g. not UTF-8).",
        401: "Missing or wrong X-API-Key (only when serving.auth_enabled).",
        413: "Body larger than serving.max_body_bytes, or a batch over serving.max_batch_size.",
        422: "The body does not match the model's input schema; `fields` says where.",
        503: "No model is loaded; `message` says why.",
    }.items()
}


@dataclass(frozen=True)
class Answer:
    """The predictions for one request and the model that made them."""

    predictions: list[Prediction]
    model_name: str
    model_version: str


class ServedModel:
    """The loaded model and everything derived from it: schemas, predictor, drift monitor.

    ``fallback`` (see ``fallback.py``) answers the records the model raises on.
    """

    def __init__(
        self,
        bundle: Bundle,
        config: Config,
        metrics: ServiceMetrics,
        fallback: Bundle | None = None,
    ) -> None:
        self.bundle = bundle
        self.fallback_bundle = fallback
        self.fallback = Predictor(fallback) if fallback is not None else None
        self.degradation = Degradation(metrics)
        self.feedback = FeedbackLoop(bundle, config, metrics)
        self.metrics = metrics
        self.predictor = build_predictor(bundle)
        self.record_model = build_record_model(bundle.features)
        self.batch_model = build_batch_model(self.record_model, config.serving.max_batch_size)
        self.feature_names = [feature["name"] for feature in bundle.features]
        self.drift = self._online_drift(bundle, config)
        self.rollout = build_rollout(config, bundle, metrics)
        metrics.set_model(
            bundle.model_name, bundle.model_version, bundle.source, self.predictor.serving_path
        )

    @staticmethod
    def _online_drift(bundle: Bundle, config: Config) -> OnlineDrift | None:
        drift = config.drift
        try:
            return OnlineDrift(
                bundle.reference,
                window=drift.window,
                min_rows=drift.min_rows,
                numeric_threshold=drift.numeric_threshold,
                categorical_threshold=drift.categorical_threshold,
                psi_threshold=drift.psi_threshold,
            )
        except (KeyError, TypeError, ValueError) as exc:
            # Serving matters more than monitoring: predict on, and say why the gauges are empty.
            log.warning("Online drift monitoring is off: %s", exc)
            return None

    def score(
        self,
        records: list[dict[str, Any]],
        request_id: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Predictions for validated records; a record no model can score is a 422.

        The champion answers, unless a split rollout routes the request to the challenger.
        """
        try:
            scored, answered_by = self.rollout.serve(
                records, request_id, headers or {}, lambda: self._predict(records)
            )
        except Exception as exc:
            log.exception("The model failed on %d record(s)", len(records))
            raise ApiError(
                422,
                "prediction_failed",
                f"The model could not score the request ({type(exc).__name__}: {exc}). "
                "Check the values against GET /metadata.",
            ) from exc
        flags = [self.predictor.out_of_range(record) for record in records]
        version = answered_by.model_version
        self.metrics.observe_predictions(
            version, [s.outcome for s in scored], [s.score for s in scored]
        )
        self.metrics.observe_out_of_range([name for flagged in flags for name in flagged])
        if self.drift is not None:
            self.drift.observe(records)
        self.feedback.remember(request_id, version, scored)
        predictions = [
            Prediction(prediction=s.prediction, probabilities=s.probabilities, out_of_range=f)
            for s, f in zip(scored, flags, strict=True)
        ]
        return Answer(predictions, answered_by.model_name, version)

    def _predict(self, records: list[dict[str, Any]]) -> tuple[list[Scored], Bundle]:
        """The model's scores, or the fallback's when the model raises on ``records``."""
        if self.fallback is None:
            scored = self.predictor.predict(records)
            if self.degradation.active:
                # The champion never loaded: the model served here is the fallback.
                self.degradation.fallback_answered(len(records))
            return scored, self.bundle
        try:
            scored = self.predictor.predict(records)
        except Exception as exc:
            log.exception(
                "The champion failed on %d record(s); the fallback model answers", len(records)
            )
            scored = self.fallback.predict(records)
            self.degradation.fallback_answered(len(records), f"{type(exc).__name__}: {exc}")
            return scored, self.fallback_bundle
        self.degradation.champion_answered()
        return scored, self.bundle

    def refresh_drift_gauges(self) -> None:
        if self.drift is None:
            return
        try:
            scores = self.drift.scores()
        except Exception:
            # A scrape must still report the service's other metrics.
            log.exception("Drift scoring failed; the drift gauges keep their last values")
            return
        self.metrics.set_drift(scores, self.drift.rows)

    def metadata(self) -> ModelMetadata:
        meta = self.bundle.metadata
        return ModelMetadata(
            model_name=self.bundle.model_name,
            model_version=self.bundle.model_version,
            run_id=meta.get("run_id"),
            source=self.bundle.source,
            serving_path=self.predictor.serving_path,
            task=self.bundle.task,
            target=meta.get("target"),
            classes=self.bundle.classes,
            features=self.bundle.features,
            metrics=meta.get("metrics") or {},
            primary_metric=meta.get("primary_metric"),
            trained_at=meta.get("trained_at"),
        )


class ServiceState:
    """What the routes share: the model once loaded, or why there is none."""

    def __init__(self, config: Config, metrics: ServiceMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.model: ServedModel | None = None
        self.unavailable = "The model is still loading."

    def load(self, bundle: Bundle, fallback: Bundle | None = None) -> ServedModel:
        self.model = ServedModel(bundle, self.config, self.metrics, fallback)
        self.unavailable = ""
        return self.model

    def require_model(self) -> ServedModel:
        if self.model is None:
            raise ApiError(503, "model_unavailable", self.unavailable)
        return self.model


def create_app(
    config: Config | None = None, bundle: Bundle | None = None, fallback: Bundle | None = None
) -> FastAPI:
    """The API for ``bundle``, or for the registry's champion loaded at start-up.

    ``fallback`` answers when ``bundle`` raises; without ``bundle`` both are loaded at start-up
    (``fallback.load_fallback``), and the fallback serves alone if the champion cannot load.
    """
    config = config or load_config()
    metrics = ServiceMetrics(regression=config.task == "regression")
    state = ServiceState(config, metrics)
    guard = (
        [Depends(api_key_guard(config.serving.api_key_env))]
        if config.serving.auth_enabled
        else []
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.model is None:
            await _load_champion(app, state, guard)
        yield

    app = FastAPI(
        title=config.project.name,
        version=bundle.model_version if bundle is not None else "pending",
        description="Predictions from the champion model; the request schema is the model's "
        "features. Errors have one shape (`ErrorResponse`).",
        lifespan=lifespan,
    )
    app.state.service = state
    install_error_handlers(
        app,
        feature_names=lambda: state.model.feature_names if state.model else [],
        on_validation_error=lambda request: metrics.validation_errors.labels(
            route_label(request.scope, app.router)
        ).inc(),
    )
    app.add_middleware(BodySizeLimit, max_bytes=config.serving.max_body_bytes)
    app.add_middleware(RequestObserver, metrics=metrics, router=app.router)
    _add_service_routes(app, state, guard)
    if bundle is not None:
        _add_prediction_routes(app, state.load(bundle, fallback), guard)
    return app


async def _load_champion(app: FastAPI, state: ServiceState, guard: list) -> None:
    # Imported here: the registry pulls in MLflow, which apps given a bundle never need.
    from ..fallback import load_fallback
    from ..registry import load_champion

    fallback = await run_in_threadpool(load_fallback, state.config)
    try:
        bundle = await run_in_threadpool(load_champion, state.config)
        model = state.load(bundle, fallback)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        if fallback is None:
            log.exception("No model could be loaded; serving 503 on /predict until restarted")
            state.unavailable = (
                f"No model is loaded ({why}). Train and promote one (`make train`), then "
                "restart the service."
            )
            _add_unavailable_routes(app, guard)
            return
        log.exception("The champion could not be loaded; the %s fallback serves", fallback.source)
        model = state.load(fallback)
        model.degradation.champion_unavailable(why)
    app.version = model.bundle.model_version
    _add_prediction_routes(app, model, guard)


def _add_service_routes(app: FastAPI, state: ServiceState, guard: list) -> None:
    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health:
        """The process is up (it may still have no model: see /ready)."""
        return Health()

    @app.get(
        "/ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "No model loaded."}},
        tags=["service"],
    )
    async def ready() -> Readiness | JSONResponse:
        """Ready to predict: a model is loaded (``degraded``: the fallback model answers)."""
        if state.model is None:
            body = Readiness(status="not_ready", reason=state.unavailable)
            return JSONResponse(body.model_dump(), status_code=503)
        version = state.model.bundle.model_version
        degradation = state.model.degradation
        if degradation.active:
            # 200, not 503: a pod answering with its fallback model is better than none; the
            # ModelServingFallback alert tells a person instead.
            return Readiness(status="degraded", reason=degradation.reason, model_version=version)
        return Readiness(status="ready", model_version=version)

    @app.get(
        "/metadata",
        response_model=ModelMetadata,
        responses={k: v for k, v in ERROR_RESPONSES.items() if k in (401, 503)},
        dependencies=guard,
        tags=["model"],
    )
    async def metadata() -> ModelMetadata:
        """The served model: name, version, run, features and their training ranges, metrics."""
        return state.require_model().metadata()

    @app.post(
        "/feedback",
        response_model=FeedbackReceipt,
        responses={
            **{k: v for k, v in ERROR_RESPONSES.items() if k in (400, 401, 413, 422, 503)},
            404: {"model": ErrorResponse, "description": "No remembered prediction has this id."},
            409: {"model": ErrorResponse, "description": "This prediction already has feedback."},
        },
        dependencies=guard,
        tags=["model"],
    )
    async def feedback(body: FeedbackRequest) -> FeedbackReceipt:
        """The observed outcome of a prediction, joined to it by request id for live metrics."""
        model = state.require_model()
        receipt = model.feedback.receive(body)
        model.rollout.record_feedback(
            body.request_id, body.index, body.value if body.label is None else body.label
        )
        return receipt

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        # Drift and live performance are scored here, at scrape time, not on every request.
        if state.model is not None:
            state.model.refresh_drift_gauges()
            state.model.feedback.refresh_gauges()
        return Response(state.metrics.exposition(), media_type=state.metrics.content_type)


def _add_prediction_routes(app: FastAPI, model: ServedModel, guard: list) -> None:
    record_model: type[BaseModel] = model.record_model
    batch_model: type[BaseModel] = model.batch_model

    # Single records are fast and scored on the event loop; batches may take a while, so they
    # run in the thread pool where they cannot stall /health.
    async def predict(record: record_model, request: Request) -> PredictionResponse:  # type: ignore[valid-type]
        answer = model.score(
            [record.model_dump(by_alias=True)], request.state.request_id, request.headers
        )
        (prediction,) = answer.predictions
        return PredictionResponse(
            **prediction.model_dump(),
            model_name=answer.model_name,
            model_version=answer.model_version,
            request_id=request.state.request_id,
        )

    def predict_batch(batch: batch_model, request: Request) -> BatchResponse:  # type: ignore[valid-type]
        records = [record.model_dump(by_alias=True) for record in batch.records]
        answer = model.score(records, request.state.request_id, request.headers)
        return BatchResponse(
            predictions=answer.predictions,
            model_name=answer.model_name,
            model_version=answer.model_version,
            request_id=request.state.request_id,
        )

    _add_route(app, "/predict", predict, PredictionResponse, guard, "Predict one record.")
    _add_route(
        app, "/predict/batch", predict_batch, BatchResponse, guard, "Predict a batch of records."
    )


def _add_unavailable_routes(app: FastAPI, guard: list) -> None:
    async def unavailable(request: Request) -> JSONResponse:
        state: ServiceState = request.app.state.service
        return JSONResponse(
            error_body("model_unavailable", state.unavailable, request.state.request_id),
            status_code=503,
        )

    for path in ("/predict", "/predict/batch"):
        _add_route(app, path, unavailable, ErrorResponse, guard, "No model is loaded: 503.")


def _add_route(
    app: FastAPI,
    path: str,
    endpoint: Callable[..., Any],
    response_model: type[BaseModel],
    guard: list,
    summary: str,
) -> None:
    app.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        response_model=response_model,
        responses=ERROR_RESPONSES,
        dependencies=guard,
        summary=summary,
        tags=["model"],
    )
