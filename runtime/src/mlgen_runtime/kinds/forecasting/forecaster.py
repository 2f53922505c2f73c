"""The *forecaster*: a trained model with what serving needs around it (each series' recent
history and error scale, the conformal interval widths per step), saved as JSON and numpy
arrays only, and loaded from a bundle folder (bundle.py's layout)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...bundle import METADATA_FILE, MODEL_DIR, load_metadata
from ...errors import RequestError
from .data import Series, future_times
from .models import ETS_WINDOW, LightGBM, Model, Prepared, restore

STATE_FILE = "model.json"
HISTORY_FILE = "histories.npz"


@dataclass(frozen=True)
class Forecast:
    times: pd.DatetimeIndex
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


class Forecaster:
    """A fitted model, the recent history of each training series, their error scales and the
    conformal quantiles (in scale units) per step ahead."""

    def __init__(
        self,
        model: Model,
        histories: dict[str, Series],
        scales: dict[str, float],
        quantiles: np.ndarray,
        level: float,
        frequency: str,
        metadata: dict[str, Any],
    ) -> None:
        self.model = model
        self.histories = histories
        self.scales = scales
        self.quantiles = np.asarray(quantiles, dtype="float64")
        self.level = level
        self.frequency = frequency
        self.metadata = metadata
        self.covariates = list(next(iter(histories.values())).covariates) if histories else []
        # Stored series' forecasts prepared up to their future covariates (direct LightGBM),
        # made on a series' first forecast: a request then costs the model's predict alone.
        self.prepared: dict[str, tuple[pd.DatetimeIndex, Prepared]] = {}
        # Turns a prepared series into a faster one with the same answers (serving installs
        # fastpath.Tables); not saved.
        self.tabulate: Callable[[Prepared], Prepared] | None = None

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def max_horizon(self) -> int:
        return len(self.quantiles)

    def knows(self, series_id: str) -> bool:
        return series_id in self.histories

    def forecast(
        self,
        series_id: str,
        horizon: int,
        history: Series | None = None,
        future: dict[str, np.ndarray] | None = None,
    ) -> Forecast:
        """``horizon`` steps after ``history`` (default: the series' training history)."""
        if not 1 <= horizon <= self.max_horizon:
            raise RequestError(f"horizon must be from 1 to {self.max_horizon}, not {horizon}")
        series = history if history is not None else self.histories.get(series_id)
        if series is None:
            raise RequestError(f"unknown series {series_id!r}: send its history")
        if len(series) < self.model.min_history():
            raise RequestError(
                f"the history has {len(series)} steps; the {self.family} model needs at least "
                f"{self.model.min_history()}"
            )
        model = self.model
        if history is None and isinstance(model, LightGBM) and model.strategy == "direct":
            if series_id not in self.prepared:
                prepared = model.prepare(series, self.max_horizon)
                self.prepared[series_id] = (
                    future_times(series, self.frequency, self.max_horizon),
                    prepared if self.tabulate is None else self.tabulate(prepared),
                )
            times, prepared = self.prepared[series_id]
            if horizon < len(times):
                times = times[:horizon]
            mean = prepared.forecast(future or {}, horizon)
        else:
            times = future_times(series, self.frequency, horizon)
            mean = model.forecast([series], horizon, [future or {}])[0]
        scale = self.scales.get(series_id) or self.metadata_scale(series)
        width = self.quantiles[:horizon] * scale
        return Forecast(times, mean, mean - width, mean + width)

    def metadata_scale(self, series: Series) -> float:
        from .models import error_scale

        return error_scale(series.y, int(self.metadata["season_length"]))


def keep_steps(model: Model, season: int) -> int:
    """How much of each series the bundle keeps: what the model reads, and two seasons for the
    seasonality monitor."""
    reach = ETS_WINDOW if model.family == "ets" else model.min_history()
    return max(reach, 2 * season, 1)


def save_forecaster(forecaster: Forecaster, folder: Path) -> None:
    """The model folder of a bundle: the model's JSON state, histories as numpy arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "model": forecaster.model.state(),
        "scales": forecaster.scales,
        "quantiles": forecaster.quantiles.tolist(),
        "level": forecaster.level,
        "frequency": forecaster.frequency,
        "series": list(forecaster.histories),
        "covariates": forecaster.covariates,
    }
    (folder / STATE_FILE).write_text(json.dumps(state))
    arrays: dict[str, np.ndarray] = {}
    for index, series in enumerate(forecaster.histories.values()):
        arrays[f"{index}.times"] = series.times.asi8
        arrays[f"{index}.y"] = series.y
        for name, values in series.covariates.items():
            arrays[f"{index}.cov.{name}"] = values
    np.savez(folder / HISTORY_FILE, **arrays)  # type: ignore[arg-type]


def load_forecaster(directory: Path) -> Forecaster:
    """The forecaster of a bundle folder (JSON and ``allow_pickle=False`` arrays only)."""
    directory = Path(directory)
    model_dir = directory / MODEL_DIR
    if not (model_dir / STATE_FILE).is_file() or not (directory / METADATA_FILE).is_file():
        raise FileNotFoundError(
            f"No forecaster in {directory} (missing {MODEL_DIR}/{STATE_FILE} or "
            f"{METADATA_FILE}). Run `make train` to train and export a champion."
        )
    state = json.loads((model_dir / STATE_FILE).read_text())
    histories: dict[str, Series] = {}
    with np.load(model_dir / HISTORY_FILE, allow_pickle=False) as arrays:
        for index, key in enumerate(state["series"]):
            covariates = {
                name: arrays[f"{index}.cov.{name}"] for name in state["covariates"]
            }
            histories[key] = Series(
                key,
                pd.DatetimeIndex(arrays[f"{index}.times"].astype("datetime64[ns]")),
                arrays[f"{index}.y"],
                covariates,
            )
    return Forecaster(
        restore(state["model"]),
        histories,
        {str(k): float(v) for k, v in state["scales"].items()},
        np.asarray(state["quantiles"]),
        float(state["level"]),
        state["frequency"],
        load_metadata(directory),
    )
