"""The forecasting kind's HTTP API: ``create_app`` builds the FastAPI app around one
:class:`~.forecaster.Forecaster`.

Routes: ``POST /forecast`` (``{series_id, horizon, history?, future_covariates?}``: point
forecasts with conformal intervals; without a history, from the series' history at training,
whose forecast is computed once at load), ``POST /feedback`` (``{series_id, time, value}``: a
realised value, for live error, residual drift and seasonality monitoring, see
``monitoring.py``), ``GET /health``, ``/ready``, ``/metadata``, ``/monitoring``, ``/metrics``
and the documentation. The guards, the error shape and the shared metrics are the runtime's
(``serving/routes.py``). Bad input is a 422 naming the field: an unknown series without a
history, a horizon out of range, a history off the frequency's grid or too short, missing future
values of a known-future covariate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictFloat,
    StrictInt,
    TypeAdapter,
)
from pydantic_core import PydanticCustomError, to_json

from ...config import Config, load_config
from ...errors import FeedbackError, RequestError
from ...fallback import CHAMPION_DIR, fallback_dir
from ...serving.errors import ApiError, invalid_body
from ...serving.routes import (
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
    load_at_start,
    service_app,
    validated,
)
from ...serving.schemas import COMPONENTS
from .data import Series, series_key
from .fastpath import compile_scorer, compile_tables
from .forecaster import Forecast, Forecaster, load_forecaster
from .monitoring import DRIFT_SIGNALS, LIVE_METRICS, ForecastMetrics, ForecastMonitor

SERVING_PATH = "json"
MAX_ID_LENGTH = 256


def _id(value: Any) -> Any:
    if value is None or type(value) is int or (
        type(value) is str and 0 < len(value) <= MAX_ID_LENGTH
    ):
        return value
    raise PydanticCustomError(
        "id_type",
        "a series id is a JSON integer or a string of 1 to {limit} characters, not {value}",
        {"limit": MAX_ID_LENGTH, "value": repr(value)[:60]},
    )


SeriesId = Annotated[int | str | None, PlainValidator(_id, json_schema_input_type=int | str | None)]
Number = StrictFloat | StrictInt


class ForecastRequest(BaseModel):
    """The next ``horizon`` values of a series."""

    model_config = ConfigDict(extra="forbid")

    series_id: SeriesId = Field(None, description="The series (omit for a single-series model).")
    horizon: StrictInt | None = Field(
        None, description="Steps ahead (default forecasting.horizon)."
    )
    history: list[dict[str, Number | str | None]] | None = Field(
        None,
        description="Recent values to forecast from instead of the training history: rows "
        '{"time": ..., "value": ..., <covariate>: ...} on the series\' frequency, oldest first.',
    )
    future_covariates: dict[str, list[Number]] | None = Field(
        None,
        description="Future values of known-future covariates, one per step ahead.",
    )


class ForecastPoint(BaseModel):
    time: str
    mean: float
    lower: float
    upper: float


class Forecasts(BaseModel):
    series_id: int | str | None
    forecasts: list[ForecastPoint] = Field(description="One per step ahead, in time order.")
    level: float = Field(description="The intervals' nominal coverage.")
    history: str = Field(description="stored (training history) or request.")
    model_name: str
    model_version: str
    request_id: str


class ActualValue(BaseModel):
    """A realised value of a series, for a time a forecast was served for."""

    model_config = ConfigDict(extra="forbid")

    series_id: SeriesId = Field(None, description="The series (omit for a single series).")
    time: str = Field(min_length=1, max_length=64, description="The timestamp (ISO 8601).")
    value: Number = Field(description="The actual value.")


class FeedbackReceipt(BaseModel):
    series_id: int | str | None
    time: str
    actual: float
    forecast: float
    error: float = Field(description="actual - forecast.")
    inside_interval: bool
    model_version: str


class ForecasterMetadata(BaseModel):
    model_name: str
    model_version: str
    family: str
    strategy: str | None
    run_id: str | None
    source: str
    serving_path: str
    task: str = "forecasting"
    frequency: str
    season_length: int
    horizon: int
    max_horizon: int
    interval_level: float
    series: list[str] = Field(description="Series ids with a stored history (first 1,000).")
    covariates: list[dict[str, Any]]
    metrics: dict[str, Any]
    baseline_metrics: dict[str, Any]
    primary_metric: str | None
    trained_at: str | None
    drift_signals: list[str]


def _invalid(field: str, problem: str) -> Exception:
    return invalid_body([{"type": "invalid_value", "loc": tuple(field.split(".")), "msg": problem}])


def parse_time(value: Any, field: str) -> pd.Timestamp:
    if not isinstance(value, str):
        # pd.Timestamp(1991.5) is 1991 nanoseconds after 1970: never what a client meant.
        raise _invalid(field, f"{value!r} is not a timestamp: send ISO 8601 text (2024-01-31)")
    try:
        time = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise _invalid(field, f"{value!r} is not a timestamp (use ISO 8601)") from None
    if time is pd.NaT:
        raise _invalid(field, "a timestamp is required")
    if time.tzinfo is not None:
        time = time.tz_convert("UTC").tz_localize(None)
    return time


class ServedForecaster:
    """The loaded forecaster and what serving derives from it once: the stored-history
    forecasts, limits, metadata, monitoring."""

    def __init__(
        self, forecaster: Forecaster, config: Config, metrics: ForecastMetrics, source: str
    ) -> None:
        meta = forecaster.metadata
        self.forecaster = forecaster
        self.metrics = metrics
        self.name = str(meta.get("model_name") or config.tracking.registered_model)
        self.version = str(meta.get("model_version") or "0")
        self.horizon = int(meta.get("horizon") or forecaster.max_horizon)
        self.max_history = config.serving.max_batch_size * 10
        covariates = meta.get("covariates") or []
        self.known = [c["name"] for c in covariates if c.get("known_future")]
        self.covariates = [c["name"] for c in covariates]
        # Only the gradient-boosting model reads covariates; the others forecast without them.
        self.needs_future = self.known if forecaster.family == "lightgbm" else []
        self.monitor = ForecastMonitor(forecaster, config, metrics)
        self.tested = {
            k: float(v) for k, v in (meta.get("metrics") or {}).items() if k in LIVE_METRICS
        }
        # The LightGBM's trees as ONNX when they match it (fastpath.py), before anything is
        # forecast.
        path, self.compiled = compile_scorer(
            forecaster.model, forecaster.histories, forecaster.max_horizon
        )
        # Then the stored series' scores as tables over their covariates' intervals.
        self.compiled["tables"] = compile_tables(forecaster)
        self.serving_path = path or SERVING_PATH
        self.stored: dict[str, tuple[Forecast, list[dict[str, Any]]]] = {}
        # A stored series' forecast times as text (the same for every request about it).
        self.times: dict[str, list[str]] = {}
        if not self.needs_future:
            for key in forecaster.histories:
                made = forecaster.forecast(key, forecaster.max_horizon)
                self.stored[key] = (made, _points(made))
        self.description = ForecasterMetadata(
            model_name=self.name,
            model_version=self.version,
            family=forecaster.family,
            strategy=meta.get("strategy"),
            run_id=meta.get("run_id"),
            source=source,
            serving_path=self.serving_path,
            frequency=forecaster.frequency,
            season_length=int(meta.get("season_length") or 1),
            horizon=self.horizon,
            max_horizon=forecaster.max_horizon,
            interval_level=forecaster.level,
            series=list(forecaster.histories)[:1000],
            covariates=covariates,
            metrics=meta.get("metrics") or {},
            baseline_metrics=meta.get("baseline_metrics") or {},
            primary_metric=meta.get("primary_metric"),
            trained_at=meta.get("trained_at"),
            drift_signals=DRIFT_SIGNALS,
        )
        metrics.set_model(self.name, self.version, source, self.serving_path)
        metrics.set_performance({}, 0, self.tested)

    def _series(self, series_id: Any) -> str:
        key = series_key(series_id)
        if key == "" and len(self.forecaster.histories) > 1:
            raise _invalid("series_id", "this model forecasts several series: name one")
        return key

    def forecast(self, body: ForecastRequest, request_id: str) -> Response:
        key = self._series(body.series_id)
        horizon = self.horizon if body.horizon is None else body.horizon
        if not 1 <= horizon <= self.forecaster.max_horizon:
            raise _invalid(
                "horizon", f"horizon must be from 1 to {self.forecaster.max_horizon}, not {horizon}"
            )
        future = self._future(body.future_covariates, horizon)
        if body.history is None:
            if not self.forecaster.knows(key):
                raise _invalid(
                    "series_id",
                    f"unknown series {key!r}: send its recent values as `history` (GET "
                    "/metadata lists the series the model has a history for)",
                )
            stored = self.stored.get(key)
            if stored is not None:
                made, points = stored[0], stored[1][:horizon]
            else:
                made = self._call(lambda: self.forecaster.forecast(key, horizon, None, future))
                times = self.times.get(key)
                if times is None or len(times) < horizon:
                    times = self.times[key] = _iso(made.times)
                points = _points(made, times[:horizon])
            source = "stored"
        else:
            history = self._history(key, body.history)
            made = self._call(lambda: self.forecaster.forecast(key, horizon, history, future))
            points = _points(made)
            source = "request"
        scale = self.forecaster.scales.get(key) or self.forecaster.metadata_scale(
            self.forecaster.histories.get(key) or history
        )
        self.monitor.record(key, _head(made, horizon), scale, self.version)
        self.metrics.observe_forecast(self.version, source)
        payload = {
            "series_id": body.series_id,
            "forecasts": points,
            "level": self.forecaster.level,
            "history": source,
            "model_name": self.name,
            "model_version": self.version,
            "request_id": request_id,
        }
        return Response(to_json(payload), media_type="application/json")

    def _future(self, given: dict[str, list[float]] | None, horizon: int) -> dict[str, np.ndarray]:
        given = given or {}
        for name in given:
            if name not in self.covariates:
                known = ", ".join(self.known) or "none"
                raise _invalid(
                    f"future_covariates.{name}",
                    f"not a covariate of the model; its known-future covariates are {known}",
                )
        for name in self.needs_future:
            values = given.get(name)
            if values is None or len(values) < horizon:
                raise _invalid(
                    f"future_covariates.{name}",
                    f"the model needs {horizon} future values of {name!r} (one per step "
                    f"ahead), not {0 if values is None else len(values)}",
                )
        return {name: np.asarray(values[:horizon], dtype="float64") for name, values in
                given.items()}

    def _history(self, key: str, rows: list[dict[str, Any]]) -> Series:
        if not rows:
            raise _invalid("history", "give at least one row, or leave history out")
        if len(rows) > self.max_history:
            raise _invalid("history", f"at most {self.max_history} rows, not {len(rows)}")
        times, values = [], []
        covariates: dict[str, list[float]] = {name: [] for name in self.covariates}
        for index, row in enumerate(rows):
            where = f"history.{index}"
            if "time" not in row or "value" not in row:
                raise _invalid(where, "each row needs `time` and `value`")
            times.append(parse_time(row["time"], f"{where}.time"))
            value = row["value"]
            if isinstance(value, str) or value is None:
                raise _invalid(f"{where}.value", f"a number, not {value!r}")
            values.append(float(value))
            for name in self.covariates:
                cell = row.get(name)
                if isinstance(cell, str):
                    raise _invalid(f"{where}.{name}", f"a number, not {cell!r}")
                covariates[name].append(np.nan if cell is None else float(cell))
            unknown = set(row) - {"time", "value", *self.covariates}
            if unknown:
                raise _invalid(f"{where}.{sorted(unknown)[0]}", "not a covariate of the model")
        index = pd.DatetimeIndex(times)
        grid = pd.date_range(index[0], periods=len(index), freq=self.forecaster.frequency)
        if not index.equals(grid):
            position = int(np.argmax(index != grid))
            raise _invalid(
                f"history.{position}.time",
                f"rows must follow one another at the {self.forecaster.frequency} frequency, "
                f"oldest first, without gaps: expected {grid[position]}, got {index[position]}",
            )
        arrays = {
            name: pd.Series(v, dtype="float64").ffill().bfill().to_numpy()
            for name, v in covariates.items()
        }
        for name, column in arrays.items():
            if np.isnan(column).any():
                raise _invalid("history", f"covariate {name!r} has no value in any row")
        return Series(key, index, np.asarray(values), arrays)

    @staticmethod
    def _call(answer: Any) -> Any:
        try:
            return answer()
        except RequestError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from exc

    def feedback(self, body: ActualValue) -> FeedbackReceipt:
        key = self._series(body.series_id)
        time = parse_time(body.time, "time")
        try:
            outcome = self.monitor.feedback(key, time, float(body.value))
        except FeedbackError as exc:
            self.metrics.feedback.labels(exc.kind).inc()
            raise ApiError(404 if exc.kind == "unknown" else 409, exc.kind, str(exc)) from exc
        self.metrics.feedback.labels("joined").inc()
        return FeedbackReceipt(
            series_id=body.series_id,
            time=time.isoformat(),
            actual=outcome.actual,
            forecast=outcome.forecast,
            error=outcome.actual - outcome.forecast,
            inside_interval=outcome.lower <= outcome.actual <= outcome.upper,
            model_version=outcome.model_version,
        )

    def refresh_gauges(self) -> None:
        self.monitor.refresh_gauges(self.tested)

    def examples(self) -> dict[str, dict[str, Any]]:
        first = next(iter(self.forecaster.histories), "")
        value: dict[str, Any] = {"series_id": first or None, "horizon": self.horizon}
        if self.needs_future:
            last = self.forecaster.histories[first].covariates
            value["future_covariates"] = {
                name: [float(last[name][-1])] * self.horizon for name in self.needs_future
            }
        return {"stored": {"summary": "A series of the training data", "value": value}}


def _head(made: Forecast, horizon: int) -> Forecast:
    if len(made.mean) == horizon:
        return made  # slicing a DatetimeIndex costs ~10 us even when it keeps all of it
    return Forecast(
        made.times[:horizon], made.mean[:horizon], made.lower[:horizon], made.upper[:horizon]
    )


def _points(made: Forecast, times: list[str] | None = None) -> list[dict[str, Any]]:
    """The answer's points; ``times``: the times as text, when known."""
    return [
        {"time": time, "mean": m, "lower": lo, "upper": hi}
        for time, m, lo, hi in zip(
            _iso(made.times) if times is None else times, made.mean.tolist(),
            made.lower.tolist(), made.upper.tolist(), strict=True,
        )
    ]


