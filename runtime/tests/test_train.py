"""End to end: train -> register -> gate -> export; reproducibility; fallback; tuning; CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlgen_runtime.bundle import load_bundle_dir
from mlgen_runtime.cli import main
from mlgen_runtime.config import FeatureSpec
from mlgen_runtime.data import (
    file_hash,
    load_data,
    split,
)
from mlgen_runtime.evaluate import evaluate_champion
from mlgen_runtime.features import resolve_features
from mlgen_runtime.model import build_estimator
from mlgen_runtime.registry import (
    champion_dir,
    load_champion,
    load_registered,
    promote,
)
from mlgen_runtime.scoring import is_better, predict
from mlgen_runtime.train import (
    build_pipeline,
    summary,
    train,
)
from mlgen_runtime.transforms import TransformSpec
from mlgen_runtime.tuning import tune
from service_fixture import SERVICE_ROOT, islr_default_config, isolated_config

METADATA_KEYS = {
    "model_name",
    "model_version",
    "run_id",
    "task",
    "target",
    "classes",
    "features",
    "derived_features",
    "metrics",
    "baseline_metrics",
    "primary_metric",
    "seed",
    "data_hash",
    "git_commit",
    "trained_at",
}


def aliases(config) -> dict[str, str]:
    client = MlflowClient(tracking_uri=config.tracking_uri)
    name = config.tracking.registered_model
    return {
        alias: str(client.get_model_version_by_alias(name, alias).version)
        for alias in ("champion", "challenger")
    }


def test_first_model_beats_its_baseline_and_becomes_champion(trained_service):
    result, config = trained_service.result, trained_service.config
    primary = config.metric.primary
    assert is_better(primary, result.metrics[primary], result.baseline_metrics[primary])
    assert result.decision.promote
    assert aliases(config) == {"champion": result.version, "challenger": result.version}
    assert trained_service.bundle.source == "registry"
    assert trained_service.bundle.model_version == result.version


def test_the_run_records_what_reproduces_it(trained_service, sample_data):
    result, config = trained_service.result, trained_service.config
    client = MlflowClient(tracking_uri=config.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["data_hash"] == file_hash(sample_data)
    assert run.data.params["seed"] == str(config.seed)
    assert (
        run.data.metrics[f"test_{config.metric.primary}"] == result.metrics[config.metric.primary]
    )
    artifacts = {Path(item.path).name for item in client.list_artifacts(result.run_id)}
    assert {"metadata.json", "reference_profile.json", "plots"} <= artifacts
    plots = {Path(item.path).name for item in client.list_artifacts(result.run_id, "plots")}
    task_plot = "residuals.png" if config.task == "regression" else "confusion_matrix.png"
    assert {"permutation_importance.png", task_plot} <= plots
    assert METADATA_KEYS <= set(trained_service.bundle.metadata)


def test_the_champion_is_exported_with_its_model_card(trained_service, sample_data):
    config, bundle = trained_service.config, trained_service.bundle
    exported = load_bundle_dir(champion_dir(config))
    assert exported.metadata == bundle.metadata
    assert exported.reference == bundle.reference
    x = load_data(sample_data)[[f["name"] for f in bundle.features]].head(50)
    np.testing.assert_array_equal(exported.pipeline.predict(x), bundle.pipeline.predict(x))
    card = config.resolve(config.paths.model_card).read_text()
    assert f"version {bundle.model_version}" in card
    assert config.metric.primary in card


def test_evaluate_scores_the_champion_exactly_as_training_did(trained_service):
    report = evaluate_champion(trained_service.config)
    assert report["metrics"] == trained_service.result.metrics
    reports = trained_service.config.resolve(trained_service.config.paths.reports)
    assert (reports / "evaluation" / "evaluation.json").is_file()


def test_an_unreachable_registry_falls_back_to_the_exported_bundle(trained_service, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    bundle = load_champion(trained_service.config)
    assert bundle.source == "file"
    assert bundle.model_version == trained_service.result.version


@pytest.fixture(scope="module")
def second_store(tmp_path_factory, sample_data):
    """The same training again, from scratch, in a store of its own."""
    config = isolated_config(
        tmp_path_factory.mktemp("second"),
        {"data": {"path": str(sample_data)}, "tuning": {"trials": 0}},
    )
    return config, train(config)


def test_same_seed_and_data_give_the_same_metrics_bit_for_bit(trained_service, second_store):
    _, again = second_store
    first = trained_service.result
    assert again.metrics == first.metrics
    assert again.baseline_metrics == first.baseline_metrics
    assert again.metadata["features"] == first.metadata["features"]


def test_the_gate_keeps_a_worse_model_as_challenger_until_forced(
    second_store, sample_data, tmp_path
):
    config, champion = second_store
    noisy = load_data(sample_data)
    noisy["pure_noise"] = np.random.default_rng(0).normal(size=len(noisy))
    noisy.to_csv(tmp_path / "noisy.csv", index=False)
    # Only the noise column: the service's transforms (if any) read features it no longer has.
    worse_config = config.model_copy(
        update={"features": [FeatureSpec(name="pure_noise")], "transforms": TransformSpec()}
    )

    worse = train(worse_config, data_path=tmp_path / "noisy.csv")
    assert not worse.decision.promote
    assert aliases(config) == {"champion": champion.version, "challenger": worse.version}
    assert load_registered(config, "challenger").model_version == worse.version
    assert load_registered(config, champion.version).model_version == champion.version

    assert not promote(config, worse.version).promote
    forced = promote(config, worse.version, reason="testing the override", force=True)
    assert forced.promote and "testing the override" in forced.reason
    assert aliases(config)["champion"] == worse.version
    assert load_bundle_dir(champion_dir(config)).model_version == worse.version


def tuning_inputs(config, data):
    """A pipeline factory of the service's features (no derived ones), and the training
    split's features and target, as train() hands them to tune()."""
    splits = split(load_data(data), config)
    features = resolve_features(splits.train, config)

    def make(params):
        return build_pipeline(config, features, [], params)

    x = splits.train[[feature["name"] for feature in features]]
    return make, x, splits.train[config.data.target]


