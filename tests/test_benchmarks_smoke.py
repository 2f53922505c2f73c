"""The benchmarks still run: each one at a tiny size (correctness only, never timings)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """A benchmark script as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_drift_benchmark_quick(tmp_path, capsys):
    drift = load_benchmark("drift")
    output = tmp_path / "drift.json"
    args = ["--trials", "6", "--null-trials", "6", "--splits", "1", "--speed-rows", "5000"]
    assert drift.main([*args, "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    cells = {(c["shift"], c["window"]): c for c in results["cells"]}
    assert set(cells) == {(s.name, n) for s in drift.SHIFTS for n in drift.WINDOWS}
    assert all(c["trials"] == 6 and 0.0 <= c["rate"] <= 1.0 for c in cells.values())
    # Shifts far beyond any noise at 1,000 rows: every trial must see them.
    assert cells[("new_category", 1000)]["rate"] == 1.0
    assert cells[("missing", 1000)]["rate"] == 1.0
    assert cells[("mean", 10_000)]["rate"] == 1.0
    assert all(len(c["by_split"]) == 1 for c in cells.values())
    assert set(results["goal"]["false_alarm_rates"]) == {str(n) for n in drift.WINDOWS}
    speed = results["speed"]
    assert speed["rows"] == 5000 and speed["columns"] == 20 and speed["observe_columns_ms"] > 0
    assert results["table"] in capsys.readouterr().out


def test_recommendation_serving_benchmark_tiny(tmp_path, capsys):
    bench = load_benchmark("recommendation_serving")
    output = tmp_path / "recommendation_serving.json"
    args = ["--tiny", "--output", str(output), "--work", str(tmp_path / "work")]
    assert bench.main(args) == 0
    result = json.loads(output.read_text())["result"]
    # Both servers recommended the same items to the same users, and nothing failed.
    assert result["agreement"] is True
    assert result["items"] == 9066
    runs = [*result["sequential"].values(), *result["concurrent"].values()]
    assert all(run["requests"] > 0 and run["errors"] == 0 for run in runs)
    assert set(result["ratios"]) == {"p50_vs_health", "throughput_vs_mlflow"}
    assert json.loads(output.read_text())["table"] in capsys.readouterr().out


def test_serving_benchmark_tiny(tmp_path, capsys, service_venv):
    serving = load_benchmark("serving")
    output, plot = tmp_path / "serving.json", tmp_path / "serving.png"
    args = ["--tiny", "--venv", str(service_venv.path), "--work", str(tmp_path / "work")]
    assert serving.main([*args, "--output", str(output), "--plot", str(plot)]) == 0
    results = json.loads(output.read_text())
    datasets = results["datasets"]
    assert {d["task"] for d in datasets} == {"binary_classification", "regression"}
    for data in datasets:
        # Both servers gave the same predictions, and the service served the fast path that
        # passed training's parity check (ONNX trees may miss it on a tiny model: compiled).
        assert data["agreement"] is True
        assert data["serving_path"] == data["export_check"]["path"]
        assert data["serving_path"] in ("onnx", "compiled")
        runs = [*data["sequential"].values(), *data["concurrent"].values(), data["batch"]]
        runs += [data["soak"]] if "soak" in data else []
        assert all(run["requests"] > 0 and run["errors"] == 0 for run in runs)
        assert set(data["ratios"]) == {
            "throughput_vs_mlflow", "p50_vs_health", "batch_vs_inprocess_sklearn",
            "batch_vs_inprocess_fast_path", "batch_columns_vs_inprocess_sklearn",
            "batch_columns_vs_inprocess_fast_path", "metrics_and_drift_cost",
        }
    assert "soak" in datasets[0] and datasets[0]["soak"]["rss_last_mb"] > 0
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert results["table"] in capsys.readouterr().out


def test_automl_benchmark_quick_mlgen_only(tmp_path, capsys, service_venv):
    """The mlgen side of the FLAML comparison on one small set: render, train the way a
    service does, score the held-out fold with the runtime's scorer (FLAML's venv is not in CI)."""
    automl = load_benchmark("automl")
    output, plot = tmp_path / "automl.json", tmp_path / "automl.png"
    args = ["--quick", "--no-flaml", "--datasets", "diabetes", "--venv", str(service_venv.path),
            "--work", str(tmp_path / "work")]
    assert automl.main([*args, "--output", str(output), "--plot", str(plot)]) == 0
    results = json.loads(output.read_text())
    assert results["failures"] == {} and results["folds"] == 1
    (data,) = results["datasets"]
    assert data["name"] == "diabetes" and data["metric"] == "rmse" and "ratio" not in data
    (fold,) = data["folds"]
    assert fold["train_rows"] + fold["test_rows"] == data["rows"]
    assert fold["mlgen"]["train_s"] > 0 and "flaml" not in fold
    # A real model on real data: far better than the target's spread (sd ~77).
    assert 30 < fold["mlgen"]["score"] < 70
    assert results["table"] in capsys.readouterr().out


def test_automl_ratio_orientation_and_folds():
    automl = load_benchmark("automl")
    assert automl.oriented_ratio("roc_auc", 0.9, 0.8) > 1
    assert automl.oriented_ratio("rmse", 10.0, 12.0) == 1.2  # lower error: mlgen better
    flights = next(d for d in automl.DATASETS if d.name == "flights_late")
    import pandas as pd

    frame = pd.DataFrame({"late": ["no", "yes"] * 30, "time_hour": range(60)})
    folds = automl.outer_folds(frame, flights, 3)
    # Rolling origin: every test block comes after all of its training rows.
    assert all(train.max() < test.min() for train, test in folds)
    assert [len(test) for _, test in folds] == [10, 10, 10]


def test_deploy_benchmark_tiny(tmp_path, capsys):
    """mlgen deploy's parity on 100 rows over HTTP (rendered, adopted and served by this
    Python, no venv install) and the TorchScript serving comparison at a few repeats."""
    deploy = load_benchmark("deploy")
    output = tmp_path / "deploy.json"
    args = ["--tiny", "--output", str(output), "--work", str(tmp_path / "work")]
    assert deploy.main(args) == 0
    result = json.loads(output.read_text())["result"]
    parity = result["parity"]
    assert parity["rows"] == 100 and parity["parity"] is True
    assert parity["rows_differing"]["batch"] == parity["rows_differing"]["single"] == 0
    assert parity["roc_auc"] > parity["baseline_roc_auc"]
    torch = result["torchscript"]
    assert torch["rows"] == 569 and torch["onnx_same_class_as_torch"] is True
    assert torch["onnx_vs_torch_max_abs_difference"] < 1e-5
    assert json.loads(output.read_text())["command"] in capsys.readouterr().out
