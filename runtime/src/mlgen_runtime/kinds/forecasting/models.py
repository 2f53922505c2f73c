"""The forecasting *models*: seasonal naive (the baseline), ETS chosen by AICc, and LightGBM
on lag, rolling and calendar features (recursive or direct multi-step).

Every model forecasts from any history (``forecast(histories, horizon, futures)``), not only
from the data it was fitted on: backtests, conformal calibration and ``/forecast`` with a
``history`` all use the fitted model on other histories (ETS re-estimates its parameters on
a new history, as AutoETS does at each origin). Every model saves to JSON and text
(LightGBM's own model format): nothing is pickled.

ETS is statsmodels' ``ETSModel`` over AutoETS's default space (additive and, for positive
series, multiplicative errors and seasons; no trend, an additive or a damped one; heuristic
initial states), the configuration with the lowest AICc per series, fitted on the last
:data:`ETS_WINDOW` steps. statsforecast's AutoETS and
AutoARIMA need pandas < 3, which the runtime does not pin (docs/internals.md says why); the
benchmark runs them side by side in a venv of their own.
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from ...errors import RequestError
from .data import Panel, Series, future_times

log = logging.getLogger(__name__)

# LightGBM threads: one, so the same seed and data give the same model bit for bit.
THREADS = 1
# Rows of the direct strategy's training set at most (origins are strided to fit).
DIRECT_ROWS = 250_000
ETS_WINDOW = 2000
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 10,
    "feature_fraction": 0.9,
    "bagging_fraction": 1.0,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "num_threads": THREADS,
    "deterministic": True,
    "force_row_wise": True,
}
ROUNDS = 300

Futures = Sequence[dict[str, np.ndarray]]


class Model(Protocol):
    family: str

    def fit(self, panel: Panel) -> Model: ...

    def forecast(self, histories: Sequence[Series], horizon: int, futures: Futures) -> np.ndarray:
        """(len(histories), horizon) point forecasts following each history."""

    def min_history(self) -> int:
        """The fewest steps of history a forecast needs."""

    def state(self) -> dict[str, Any]:
        """JSON-able parameters, enough for :func:`restore`."""


def seasonal_naive(y: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Each step the value one season (or whole seasons) earlier: y[T + h - m * ceil(h / m)]."""
    steps = np.arange(1, horizon + 1)
    back = season * np.ceil(steps / season).astype(int)
    return y[len(y) + steps - back - 1]


class SeasonalNaive:
    family = "seasonal_naive"

    def __init__(self, season: int) -> None:
        self.season = season

    def fit(self, panel: Panel) -> SeasonalNaive:
        return self

    def forecast(self, histories: Sequence[Series], horizon: int, futures: Futures) -> np.ndarray:
        return np.stack([seasonal_naive(s.y, horizon, self.season) for s in histories])

    def min_history(self) -> int:
        return self.season

    def state(self) -> dict[str, Any]:
        return {"family": self.family, "season": self.season}


# (error, trend, damped, seasonal) configurations AICc chooses among: AutoETS's default space
# (Hyndman et al. 2008; R's ets() and statsforecast's AutoETS), no multiplicative trend and no
# additive error with multiplicative seasons (infinite forecast variance).
ETS_CONFIGS: list[tuple[str, str | None, bool, str | None]] = [
    (error, trend, damped, seasonal)
    for error in ("add", "mul")
    for trend, damped in ((None, False), ("add", False), ("add", True))
    for seasonal in (None, "add", "mul")
    if not (error == "add" and seasonal == "mul")
]


def fingerprint(y: np.ndarray) -> str:
    """Which history a fit saw: its length and a digest of its values."""
    data = np.ascontiguousarray(y, dtype="float64").tobytes()
    return f"{len(y)}:{hashlib.sha256(data).hexdigest()[:16]}"


