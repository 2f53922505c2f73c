"""The service's HTTP API: ``create_app`` builds the FastAPI application around one model.

Run it with ``uvicorn <package>.serving.app:create_app --factory`` (or ``python -m <package>
serve``). Without a bundle the champion is loaded at start-up; if that fails the fallback model
(``fallback.py``) answers and ``/ready`` says ``degraded``; with no fallback either the app
still starts, ``/health`` answers, and ``/ready``, ``/predict`` and ``/metadata`` answer 503
with the reason, so an orchestrator keeps the pod out of rotation instead of restarting it in
a loop.

Routes: ``POST /predict`` (one record), ``POST /predict/batch`` (``{"records": [...]}`` or
``{"columns": {feature: [...]}}``), ``POST /feedback`` (the observed outcome of a prediction),
``GET /health``, ``GET /ready``, ``GET /metadata``, ``GET /metrics`` (Prometheus), and the
documentation: ``/openapi.json``, ``/docs``, ``/redoc``. With ``serving.auth_enabled`` every
route needs the API key except those ``serving.public_paths`` lists (the probes by default):
the documentation shows every feature's categories and training range, as ``/metadata`` does.

The prediction routes read the raw body and validate it once with pydantic-core, and answer
with JSON bytes serialised once: FastAPI neither parses the request into models nor validates
the response again (``response_model`` still documents it). Their request schemas reach the
OpenAPI document through ``openapi_extra`` and the components added by
``routes.add_component_schemas``; the guards, error handlers and documentation routes are the
ones every kind's app shares (``routes.py``).
"""

import logging
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic_core import to_json

from ..bundle import Bundle
from ..config import Config, load_config
from ..monitoring.drift import OnlineDrift
from ..monitoring.metrics import ServiceMetrics
from .degradation import Degradation
from .errors import ApiError
from .fastpath import build_predictor
from .feedback import FeedbackLoop, FeedbackReceipt, FeedbackRequest
from .predictor import Predictor, Rows, Scores
from .rollout import build_rollout
from .routes import (
    Guards,
    ModelState,
    add_component_schemas,
    add_metrics_route,
    add_post_route,
    add_probe_routes,
    add_unavailable_routes,
    feedback_responses,
    hot_routes_first,
    json_body,
    service_app,
    validated,
)
from .schemas import (
    BatchResponse,
    ModelMetadata,
    PredictionResponse,
    Readiness,
    RequestBodies,
)

log = logging.getLogger(__name__)

# Rows buffered before they reach the online drift monitor (see DriftFeed).
DRIFT_CHUNK_ROWS = 256



@dataclass(frozen=True)
class Answer:
    """The predictions for one request and the model that made them."""

    scored: Scores
    out_of_range: list[list[str]]
    model_name: str
    model_version: str

    def predictions(self) -> list[dict[str, Any]]:
        """Each row as a :class:`~.schemas.Prediction`."""
        scored = self.scored
        return [
            {"prediction": prediction, "probabilities": chances, "out_of_range": flags}
            for prediction, chances, flags in zip(
                scored.predictions, scored.row_probabilities(), self.out_of_range, strict=True
            )
        ]

    def response(self, request_id: str, batch: bool) -> Response:
        """The answer as a :class:`~.schemas.BatchResponse`, or for one row a
        :class:`~.schemas.PredictionResponse`, serialised once by pydantic-core."""
        about = {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "request_id": request_id,
        }
        if batch:
            body = {"predictions": self.predictions(), **about}
        else:
            (prediction,) = self.predictions()
            body = {**prediction, **about}
        return Response(to_json(body), media_type="application/json")


