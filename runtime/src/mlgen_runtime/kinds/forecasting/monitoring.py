"""*Monitoring* of a forecasting service: how its forecasts fare as the actual values arrive.

``POST /feedback {series_id, time, value}`` joins a realised value to the latest forecast
served for that series and time (each of the last ``serving.feedback_log_size`` forecast steps
is remembered), and feeds three signals over the last ``serving.feedback_window`` outcomes:

* **forecast error**: live MASE (absolute error in units of the series' training error scale),
  sMAPE, RMSE and interval coverage, next to the test windows' values
  (``model_live_performance`` / ``model_test_performance``);
* **residual drift**: the scaled signed residuals against the test windows' residuals: their
  mean (bias) and the Wasserstein distance between the two distributions in units of the
  reference's standard deviation; flagged above ``drift.numeric_threshold`` once
  ``drift.min_rows`` outcomes are in, or when the bias is beyond three standard errors;
* **seasonality change**: per series, the realised values' mean at each position of the season
  (steps since the end of training, modulo the season length) against the training data's
  profile, by their correlation; flagged below :data:`SEASONALITY_FLOOR` once every position
  has a realised value.

The state is per worker process (several workers each see the feedback they received).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import Counter, Gauge

from ...config import Config
from ...errors import FeedbackError
from ...monitoring.metrics import CommonMetrics
from .forecaster import Forecast, Forecaster

SEASONALITY_FLOOR = 0.5
LIVE_METRICS = ("mase", "smape", "rmse", "coverage")
DRIFT_SIGNALS = [
    "live forecast error from POST /feedback: MASE, sMAPE, RMSE, interval coverage",
    "residual drift: bias and Wasserstein distance of live scaled residuals vs the test "
    "windows' residuals",
    "seasonality change: correlation of the realised seasonal profile with training's",
]


class ForecastMetrics(CommonMetrics):
    """The shared serving metrics plus the forecasting kind's (see docs/internals.md)."""

    def __init__(self) -> None:
        super().__init__()
        registry = self.registry
        self.forecasts = Counter(
            "model_forecasts_total",
            "Forecasts answered, by model version and history (stored: the training history; "
            "request: a history sent with the request).",
            ["model_version", "history"],
            registry=registry,
        )
        self.residual_bias = Gauge(
            "model_forecast_residual_bias",
            "Mean signed residual (actual - forecast) of recent fed-back forecasts, in units of "
            "the series' error scale.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.residual_drift = Gauge(
            "model_forecast_residual_drift",
            "Wasserstein distance between recent scaled residuals and the test windows', in "
            "units of the latter's standard deviation.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.residual_drift_alert = Gauge(
            "model_forecast_residual_drift_alert",
            "1 when the residual drift is above drift.numeric_threshold or the bias beyond "
            "three standard errors.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.seasonality = Gauge(
            "model_seasonality_correlation",
            "Lowest correlation, over series with a full season of realised values, of their "
            "seasonal profile with training's.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.seasonality_alert = Gauge(
            "model_seasonality_change_alert",
            f"1 when a series' seasonal profile correlates below {SEASONALITY_FLOOR} with "
            "training's.",
            multiprocess_mode="livemax",
            registry=registry,
        )

    def observe_forecast(self, version: str, history: str) -> None:
        self._child(self.forecasts, version, history).inc()


@dataclass(frozen=True)
class Outcome:
    series_id: str
    time: pd.Timestamp
    actual: float
    forecast: float
    lower: float
    upper: float
    scale: float
    model_version: str

    @property
    def residual(self) -> float:
        return (self.actual - self.forecast) / self.scale


