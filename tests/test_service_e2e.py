"""Rendered services on real data: install, pass their own tests, train, beat the baseline, serve.

One service per task kind, each with a different model family, all installed into the one
shared ``service_venv``. These are the slow, meaningful end-to-end tests of the template.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import realdata
from conftest import Venv, render, running_server

pytestmark = pytest.mark.e2e

HIGHER_IS_BETTER = {"roc_auc", "pr_auc", "f1", "accuracy", "balanced_accuracy", "f1_macro",
                    "roc_auc_ovr", "r2"}


@dataclass(frozen=True)
class Case:
    name: str
    task: str
    target: str
    family: str
    load: Any


CASES = [
    Case("credit", "binary_classification", "card", "lightgbm", realdata.credit_card),
    Case("penguins", "multiclass_classification", "species", "random_forest", realdata.penguins),
    Case("diabetes", "regression", "progression", "linear", realdata.diabetes),
]


@dataclass(frozen=True)
class Service:
    root: Path
    package: str
    case: Case
    frame: pd.DataFrame


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def trained(request: pytest.FixtureRequest, service_venv: Venv,
            tmp_path_factory: pytest.TempPathFactory) -> Service:
    case: Case = request.param
    frame = case.load()
    base = tmp_path_factory.mktemp(case.name)
    data = realdata.write_csv(frame, base / "data" / f"{case.name}.csv")
    package = f"{case.name}_service"
    root = render(base / f"{case.name}-service", {
        "project_name": f"{case.name}-service", "package_name": package, "task": case.task,
        "target": case.target, "data_path": str(data), "model_family": case.family,
    })
    service_venv.install_service(root)
    service_venv.run(str(service_venv.python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                     cwd=root, timeout=1200)
    service_venv.run(str(service_venv.python), "-m", package, "train", cwd=root, timeout=900)
    return Service(root, package, case, frame)


def _metadata(service: Service) -> dict:
    return json.loads((service.root / "artifacts" / "champion" / "metadata.json").read_text())


def test_trained_model_beats_its_dummy_baseline_on_the_test_split(trained: Service) -> None:
    meta = _metadata(trained)
    metric = meta["primary_metric"]
    model, baseline = meta["metrics"][metric], meta["baseline_metrics"][metric]
    assert math.isfinite(model) and math.isfinite(baseline)
    if metric in HIGHER_IS_BETTER:
        assert model > baseline, f"{metric}: model {model} vs baseline {baseline}"
    else:
        assert model < baseline, f"{metric}: model {model} vs baseline {baseline}"
    assert meta["task"] == trained.case.task
    assert meta["model_version"]


def _call(url: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read().decode(), err.code
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw


def _records(service: Service, n: int) -> list[dict]:
    features = [f["name"] for f in _metadata(service)["features"]]
    rows = service.frame.sample(n, random_state=0)[features]
    return json.loads(rows.to_json(orient="records"))


def test_served_service_answers_predict_batch_ready_and_metrics(trained: Service,
                                                               service_venv: Venv) -> None:
    with running_server(service_venv, trained.root, trained.package) as url:
        status, ready = _call(f"{url}/ready")
        assert status == 200, ready

        record = _records(trained, 1)[0]
        status, single = _call(f"{url}/predict", record)
        assert status == 200, single
        assert single["request_id"] and single["model_version"]
        if trained.case.task == "regression":
            assert math.isfinite(float(single["prediction"]))
        else:
            classes = {str(c) for c in trained.frame[trained.case.target].dropna().unique()}
            assert str(single["prediction"]) in classes
            assert abs(sum(single["probabilities"].values()) - 1) < 1e-6

        batch = _records(trained, 60)
        status, many = _call(f"{url}/predict/batch", {"records": batch})
        assert status == 200, many
        assert len(many["predictions"]) == 60

        status, bad = _call(f"{url}/predict", {**record, "no_such_feature": 1})
        assert status == 422 and "no_such_feature" in json.dumps(bad)

        status, meta = _call(f"{url}/metadata")
        assert status == 200 and meta["model_version"] == _metadata(trained)["model_version"]

        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as resp:
            metrics = resp.read().decode()
        assert 'http_requests_total{' in metrics and 'route="/predict"' in metrics
        assert "model_feature_drift{" in metrics, "drift gauges after 61 predicted rows"
        assert "model_info{" in metrics


def test_schemathesis_finds_no_server_error_or_schema_violation(service_venv: Venv,
                                                                trained: Service) -> None:
    if trained.case.name != "penguins":
        pytest.skip("fuzzed once, on the service with categorical enums and missing values")
    with running_server(service_venv, trained.root, trained.package) as url:
        proc = service_venv.run(
            str(service_venv.bin / "schemathesis"), "run", f"{url}/openapi.json",
            "--checks", "all", "--max-examples", "40", "--seed", "1",
            "--exclude-checks", "positive_data_acceptance",
            cwd=trained.root, timeout=900, check=False,
        )
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