def test_tuning_is_seeded(trained_service, sample_data):
    config = trained_service.config
    make, x, y = tuning_inputs(config, sample_data)
    first = tune(make, x, y, config, trials=3)
    assert first.trials == 3 and np.isfinite(first.cv_score)
    assert tune(make, x, y, config, trials=3) == first


@pytest.mark.parametrize("metric", ["pr_auc", "f1"])
def test_tuning_scores_text_labels_with_threshold_metrics(trained_service, sample_data, metric):
    config = trained_service.config
    if config.task != "binary_classification":
        pytest.skip("positive-class metrics exist for binary tasks only")
    config = config.model_copy(
        update={"metric": config.metric.model_copy(update={"primary": metric})}
    )
    splits = split(load_data(sample_data), config)
    features = resolve_features(splits.train, config)
    x = splits.train[[f["name"] for f in features]]
    # Labels such as "No"/"Yes": scikit-learn's named scorers would look for the label 1.
    y = "class_" + splits.train[config.data.target].astype(str)

    result = tune(
        lambda params: build_pipeline(config, features, [], params), x, y, config, trials=2
    )
    assert result.trials == 2 and np.isfinite(result.cv_score)


def test_cli_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    assert main(["--root", str(SERVICE_ROOT), "train", "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    assert main(["--root", str(tmp_path), "evaluate"]) == 2
    assert "No configs/config.yaml" in capsys.readouterr().err


def test_a_target_the_features_cannot_predict_fails_train_with_a_clear_message(tmp_path, capsys):
    """The service's own data with its target shuffled: no model can beat a constant there.
    `train` says so and exits 1; nothing becomes the champion."""
    config = isolated_config(tmp_path / "service", {"tuning": {"trials": 0}})
    frame = load_data(config.resolve(config.data.path))
    target = config.data.target
    rng = np.random.default_rng(7)
    frame[target] = rng.permutation(frame[target].to_numpy())
    shuffled = tmp_path / "shuffled.csv"
    frame.to_csv(shuffled, index=False)

    assert main(["--root", str(config.root), "train", "--data", str(shuffled)]) == 1
    out = capsys.readouterr().out
    primary = config.metric.primary
    assert "kept as challenger" in out and "Dummy baseline" in out
    assert f"does not beat a constant prediction on {primary}" in out
    assert not champion_dir(config).exists()
    with pytest.raises(Exception, match="no version with alias 'champion'"):
        load_registered(config, "champion")


def test_family_auto_cross_validates_each_candidate_and_trains_the_best(tmp_path, sample_data):
    overrides = {
        "data": {"path": str(sample_data)},
        # Two families keep it quick; the choice is among whatever model.candidates lists.
        "model": {"family": "auto", "params": {}, "candidates": ["linear", "lightgbm"]},
        "tuning": {"trials": 0, "time_budget_seconds": None},
    }
    config = isolated_config(tmp_path / "auto", overrides)
    result = train(config)
    board = result.metadata["leaderboard"]
    assert sorted(row["family"] for row in board) == sorted(config.model.candidates)
    chosen = board[0]
    assert chosen["chosen"] and not any(row["chosen"] for row in board[1:])
    assert all(row["cv_mean"] <= chosen["cv_mean"] for row in board)
    # The rest of training is the chosen family's: the model, the metadata, the fast path.
    assert result.metadata["model_family"] == chosen["family"]
    assert result.metadata["serving"]["path"] in ("onnx", "compiled", "sklearn")
    # Training with family auto is training the chosen family, whatever the others scored.
    fixed = train(config.with_family(chosen["family"]), promote=False)
    assert fixed.metrics == result.metrics
    # Each candidate is a child run of the training run, with its score.
    client = MlflowClient(tracking_uri=config.tracking_uri)
    children = client.search_runs(
        [client.get_run(result.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'",
    )
    primary = config.metric.primary
    logged = {run.data.params["family"]: run.data.metrics[f"cv_{primary}"] for run in children}
    assert logged == {row["family"]: row["cv_mean"] for row in board}
    assert "Model selection (model.family auto)" in summary(result)
    # Same seed and data: the same choice and the same scores, bit for bit.
    again = train(config, promote=False)
    assert again.metadata["leaderboard"] == [
        {**row, "fit_seconds": again_row["fit_seconds"]}
        for row, again_row in zip(board, again.metadata["leaderboard"], strict=True)
    ]
    assert again.metrics == result.metrics


def test_a_spent_time_budget_skips_the_candidates_left_and_says_so(tmp_path, sample_data):
    overrides = {
        "data": {"path": str(sample_data)},
        "model": {"family": "auto", "params": {}},
        "tuning": {"trials": 0, "time_budget_seconds": 1e-6},
    }
    config = isolated_config(tmp_path / "spent", overrides)
    result = train(config)
    first, *rest = result.metadata["leaderboard"]
    # The first (cheapest) candidate is always scored; the budget was gone after it.
    assert first["family"] == config.model.candidates[0] and first["chosen"]
    assert rest and all(row["cv_mean"] is None and not row["chosen"] for row in rest)
    assert "skipped (time budget spent)" in summary(result)


def test_a_budget_without_a_trial_count_searches_from_the_familys_defaults(sample_data, tmp_path):
    from mlgen_runtime.tuning import Budget, warm_start

    config = isolated_config(
        tmp_path / "budget",
        {"data": {"path": str(sample_data)}, "tuning": {"trials": 0, "time_budget_seconds": 3}},
    )
    make, x, y = tuning_inputs(config, sample_data)
    searched = tune(make, x, y, config, budget=Budget(3))
    assert searched.trials >= 1 and searched.cv_score is not None
    # An explicit --trials 0 still means the defaults, budget or not.
    assert tune(make, x, y, config, trials=0, budget=Budget(3)).trials == 0
    # The search starts at the family's defaults: it never ends below them.
    defaults = tune(make, x, y, config, trials=1)
    assert defaults.params == warm_start(config.model.family, config.task)
    assert searched.cv_score >= defaults.cv_score


def test_the_model_is_refitted_on_training_and_validation_rows(trained_service, sample_data):
    """Selection and tuning score by cross-validation on the training split; the model a
    service serves then learns from the validation rows too (never from the test rows)."""
    config, result = trained_service.config, trained_service.result
    splits = split(load_data(sample_data), config)
    meta = result.metadata
    names = [feature["name"] for feature in meta["features"]]
    target = config.data.target

    def fitted(*parts):
        rows = pd.concat(parts)
        pipeline = build_pipeline(config, meta["features"], meta["derived_features"])
        return pipeline.fit(rows[names], rows[target])

    x_test = splits.test[names]
    served = predict(result.pipeline, x_test, splits.test[target], config.task)
    both = predict(fitted(splits.train, splits.validation), x_test, splits.test[target],
                   config.task)
    train_only = predict(fitted(splits.train), x_test, splits.test[target], config.task)
    def said(prediction):  # a classifier's probabilities, a regressor's values
        return prediction.proba if prediction.proba is not None else prediction.predicted

    np.testing.assert_array_equal(said(served), said(both))
    assert not np.array_equal(said(served), said(train_only))
    assert f"on {len(splits.train) + len(splits.validation)} rows" in summary(result)


@pytest.mark.parametrize(
    ("family", "setting", "value"),
    [("hist_gradient_boosting", "loss", "absolute_error"), ("lightgbm", "objective", "l1")],
)
def test_a_model_scored_by_mae_is_trained_on_absolute_error(family, setting, value):
    """MAE asks for the median: boosted trees fitted to squared error chase a skewed tail."""
    assert build_estimator("regression", family, 0, metric="mae").get_params()[setting] == value
    assert build_estimator("regression", family, 0, metric="rmse").get_params()[setting] != value
    # The user's own model.params still win.
    overridden = build_estimator("regression", family, 0, params={setting: "quantile"},
                                 metric="mae")
    assert overridden.get_params()[setting] == "quantile"


class FakeClock:
    """Seconds that pass only when a test says so; the process gets half of a CPU."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def cpu(self) -> float:
        return self.now / 2


def test_the_reserve_for_the_steps_after_the_search_scales_with_the_measured_slowdown():
    from mlgen_runtime.budget import Budget

    clock = FakeClock(30.0)
    # 30 s since the process started, 15 s of CPU: the machine runs 2x slower than its CPU.
    budget = Budget(60, started=0.0, clock=clock, cpu_clock=clock.cpu)
    budget.tail_cpu, budget.model_tail = 8.0, 3.0
    assert budget.slowdown() == 2.0 and budget.tail() == 19.0
    assert budget.left() == 60 - 30 - 19
    assert budget.fits(11.0, "a fold") and not budget.fits(11.5, "another fold")
    # A model slower to refit than the chosen one would take more of the tail.
    assert not budget.fits(11.0, "a slow family's fold", model_part=4.0)
    assert [d["skipped"] for d in budget.decisions] == ["another fold", "a slow family's fold"]
    assert budget.decisions[0] == {
        "skipped": "another fold", "at_s": 30.0, "estimate_s": 11.5, "left_s": 11.0,
    }
    assert Budget(None).left() is None and Budget(None).fits(1e9, "anything")


def test_the_budget_counts_from_the_start_of_the_process():
    """A user waits for the interpreter and the imports too."""
    code = (
        "import time; time.sleep(1.0)\n"
        "from mlgen_runtime.budget import process_started\n"
        "print(time.monotonic() - process_started())"
    )
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout)
    assert 1.0 <= age < 600


def test_selection_stops_scheduling_a_fold_its_estimate_says_would_overrun(
    tmp_path, islr_default_csv
):
    """A 38 s budget on 10,000 rows (ISLR Default) on a machine where, by the clock, a fold of
    the linear model takes 2 s and one of extra trees 6 s: each family gets its first fold
    before any gets a second, LightGBM, estimated from those at 60 s a fold, is never
    started, and the search ends in time for the steps after it."""
    from mlgen_runtime.budget import Budget
    from mlgen_runtime.tuning import select_family

    config = islr_default_config(tmp_path, islr_default_csv)
    candidates = ["linear", "extra_trees", "lightgbm"]
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"candidates": candidates})}
    )
    splits = split(load_data(islr_default_csv), config)
    features = resolve_features(splits.train, config)
    x, y = splits.train[[f["name"] for f in features]], splits.train[config.data.target]
    clock = FakeClock(1.0)
    fold_seconds = {"linear": 2.0, "extra_trees": 6.0}
    started: list[str] = []

    def pipeline_of(family):
        started.append(family)
        clock.now += fold_seconds[family]  # the fold's time, as the budget's clock sees it
        return build_pipeline(config.with_family(family), features, [])

    budget = Budget(38, started=0.0, clock=clock, cpu_clock=clock.cpu)
    # 5 CPU seconds after the search (10 s at this slowdown); the refit costs what the fold's
    # fit did (the tail predicts nothing here).
    budget.tail_cpu, budget.refit_rows, budget.tail_rows = 5.0, 1, 0
    family, board = select_family(pipeline_of, x, y, config, budget=budget)

    assert started == ["linear", "extra_trees", "linear", "extra_trees", "linear"]
    assert budget.decisions == [
        # 9 s in: LightGBM's estimate is 30x the linear model's fold, and its refit would take
        # as long: 38 - 9 - (10 + 60) s left.
        {"skipped": "lightgbm fold 1", "at_s": 9.0, "estimate_s": 60.0, "left_s": 0.0},
        # 19 s in: 38 - 19 - (10 + 6) = 3 s left for a 6 s fold.
        {"skipped": "extra_trees fold 3", "at_s": 19.0, "estimate_s": 6.0, "left_s": 3.0},
    ]
    folds = {candidate.family: candidate.folds for candidate in board}
    assert folds == {"linear": 3, "extra_trees": 2, "lightgbm": 0}
    assert family == board[0].family and board[-1].cv_mean is None
    # The promise: the search ended with the tail's time still in the budget.
    assert budget.elapsed() + budget.tail() <= 38