class ETS:
    """Exponential smoothing per series, its configuration chosen by AICc.

    With ``refit`` (every model fitted by this version), a forecast from a history other than
    the one a series was fitted on re-estimates the parameters of that series' chosen
    configuration on it, starting from the fitted ones: a test window after the fit, or
    ``/forecast`` with a ``history``. (AutoETS refitted at each origin also re-chooses the
    configuration, 15 fits instead of one.) The stored history (what the
    final fit saw) forecasts with the fitted parameters. Bundles of earlier versions (no
    ``refit`` in their state) keep their parameters for every history, as they did."""

    family = "ets"

    def __init__(
        self, season: int, fitted: dict[str, dict[str, Any]] | None = None, refit: bool = True
    ) -> None:
        self.season = season
        self.fitted = fitted or {}
        self.refit = refit

    def _usable(self, y: np.ndarray) -> list[tuple[str, str | None, bool, str | None]]:
        seasonal = self.season > 1 and len(y) >= 3 * self.season
        positive = bool(np.all(y > 0))
        return [
            c
            for c in ETS_CONFIGS
            if (c[3] is None or seasonal) and (c[0] == "add" or positive)
        ]

    def _model(self, y: np.ndarray, config: dict[str, Any]) -> Any:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        return ETSModel(
            y,
            error=config["error"],
            trend=config["trend"],
            damped_trend=config["damped"],
            seasonal=config["seasonal"],
            seasonal_periods=self.season if config["seasonal"] else None,
            initialization_method="heuristic" if config["seasonal"] else "estimated",
        )

    def _fit(self, y: np.ndarray, config: dict[str, Any], start: Any = None) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._model(y, config).fit(start_params=start, disp=False, maxiter=200)

    def fit(self, panel: Panel) -> ETS:
        fitted = {}
        for key, series in panel.series.items():
            y = series.y[-ETS_WINDOW:]
            best: tuple[float, dict[str, Any]] | None = None
            for error, trend, damped, seasonal in self._usable(y):
                config: dict[str, Any] = {
                    "error": error,
                    "trend": trend,
                    "damped": damped,
                    "seasonal": seasonal,
                }
                try:
                    result = self._fit(y, config)
                except (ValueError, np.linalg.LinAlgError):
                    continue
                aicc = float(result.aicc)
                if math.isfinite(aicc) and (best is None or aicc < best[0]):
                    best = (aicc, {**config, "params": [float(p) for p in result.params]})
            if best is None:
                raise RequestError(f"No ETS configuration could be fitted to series {key!r}.")
            fitted[key] = {**best[1], "history": fingerprint(y)}
        self.fitted = fitted
        return self

    def _params(self, y: np.ndarray, config: dict[str, Any]) -> np.ndarray:
        """The parameters that forecast from ``y``: refitted when ``y`` is not the history
        the series was fitted on (the fitted ones if that fit fails, which is logged)."""
        params = np.asarray(config["params"])
        if not self.refit or config.get("history") == fingerprint(y):
            return params
        try:
            result = self._fit(y, config, start=params)
        except (ValueError, np.linalg.LinAlgError) as exc:
            log.warning(
                "ETS: refitting on a new history failed (%s); the fitted parameters "
                "forecast instead.",
                exc,
            )
            return params
        return np.asarray(result.params)

    def forecast(self, histories: Sequence[Series], horizon: int, futures: Futures) -> np.ndarray:
        rows = []
        for series in histories:
            config = self.fitted.get(series.id)
            if config is None:
                raise RequestError(
                    f"The ETS model has no parameters for series {series.id!r} (it was not in "
                    "the training data)."
                )
            y = series.y[-ETS_WINDOW:]
            params = self._params(y, config)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = self._model(y, config).smooth(params)
                rows.append(np.asarray(result.forecast(horizon), dtype="float64"))
        return np.stack(rows)

    def min_history(self) -> int:
        return 3 * self.season if self.season > 1 else 10

    def state(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "season": self.season,
            "fitted": self.fitted,
            "refit": self.refit,
        }


