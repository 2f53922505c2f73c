"""The forecasting kind end to end, the two ways a user makes a service:

* plain ``copier copy`` of this repository choosing the forecasting kind, on the bundled sample
  (AirPassengers, monthly; the last year is the test window);
* ``mlgen new --brief examples/electricity/brief.md --verify --no-llm``: "forecast half-hourly
  demand for the next day" on six weeks of fpp2's elecdemand, planned offline (time column,
  target, known-future covariates, a horizon of 48), with verify serving it and calling it.

Each service is installed into the shared test venv; its own tests pass, it trains and beats
seasonal naive, it serves on 127.0.0.1 and real HTTP calls get forecasts with intervals, a 422
naming the field for a bad request, a joined feedback and the kind's metrics; ``forecast-all``
writes every series.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from support import (
    REPO,
    Venv,
    call,
    champion_metadata,
    copier_copy,
    mlgen_new,
    quickstart,
    running_server,
)

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Service:
    route: str
    root: Path
    package: str
    output: str


@pytest.fixture(scope="module", params=["copier", "mlgen-new"])
def service(request: pytest.FixtureRequest, service_venv: Venv,
            tmp_path_factory: pytest.TempPathFactory) -> Service:
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "copier":
        root = folder / "air-traffic"
        output = copier_copy(root, {"kind": "forecasting", "project_name": "air-traffic",
                                    "horizon": "12", "test_windows": "1"})
        output += quickstart(service_venv, root, "air_traffic")
        return Service(request.param, root, "air_traffic", output)
    root = folder / "day-ahead"
    output = mlgen_new(REPO / "examples" / "electricity" / "brief.md", root, service_venv)
    config = yaml.safe_load((root / "configs" / "config.yaml").read_text())
    return Service(request.param, root, config["project"]["package"], output)


def test_the_trained_forecaster_beats_seasonal_naive(service: Service) -> None:
    metadata = champion_metadata(service.root)
    assert metadata["kind"] == "forecasting" and metadata["primary_metric"] == "mase"
    assert metadata["metrics"]["mase"] < 1 < metadata["baseline_metrics"]["mase"] or (
        metadata["metrics"]["mase"] < metadata["baseline_metrics"]["mase"]
    ), metadata
    if service.route == "mlgen-new":
        config = yaml.safe_load((service.root / "configs" / "config.yaml").read_text())
        forecasting = config["forecasting"]
        assert (config["data"]["target"], forecasting["time_column"]) == ("demand", "time")
        assert forecasting["horizon"] == 48
        assert {c["name"]: c["known_future"] for c in forecasting["covariates"]} == {
            "workday": True, "temperature": True}
        summary, _ = json.JSONDecoder().raw_decode(service.output[service.output.index("{"):])
        calls = summary["verification"]["calls"]
        assert calls[0].startswith("POST /forecast: 200, 48 steps"), calls


def test_the_served_forecaster_answers_with_intervals_and_clear_errors(
    service: Service, service_venv: Venv
) -> None:
    metadata = champion_metadata(service.root)
    horizon = metadata["horizon"]
    body: dict[str, Any] = {"horizon": horizon}
    known = [c["name"] for c in metadata["covariates"] if c["known_future"]]
    if known and metadata["model_family"] == "lightgbm":
        body["future_covariates"] = {name: [1.0] * horizon for name in known}
    with running_server(service_venv, service.root, service.package) as url:
        status, answer = call(f"{url}/forecast", body)
        assert status == 200, answer
        points = answer["forecasts"]
        assert len(points) == horizon and all(p["lower"] <= p["mean"] <= p["upper"]
                                              for p in points)
        status, error = call(f"{url}/forecast", {**body, "horizon": 0})
        assert status == 422 and "horizon" in json.dumps(error)
        status, receipt = call(f"{url}/feedback", {"time": points[0]["time"],
                                                    "value": points[0]["mean"]})
        assert status == 200 and receipt["inside_interval"] is True, receipt
        status, exposition = call(f"{url}/metrics")
        assert 'model_forecasts_total{history="stored"' in exposition
        assert "model_forecast_residual_drift" in exposition


def test_forecast_all_writes_every_step(service: Service, service_venv: Venv,
                                         tmp_path: Path) -> None:
    metadata = champion_metadata(service.root)
    out = tmp_path / "forecasts.csv"
    command = [str(service_venv.python), "-m", service.package, "forecast-all", "--out", str(out)]
    if metadata["model_family"] == "lightgbm" and metadata["covariates"]:
        future = pd.DataFrame({
            metadata["time_column"]: pd.date_range(
                metadata["test_start"][""], periods=4000, freq=metadata["frequency"]),
            **{c["name"]: 1.0 for c in metadata["covariates"]},
        })
        future.to_csv(tmp_path / "future.csv", index=False)
        command += ["--future", str(tmp_path / "future.csv")]
    service_venv.run(*command, cwd=service.root)
    table = pd.read_csv(out)
    assert len(table) == metadata["horizon"] and {"mean", "lower", "upper"} <= set(table.columns)