class ForecastMonitor:
    """Served forecast steps, their outcomes and the signals computed from them."""

    def __init__(self, forecaster: Forecaster, config: Config, metrics: ForecastMetrics) -> None:
        self.forecaster = forecaster
        self.metrics = metrics
        self.capacity = config.serving.feedback_log_size
        self.min_rows = config.serving.feedback_min_rows
        self.drift = config.drift
        # Keyed by (series, time in nanoseconds): integers, not Timestamps, which would be
        # boxed one by one for every step of every forecast served.
        self.served: OrderedDict[tuple[str, int], tuple[float, float, float, float, str]]
        self.served = OrderedDict()
        self.claimed: set[tuple[str, int]] = set()
        # Forecasts served since feedback last came (record), and their steps.
        self.pending: deque[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, str]]
        self.pending = deque()
        self.pending_steps = 0
        self.outcomes: deque[Outcome] = deque(maxlen=config.serving.feedback_window)
        reference = forecaster.metadata.get("reference") or {}
        self.reference = np.asarray(reference.get("residuals") or [0.0])
        self.reference_sd = float(reference.get("residual_sd") or 1.0) or 1.0
        self.profiles = {k: np.roll(np.asarray(v), 1) for k, v in
                         (reference.get("profiles") or {}).items() if v}
        self.season = int(forecaster.metadata.get("season_length") or 1)
        self.realised: dict[str, dict[int, float]] = {}
        self.lock = threading.Lock()

    def record(self, series_id: str, forecast: Forecast, scale: float, version: str) -> None:
        """Remember a served forecast. Its steps are indexed when feedback next needs them
        (:meth:`_index`): a request costs one append, not a dictionary update per step."""
        steps = len(forecast.mean)
        with self.lock:
            self.pending.append((
                series_id, forecast.times.asi8, forecast.mean, forecast.lower, forecast.upper,
                scale, version,
            ))
            self.pending_steps += steps
            # Forecasts older than the last `capacity` steps served would leave the index
            # as soon as they entered it.
            while self.pending_steps - len(self.pending[0][2]) >= self.capacity:
                self.pending_steps -= len(self.pending.popleft()[2])

    def _index(self) -> None:
        """Index the pending forecasts' steps by (series, time), oldest first, so each key
        holds the latest forecast served for it (and may take feedback again)."""
        while self.pending:
            series_id, times, means, lows, highs, scale, version = self.pending.popleft()
            for time, mean, low, high in zip(
                times.tolist(), means.tolist(), lows.tolist(), highs.tolist(), strict=True
            ):
                key = (series_id, time)
                self.served.pop(key, None)
                self.served[key] = (mean, low, high, scale, version)
                self.claimed.discard(key)
        self.pending_steps = 0
        while len(self.served) > self.capacity:
            key, _ = self.served.popitem(last=False)
            self.claimed.discard(key)

    def feedback(self, series_id: str, time: pd.Timestamp, value: float) -> Outcome:
        key = (series_id, time.value)
        with self.lock:
            self._index()
            if key in self.claimed:
                raise FeedbackError(
                    "duplicate", f"series {series_id!r} at {time} already has its actual value"
                )
            served = self.served.get(key)
            if served is None:
                raise FeedbackError(
                    "unknown",
                    f"no forecast was served for series {series_id!r} at {time} (or it is "
                    "older than the last serving.feedback_log_size forecast steps)",
                )
            self.claimed.add(key)
            mean, low, high, scale, version = served
            outcome = Outcome(series_id, time, value, mean, low, high, scale, version)
            self.outcomes.append(outcome)
            self._realise(series_id, time, value)
        return outcome

    def _realise(self, series_id: str, time: pd.Timestamp, value: float) -> None:
        history = self.forecaster.histories.get(series_id)
        if history is None or self.season <= 1:
            return
        last = history.times[-1]
        offset = len(pd.date_range(last, time, freq=self.forecaster.frequency)) - 1
        values = self.realised.setdefault(series_id, {})
        values[offset] = value
        if len(values) > 8 * self.season:
            values.pop(min(values))

    # -- signals -------------------------------------------------------------------------
    def live_metrics(self) -> dict[str, float]:
        outcomes = list(self.outcomes)
        if len(outcomes) < self.min_rows:
            return {}
        actual = np.array([o.actual for o in outcomes])
        forecast = np.array([o.forecast for o in outcomes])
        scale = np.array([o.scale for o in outcomes])
        errors = actual - forecast
        denominator = np.abs(actual) + np.abs(forecast)
        smape = np.divide(200 * np.abs(errors), denominator, out=np.zeros_like(errors),
                          where=denominator > 0)
        inside = [o.lower <= o.actual <= o.upper for o in outcomes]
        return {
            "mase": float(np.mean(np.abs(errors) / scale)),
            "smape": float(smape.mean()),
            "rmse": float(np.sqrt(np.mean(errors**2))),
            "coverage": float(np.mean(inside)),
        }

    def residual_drift(self) -> tuple[float, float, bool] | None:
        """(bias, Wasserstein distance in reference sd, alert) of the live residuals."""
        residuals = np.array([o.residual for o in self.outcomes])
        if len(residuals) < self.drift.min_rows:
            return None
        bias = float(residuals.mean())
        distance = wasserstein(residuals, self.reference) / self.reference_sd
        standard_error = self.reference_sd / math.sqrt(len(residuals))
        alert = distance > self.drift.numeric_threshold or abs(bias) > 3 * standard_error
        return bias, distance, alert

    def seasonality(self) -> dict[str, float]:
        """Each series' correlation of its realised seasonal profile with training's (series
        with every position of the season realised)."""
        result = {}
        for series_id, values in self.realised.items():
            reference = self.profiles.get(series_id)
            if reference is None:
                continue
            sums, counts = np.zeros(self.season), np.zeros(self.season)
            for offset, value in values.items():
                sums[offset % self.season] += value
                counts[offset % self.season] += 1
            if counts.min() == 0:
                continue
            profile = sums / counts
            if profile.std() == 0 or reference.std() == 0:
                result[series_id] = 0.0
                continue
            result[series_id] = float(np.corrcoef(profile, reference)[0, 1])
        return result

    def refresh_gauges(self, tested: dict[str, float]) -> None:
        with self.lock:
            live = self.live_metrics()
            drift = self.residual_drift()
            seasonality = self.seasonality()
        self.metrics.set_performance(live, len(self.outcomes), tested)
        if drift is not None:
            bias, distance, alert = drift
            self.metrics.residual_bias.set(bias)
            self.metrics.residual_drift.set(distance)
            self.metrics.residual_drift_alert.set(int(alert))
        if seasonality:
            lowest = min(seasonality.values())
            self.metrics.seasonality.set(lowest)
            self.metrics.seasonality_alert.set(int(lowest < SEASONALITY_FLOOR))

    def snapshot(self) -> dict[str, Any]:
        """The signals as JSON (for GET /monitoring)."""
        with self.lock:
            drift = self.residual_drift()
            return {
                "outcomes": len(self.outcomes),
                "live": self.live_metrics(),
                "residual_drift": None if drift is None else {
                    "bias": drift[0], "distance": drift[1], "alert": drift[2]},
                "seasonality": self.seasonality(),
            }


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """The 1-Wasserstein distance between two samples (their quantile functions' L1 gap)."""
    grid = np.linspace(0, 1, 201)
    return float(np.mean(np.abs(np.quantile(a, grid) - np.quantile(b, grid))))