def default_lags(season: int, frequency: str, longest: int) -> list[int]:
    """Recent steps, the season's neighbours, two seasons back, and a week back for data
    with a daily cycle; only lags shorter than half the longest series."""
    lags = {1, 2, 3, 4, 5, 6}
    if season > 1:
        lags |= {season - 1, season, season + 1, 2 * season}
        if _fixed(frequency) and _step(frequency) < pd.Timedelta("1D"):
            lags.add(7 * season)
    return sorted(lag for lag in lags if lag >= 1 and lag < max(longest // 2, 2))


def _step(frequency: str) -> pd.Timedelta:
    return pd.Timedelta(to_offset(frequency))


def _fixed(frequency: str) -> bool:
    try:
        _step(frequency)
    except ValueError:
        return False
    return True


def calendar(times: pd.DatetimeIndex, frequency: str) -> dict[str, np.ndarray]:
    """Calendar features of ``times`` at the frequency's granularity."""
    features: dict[str, np.ndarray] = {}
    fixed = _fixed(frequency)
    step = _step(frequency) if fixed else None
    if step is not None and step < pd.Timedelta("1D"):
        features["minute_of_day"] = (times.hour * 60 + times.minute).to_numpy(dtype="float64")
    if step is not None and step <= pd.Timedelta("1D"):
        features["dayofweek"] = times.dayofweek.to_numpy(dtype="float64")
    if step is None or step < pd.Timedelta("28D"):
        features["month"] = times.month.to_numpy(dtype="float64")
    if step is not None and pd.Timedelta("1D") < step < pd.Timedelta("28D"):
        features["week"] = times.isocalendar().week.to_numpy(dtype="float64")
    return features


class LightGBM:
    """A global gradient-boosted model over every series: the target and its lags minus the
    series' recent level, in units of its seasonal-naive error scale; calendar features;
    covariates (known-future ones at the target time, the others at least ``horizon`` old)."""

    family = "lightgbm"

    def __init__(
        self,
        season: int,
        frequency: str,
        horizon: int,
        strategy: str,
        known: list[str],
        unknown: list[str],
        seed: int,
        lags: list[int] | None = None,
        codes: dict[str, int] | None = None,
        scales: dict[str, float] | None = None,
        booster: Any = None,
    ) -> None:
        self.season = season
        self.frequency = frequency
        self.horizon = horizon
        self.strategy = strategy
        self.known = known
        self.unknown = unknown
        self.seed = seed
        self.lags = lags or []
        self.codes = codes or {}
        self.scales = scales or {}
        self.booster = booster
        # The booster's raw prediction of a feature matrix; serving may replace it with a
        # compiled one that matches it (see fastpath.py). Not saved.
        self.scorer: Callable[[np.ndarray], np.ndarray] = self.booster_predict

    @property
    def window(self) -> int:
        return max(self.season, 3)

    def min_history(self) -> int:
        return max([*self.lags, self.window]) + 1

    def _scale(self, series: Series) -> float:
        return self.scales.get(series.id) or error_scale(series.y, self.season)

    def _rows(
        self,
        series: Series,
        target_times: pd.DatetimeIndex,
        y: np.ndarray,
        covariates: dict[str, np.ndarray],
        targets: np.ndarray,
        origins: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Feature columns for predicting positions ``targets`` of ``y`` (at ``target_times``)
        knowing it up to ``origins`` (recursive: origin = target - 1, values after an origin
        are forecasts)."""
        scale = self._scale(series)
        direct = self.strategy == "direct"
        window = self.window
        cumulative = np.concatenate([[0.0], np.cumsum(y)])
        level = (cumulative[origins + 1] - cumulative[origins + 1 - window]) / window
        recent = (cumulative[origins + 1] - cumulative[origins - 2]) / 3
        columns: dict[str, np.ndarray] = {
            "series": np.full(len(targets), float(self.codes.get(series.id, -1))),
            "recent": (recent - level) / scale,
            "level_change": (level - y[np.maximum(origins - window, 0)]) / scale,
        }
        for lag in self.lags:
            position = targets - lag
            values = (y[np.maximum(position, 0)] - level) / scale
            if direct:
                values = np.where(position <= origins, values, np.nan)
            columns[f"lag_{lag}"] = values
        steps = targets - origins
        if direct:
            columns["step"] = steps.astype("float64")
            if self.season > 1:
                back = self.season * np.ceil(steps / self.season).astype(int)
                columns["last_cycle"] = (y[targets - back] - level) / scale
        for name, values in calendar(target_times, self.frequency).items():
            columns[name] = values
        for name in self.known:
            columns[f"known_{name}"] = covariates[name][targets]
        shift = 0 if direct else self.horizon - 1
        for name in self.unknown:
            columns[f"past_{name}"] = covariates[name][np.maximum(origins - shift, 0)]
        columns["_level"] = level
        columns["_scale"] = np.full(len(targets), scale)
        return columns

    def fit(self, panel: Panel) -> LightGBM:
        import lightgbm as lgb

        longest = max(len(s) for s in panel.series.values())
        self.lags = self.lags or default_lags(self.season, self.frequency, longest)
        self.codes = {key: code for code, key in enumerate(sorted(panel.series))}
        self.scales = {key: error_scale(s.y, self.season) for key, s in panel.series.items()}
        start = self.min_history()
        parts = []
        for series in panel.series.values():
            n = len(series)
            if n <= start:
                continue
            if self.strategy == "recursive":
                targets = np.arange(start, n)
                origins = targets - 1
            else:
                total = sum(max(len(s) - start, 0) for s in panel.series.values()) * self.horizon
                stride = max(1, math.ceil(total / DIRECT_ROWS))
                origin_range = np.arange(start - 1, n - 1, stride)
                steps = np.arange(1, self.horizon + 1)
                origins = np.repeat(origin_range, len(steps))
                targets = origins + np.tile(steps, len(origin_range))
                keep = targets < n
                origins, targets = origins[keep], targets[keep]
            rows = self._rows(
                series, series.times[targets], series.y, series.covariates, targets, origins
            )
            rows["_y"] = (series.y[targets] - rows["_level"]) / rows["_scale"]
            parts.append(pd.DataFrame(rows))
        if not parts:
            raise RequestError(
                f"Every series is shorter than the {start} steps the lightgbm model needs."
            )
        frame = pd.concat(parts, ignore_index=True)
        features = [c for c in frame.columns if not c.startswith("_")]
        dataset = lgb.Dataset(
            frame[features].to_numpy(dtype="float64"),
            label=frame["_y"].to_numpy(),
            feature_name=features,
            categorical_feature=["series"] if len(self.codes) > 1 else "auto",
            free_raw_data=True,
        )
        params = {**LIGHTGBM_PARAMS, "seed": self.seed}
        if len(frame) < 200:
            params["min_data_in_leaf"] = 3
        self.booster = lgb.train(params, dataset, num_boost_round=ROUNDS)
        return self

    def forecast(self, histories: Sequence[Series], horizon: int, futures: Futures) -> np.ndarray:
        out = np.empty((len(histories), horizon))
        for row, (series, future) in enumerate(zip(histories, futures, strict=True)):
            out[row] = self._one(series, horizon, future)
        return out

    def _one(self, series: Series, horizon: int, future: dict[str, np.ndarray]) -> np.ndarray:
        if self.strategy == "direct":
            return self.prepare(series, horizon).forecast(future, horizon)
        n = len(series)
        times = future_times(series, self.frequency, horizon)
        y = np.concatenate([series.y, np.zeros(horizon)])
        covariates = {
            name: np.concatenate([values, future.get(name, np.full(horizon, values[-1]))])
            for name, values in series.covariates.items()
        }
        for step in range(horizon):
            position = np.array([n + step])
            rows = self._rows(series, times[step : step + 1], y, covariates, position, position - 1)
            y[n + step] = self._predict(rows)[0]
        return y[n:]

    def prepare(self, series: Series, horizon: int) -> Prepared:
        """The direct strategy's feature rows for the ``horizon`` steps after ``series``, all
        but the known-future covariates' columns, which each forecast fills: a service
        prepares its stored series once and a request costs the model's predict alone."""
        if self.strategy != "direct":
            raise ValueError("only the direct strategy's rows can be prepared")
        n = len(series)
        y = np.concatenate([series.y, np.zeros(horizon)])
        last = {name: float(values[-1]) for name, values in series.covariates.items()}
        covariates = {
            name: np.concatenate([values, np.full(horizon, last[name])])
            for name, values in series.covariates.items()
        }
        targets = np.arange(n, n + horizon)
        rows = self._rows(
            series, future_times(series, self.frequency, horizon), y, covariates, targets,
            np.full(horizon, n - 1),
        )
        names = self.booster.feature_name()
        return Prepared(
            self,
            np.column_stack([rows[name] for name in names]),
            {name: names.index(f"known_{name}") for name in self.known},
            last,
            rows["_level"],
            rows["_scale"],
        )

    def _predict(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        names = self.booster.feature_name()
        matrix = np.column_stack([rows[name] for name in names])
        return self.predict_matrix(matrix, rows["_level"], rows["_scale"])

    def booster_predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.booster.predict(matrix, num_threads=THREADS)

    def predict_matrix(
        self, matrix: np.ndarray, level: np.ndarray, scale: np.ndarray
    ) -> np.ndarray:
        return self.scorer(matrix) * scale + level

    def state(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "season": self.season,
            "frequency": self.frequency,
            "horizon": self.horizon,
            "strategy": self.strategy,
            "known": self.known,
            "unknown": self.unknown,
            "seed": self.seed,
            "lags": self.lags,
            "codes": self.codes,
            "scales": self.scales,
            "booster": self.booster.model_to_string(),
        }


@dataclass(frozen=True)
class Prepared:
    """A direct LightGBM forecast from one history, prepared up to its known-future
    covariates (:meth:`LightGBM.prepare`)."""

    model: LightGBM
    matrix: np.ndarray
    # Each known-future covariate's column in ``matrix``.
    columns: dict[str, int]
    # A covariate's value at the end of the history: its future when a request gives none.
    last: dict[str, float]
    level: np.ndarray
    scale: np.ndarray

    def forecast(self, future: dict[str, np.ndarray], horizon: int) -> np.ndarray:
        """The first ``horizon`` point forecasts with ``future`` covariate values."""
        matrix = self.matrix[:horizon].copy()
        for name, column in self.columns.items():
            values = future.get(name)
            matrix[:, column] = self.last[name] if values is None else values[:horizon]
        return self.model.predict_matrix(matrix, self.level[:horizon], self.scale[:horizon])


def error_scale(y: np.ndarray, season: int) -> float:
    """MASE's scale: the mean absolute error of the in-sample seasonal naive forecast (one
    step when the series is shorter than two seasons); 1 for a constant series."""
    m = season if len(y) > season else 1
    if len(y) <= m:
        return 1.0
    scale = float(np.mean(np.abs(y[m:] - y[:-m])))
    return scale if scale > 0 else 1.0


def build(
    family: str,
    season: int,
    frequency: str,
    horizon: int,
    strategy: str,
    known: list[str],
    unknown: list[str],
    seed: int,
) -> Model:
    """An unfitted model of ``family``."""
    if family == "seasonal_naive":
        return SeasonalNaive(season)
    if family == "ets":
        return ETS(season)
    if family == "lightgbm":
        return LightGBM(season, frequency, horizon, strategy, known, unknown, seed)
    raise ValueError(f"Unknown forecasting family {family!r}")


def restore(state: dict[str, Any]) -> Model:
    """A fitted model from its :meth:`Model.state`."""
    family = state["family"]
    if family == "seasonal_naive":
        return SeasonalNaive(int(state["season"]))
    if family == "ets":
        return ETS(int(state["season"]), state["fitted"], bool(state.get("refit", False)))
    if family == "lightgbm":
        import lightgbm as lgb

        return LightGBM(
            int(state["season"]),
            state["frequency"],
            int(state["horizon"]),
            state["strategy"],
            list(state["known"]),
            list(state["unknown"]),
            int(state["seed"]),
            [int(lag) for lag in state["lags"]],
            {str(k): int(v) for k, v in state["codes"].items()},
            {str(k): float(v) for k, v in state["scales"].items()},
            lgb.Booster(model_str=state["booster"]),
        )
    raise ValueError(f"Unknown forecasting family {family!r}")
