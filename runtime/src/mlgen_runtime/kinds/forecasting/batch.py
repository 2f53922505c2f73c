"""*Batch* forecasts: ``python -m <package> forecast-all --out forecasts.csv`` writes the
champion's forecast for every series it has a history for, one row per (series, step), for jobs
that precompute forecasts (planning sheets, dashboards) instead of asking the API. Known-future
covariates come from a file (``--future``: rows of time[, series] and the covariates)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import Config
from ...data import load_data
from ...errors import DataValidationError, UsageError
from ...fallback import CHAMPION_DIR, fallback_dir
from ..command import Command
from .data import SINGLE, section, series_key, times_of
from .forecaster import Forecaster, load_forecaster


def forecast_all(
    forecaster: Forecaster, horizon: int, future: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Columns series, step (1 = next), time, mean, lower, upper; series in stored order."""
    known = [
        c["name"] for c in forecaster.metadata.get("covariates") or [] if c.get("known_future")
    ]
    frames = []
    for key in forecaster.histories:
        values = _future_values(forecaster, key, horizon, known, future)
        made = forecaster.forecast(key, horizon, None, values)
        frames.append(
            pd.DataFrame(
                {
                    "series": key,
                    "step": np.arange(1, horizon + 1),
                    "time": made.times,
                    "mean": made.mean,
                    "lower": made.lower,
                    "upper": made.upper,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _future_values(
    forecaster: Forecaster, key: str, horizon: int, known: list[str], future: pd.DataFrame | None
) -> dict[str, np.ndarray]:
    if not known or forecaster.family != "lightgbm":
        return {}
    if future is None:
        raise UsageError(
            f"The model reads the known-future covariates {', '.join(known)}: give their future "
            "values with --future FILE (columns time[, series] and the covariates)."
        )
    times = pd.date_range(
        forecaster.histories[key].times[-1], periods=horizon + 1, freq=forecaster.frequency
    )[1:]
    rows = future[future["_series"] == key].set_index("_time").reindex(times)
    missing = [name for name in known if rows[name].isna().any()]
    if missing:
        raise DataValidationError(
            f"--future lacks values of {', '.join(missing)} for series {key or '(single)'} at "
            f"some of {times[0]} .. {times[-1]}."
        )
    return {name: rows[name].to_numpy(dtype="float64") for name in known}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the CSV (or .parquet) file to write")
    parser.add_argument("--horizon", type=int, help="steps ahead (default: forecasting.horizon)")
    parser.add_argument("--future", help="future values of known-future covariates (CSV/Parquet)")


def _run(config: Config, args: argparse.Namespace) -> int:
    fc = section(config)
    forecaster = load_forecaster(fallback_dir(config, CHAMPION_DIR))
    horizon = args.horizon or fc.horizon
    if not 1 <= horizon <= forecaster.max_horizon:
        raise UsageError(f"--horizon must be from 1 to {forecaster.max_horizon}, not {horizon}.")
    future = None
    if args.future:
        future = load_data(config.resolve(args.future))
        future["_time"] = times_of(future[fc.time_column], fc.time_column)
        future["_series"] = (
            future[fc.series_column].map(series_key) if fc.series_column else SINGLE
        )
    table = forecast_all(forecaster, horizon, future)
    table = table.rename(columns={"series": fc.series_column or "series", "time": fc.time_column})
    if not fc.series_column:
        table = table.drop(columns="series")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        table.to_parquet(out, index=False)
    else:
        table.to_csv(out, index=False)
    print(
        f"Wrote {len(table)} forecasts ({horizon} steps for {len(forecaster.histories)} series) "
        f"of {forecaster.metadata.get('model_name', 'model')} "
        f"v{forecaster.metadata.get('model_version', '?')} to {out}"
    )
    return 0


COMMAND = Command(
    name="forecast-all",
    help="write the champion's forecasts of every series to a file",
    arguments=_arguments,
    run=_run,
)