class DriftFeed:
    """Request rows on their way to the online drift monitor, handed over a chunk at a time.

    ``OnlineDrift.observe_columns`` costs ~10 us of numpy set-up per call whatever the number
    of rows: single records wait here (in order) until :data:`DRIFT_CHUNK_ROWS` have arrived
    or a scrape asks for the scores (:meth:`flush`), so every row is still observed.
    """

    def __init__(self, drift: OnlineDrift, names: list[str]) -> None:
        self.drift = drift
        self.names = names
        self._pending: dict[str, list[Any]] = {name: [] for name in names}
        self._rows = 0
        self._lock = threading.Lock()

    def add(self, rows: Rows) -> None:
        with self._lock:
            for name in self.names:
                self._pending[name].extend(rows.column(name))
            self._rows += len(rows)
            if self._rows >= DRIFT_CHUNK_ROWS:
                self._hand_over()

    def flush(self) -> None:
        with self._lock:
            if self._rows:
                self._hand_over()

    def _hand_over(self) -> None:
        pending, rows = self._pending, self._rows
        self._pending = {name: [] for name in self.names}
        self._rows = 0
        self.drift.observe_columns(pending, rows=rows)


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
        self.fallback = Predictor(fallback) if fallback is not None else None
        self.degradation = Degradation(metrics)
        self.feedback = FeedbackLoop(bundle, config, metrics)
        self.metrics = metrics
        self.predictor = build_predictor(bundle)
        self.bodies = RequestBodies(
            bundle.features,
            config.serving.max_batch_size,
            bundle.metadata.get("example"),
            ignored=bundle.ignored_columns,
            target=bundle.metadata.get("target"),
        )
        self.feature_names = [feature["name"] for feature in bundle.features]
        drift = self._online_drift(bundle, config)
        self.drift_feed = DriftFeed(drift, self.feature_names) if drift is not None else None
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

    def rows(self, records: list[dict[str, Any]]) -> Rows:
        return Rows.of(records, self.feature_names)

    def score(
        self,
        rows: Rows,
        request_id: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Predictions for validated rows; rows no model can score are a 422.

        The champion answers, unless a split rollout routes the request to the challenger.
        """
        try:
            scored, answered_by = self.rollout.serve(
                rows, request_id, headers or {}, lambda: self._predict(rows)
            )
        except Exception as exc:
            log.exception("The model failed on %d record(s)", len(rows))
            raise ApiError(
                422,
                "prediction_failed",
                f"The model could not score the request ({type(exc).__name__}: {exc}). "
                "Check the values against GET /metadata.",
            ) from exc
        flags = self.predictor.out_of_range(rows)
        version = answered_by.model_version
        self.metrics.observe_predictions(version, scored.outcomes, scored.scores)
        self.metrics.observe_out_of_range([name for flagged in flags for name in flagged])
        if self.drift_feed is not None:
            self.drift_feed.add(rows)
        self.feedback.remember(request_id, version, scored, rows.columns)
        return Answer(scored, flags, answered_by.model_name, version)

    def _predict(self, rows: Rows) -> tuple[Scores, Bundle]:
        """The model's scores, or the fallback's when the model raises on ``rows``."""
        if self.fallback is None:
            scored = self.predictor.predict(rows)
            if self.degradation.active:
                # The champion never loaded: the model served here is the fallback.
                self.degradation.fallback_answered(len(rows))
            return scored, self.bundle
        try:
            scored = self.predictor.predict(rows)
        except Exception as exc:
            log.exception(
                "The champion failed on %d record(s); the fallback model answers", len(rows)
            )
            scored = self.fallback.predict(rows)
            self.degradation.fallback_answered(len(rows), f"{type(exc).__name__}: {exc}")
            return scored, self.fallback.bundle
        self.degradation.champion_answered()
        return scored, self.bundle

    def refresh_drift_gauges(self) -> None:
        feed = self.drift_feed
        if feed is None:
            return
        try:
            feed.flush()
            scores = feed.drift.scores()
        except Exception:
            # A scrape must still report the service's other metrics.
            log.exception("Drift scoring failed; the drift gauges keep their last values")
            return
        self.metrics.set_drift(scores, feed.drift.rows)

    @property
    def version(self) -> str:
        return self.bundle.model_version

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


class ServiceState(ModelState[ServedModel, ServiceMetrics]):
    """What the routes share: the model once loaded, or why there is none."""

    def load(self, bundle: Bundle, fallback: Bundle | None = None) -> ServedModel:
        return self.serve(ServedModel(bundle, self.config, self.metrics, fallback))


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
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.model is None:
            await _load_champion(app, state, guard_of("/predict"))
        yield
        if state.model is not None:
            # The shadow requests still queued are scored and the rollout log written.
            state.model.rollout.flush()

    app, guard_of = service_app(
        config,
        state,
        "Predictions from the champion model; the request schema is the model's features.",
        lifespan,
        lambda: state.model.feature_names if state.model else [],
        bundle.model_version if bundle is not None else "pending",
    )
    # Model routes are never public (serving.public_paths cannot list them).
    guard = guard_of("/predict")
    _add_service_routes(app, state, guard_of)
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
            state.no_model(why)
            add_unavailable_routes(app, ("/predict", "/predict/batch"), lambda _: guard)
            return
        log.exception("The champion could not be loaded; the %s fallback serves", fallback.source)
        model = state.load(fallback)
        model.degradation.champion_unavailable(why)
    app.version = model.version
    _add_prediction_routes(app, model, guard)


def _readiness(model: ServedModel) -> Readiness:
    degradation = model.degradation
    if degradation.active:
        # 200, not 503: a pod answering with its fallback model is better than none; the
        # ModelServingFallback alert tells a person instead.
        return Readiness(status="degraded", reason=degradation.reason, model_version=model.version)
    return Readiness(status="ready", model_version=model.version)


def _refresh_gauges(model: ServedModel) -> None:
    # Drift and live performance are scored here, at scrape time, not on every request.
    model.refresh_drift_gauges()
    model.feedback.refresh_gauges()


def _add_service_routes(app: FastAPI, state: ServiceState, guard_of: Guards) -> None:
    add_probe_routes(
        app,
        state,
        guard_of,
        ModelMetadata,
        ServedModel.metadata,
        "Ready to predict: a model is loaded (``degraded``: the fallback model answers).",
        "The served model: name, version, run, features and their training ranges, metrics.",
        _readiness,
    )

    @app.post(
        "/feedback",
        response_model=FeedbackReceipt,
        responses=feedback_responses(
            "No remembered prediction has this id.", "This prediction already has feedback."
        ),
        dependencies=guard_of("/feedback"),
        tags=["model"],
    )
    def feedback(body: FeedbackRequest) -> FeedbackReceipt:
        """The observed outcome of a prediction, joined to it by request id for live metrics."""
        # A thread-pool route: the join is SQLite I/O and, with several workers, may wait up to
        # 0.25 s for another worker's write; the event loop keeps serving meanwhile.
        model = state.require_model()
        receipt = model.feedback.receive(body)
        model.rollout.record_feedback(body.request_id, body.index, model.feedback.outcome(body))
        return receipt

    add_metrics_route(app, state, guard_of, _refresh_gauges)


def _add_prediction_routes(app: FastAPI, model: ServedModel, guard: list) -> None:
    bodies = model.bodies

    # Single records are fast and scored on the event loop; batches may take a while, so they
    # are validated and scored in the thread pool, where they cannot stall /health.
    async def predict(request: Request) -> Response:
        record = validated(bodies.record, await json_body(request))
        request_id = request.state.request_id
        answer = model.score(model.rows([record]), request_id, request.headers)
        return answer.response(request_id, batch=False)

    async def predict_batch(request: Request) -> Response:
        body = await json_body(request)
        return await run_in_threadpool(
            _score_batch, model, body, request.state.request_id, request.headers
        )

    add_post_route(
        app,
        "/predict",
        predict,
        PredictionResponse,
        guard,
        "Predict one record.",
        "Record",
        _training_row(bodies.examples.get("Record")),
    )
    add_post_route(
        app,
        "/predict/batch",
        predict_batch,
        BatchResponse,
        guard,
        "Predict a batch of records: `records` (a list of records) or `columns` (a list of "
        "values per feature, faster for large batches).",
        "BatchRequest",
        _training_row(bodies.examples.get("BatchRequest")),
    )
    add_component_schemas(app, bodies.json_schemas)
    hot_routes_first(app)


def _training_row(example: Any) -> dict[str, Any] | None:
    """A /docs example built from a row of the training data, if there is one."""
    if example is None:
        return None
    return {"training_row": {"summary": "A row of the training data", "value": example}}


def _score_batch(
    model: ServedModel, body: bytes, request_id: str, headers: Mapping[str, str]
) -> Response:
    screened = model.bodies.screen(body)
    if screened is not None:
        rows = Rows(*screened)
    else:
        batch = validated(model.bodies.batch, body)
        if "records" in batch:
            rows = model.rows(batch["records"])
        else:
            columns = batch["columns"]
            rows = Rows(columns, len(next(iter(columns.values()))))
    return model.score(rows, request_id, headers).response(request_id, batch=True)