def _iso(times: pd.DatetimeIndex) -> list[str]:
    """``Timestamp.isoformat`` of each time; by numpy for whole seconds (boxing each time
    as a Timestamp cost as much as the rest of a forecast's answer)."""
    if times.tz is None and not (times.asi8 % 1_000_000_000).any():
        return np.datetime_as_string(times.to_numpy(), unit="s").tolist()
    return [time.isoformat() for time in times]


class ForecastState(ModelState[ServedForecaster, ForecastMetrics]):
    def load(self, forecaster: Forecaster, source: str) -> ServedForecaster:
        return self.serve(ServedForecaster(forecaster, self.config, self.metrics, source))


def load_champion(config: Config) -> Forecaster:
    """The exported champion (``artifacts/champion/``), as training wrote it."""
    return load_forecaster(fallback_dir(config, CHAMPION_DIR))


def create_app(config: Config | None = None, forecaster: Forecaster | None = None) -> FastAPI:
    """The API for ``forecaster``, or for the champion loaded at start-up (if none can be
    loaded, ``/health`` answers and the model routes answer 503 with the reason)."""
    config = config or load_config()
    metrics = ForecastMetrics()
    state = ForecastState(config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.model is None:
            await _load_champion(app, state, guard_of)
        yield

    app, guard_of = service_app(
        config, state, "Forecasts with prediction intervals from the champion model.",
        lifespan, lambda: [],
        str(forecaster.metadata.get("model_version", "")) if forecaster else "pending",
    )
    _add_service_routes(app, state, guard_of)
    if forecaster is not None:
        _add_model_routes(app, state.load(forecaster, "memory"), guard_of)
    return app


async def _load_champion(app: FastAPI, state: ForecastState, guard_of: Guards) -> None:
    model = await load_at_start(
        app, state, lambda: state.load(load_champion(state.config), "file"), "forecaster"
    )
    if model is None:
        add_unavailable_routes(app, ("/forecast",), guard_of)
    else:
        _add_model_routes(app, model, guard_of)


def _add_service_routes(app: FastAPI, state: ForecastState, guard_of: Guards) -> None:
    add_probe_routes(
        app, state, guard_of, ForecasterMetadata, lambda model: model.description,
        "Ready to forecast: a model is loaded.",
        "The served model: family, frequency, horizon, series, test metrics.",
    )

    @app.get("/monitoring", dependencies=guard_of("/monitoring"), tags=["model"])
    def monitoring() -> dict[str, Any]:
        """Live error, residual drift and seasonality from the fed-back actual values."""
        return state.require_model().monitor.snapshot()

    @app.post(
        "/feedback",
        response_model=FeedbackReceipt,
        responses=feedback_responses(
            "No forecast was served for it.", "This time already has its value."
        ),
        dependencies=guard_of("/feedback"),
        tags=["model"],
    )
    def feedback(body: ActualValue) -> FeedbackReceipt:
        """A realised value, joined to the latest forecast served for its series and time."""
        return state.require_model().feedback(body)

    add_metrics_route(app, state, guard_of, ServedForecaster.refresh_gauges)


FORECAST = TypeAdapter(ForecastRequest)


def _add_model_routes(app: FastAPI, model: ServedForecaster, guard_of: Guards) -> None:
    async def forecast(request: Request) -> Response:
        body = validated(FORECAST, await json_body(request))
        return model.forecast(body, request.state.request_id)

    add_post_route(
        app, "/forecast", forecast, Forecasts, guard_of("/forecast"),
        "Point forecasts with prediction intervals for one series.",
        "ForecastRequest", model.examples(),
    )
    add_component_schemas(app, _request_schemas)
    hot_routes_first(app)


def _request_schemas() -> dict[str, Any]:
    template = f"{COMPONENTS}{{model}}"
    return {"ForecastRequest": ForecastRequest.model_json_schema(ref_template=template)}
