"""*Training*: data -> features -> (tuned) model -> evaluation -> MLflow run -> promotion gate.

One call of :func:`train` is one tracked, reproducible experiment: the same seed and data give
the same metrics bit for bit.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import mlflow.sklearn
import pandas as pd
from sklearn.pipeline import Pipeline

from .budget import DRIFT_CPU_SECONDS_PER_NUMERIC, TAIL_CPU_SECONDS, Budget, describe
from .bundle import Bundle
from .compare import Comparison, chance_test, compare_predictions
from .config import Config
from .data import Splits, data_rows, file_hash, load_training_data, split, validate
from .errors import ConfigError
from .evaluate import importance_rows, write_plots
from .fairness import fairness_report
from .fallback import export_baseline
from .features import (
    build_preprocessor,
    custom_features_module,
    derive_features,
    known_categories,
    resolve_features,
    spec_dicts,
    transform_features,
)
from .model import build_baseline, build_estimator
from .monitoring.drift import build_reference
from .registry import (
    Decision,
    RegisteredRun,
    apply_promotion,
    champion_version,
    decide,
    git_commit,
    log_candidate,
    setup,
)
from .scoring import METRICS, Prediction, metrics_for, predict, score
from .serving.fastpath import export_check
from .serving.schemas import request_example
from .tuning import Candidate, select_family, tune

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult(RegisteredRun):
    """What one training run produced and decided."""

    pipeline: Pipeline
    metadata: dict[str, Any]
    decision: Decision
    # The paired test against the champion on this run's test split (None: no champion, or
    # its model could not be loaded).
    comparison: Comparison | None = None
    # The paired test of the model against its Dummy baseline on the test split.
    baseline_comparison: Comparison | None = None


def train(
    config: Config,
    data_path: str | Path | None = None,
    trials: int | None = None,
    promote: bool = True,
    started: float | None = None,
) -> TrainResult:
    """Train, evaluate, log and register a model; promote it if it passes the gate.

    With ``promote=False`` the gate's decision is returned but not applied (a caller with
    further checks, such as retraining, applies it). ``started``: when the wait for this run
    began, on the ``time.monotonic()`` clock (the CLI passes its process's start); the time
    budget counts from there (default: now).
    """
    primary = config.metric.primary
    if primary not in metrics_for(config.task):
        raise ConfigError(
            f"metric.primary {primary!r} does not fit task {config.task}: use one of "
            f"{', '.join(metrics_for(config.task))}."
        )
    # The budget counts from the process's start: imports and loading the data are part of
    # the wait for training.
    budget = Budget(config.tuning.time_budget_seconds, started)
    budget.phase("start-up")
    path = config.resolve(data_path or config.data.path)
    df = load_training_data(config, path)
    validate(df, config)
    splits = split(df, config)
    target = config.data.target
    # What the steps after the search will do: profile each numeric feature for drift, refit
    # on train + validation, predict the test split, the permutation importance's copies and
    # (sklearn and ONNX) the validation rows.
    columns = resolve_features(splits.train, config)
    numeric = sum(column.get("type", "numeric") == "numeric" for column in columns)
    budget.tail_cpu = TAIL_CPU_SECONDS + DRIFT_CPU_SECONDS_PER_NUMERIC * numeric
    budget.refit_rows = len(splits.train) + len(splits.validation)
    budget.tail_rows = len(splits.test) + importance_rows(len(splits.test), len(columns))
    budget.tail_rows += 2 * len(splits.validation)
    budget.phase("data")

    groups = splits.train[config.data.group_column] if config.split.strategy == "group" else None
    leaderboard: list[Candidate] = []
    if config.model.family == "auto":
        # Cross-validated choice among the candidate families; the rest of training (and the
        # metadata, the model card, the fast path) sees the chosen family.
        names = [column["name"] for column in columns]
        family, leaderboard = select_family(
            lambda family: _prepared(config.with_family(family), splits, df)[2]({}),
            splits.train[names],
            splits.train[target],
            config,
            groups=groups,
            budget=budget,
        )
        config = config.with_family(family)
        budget.phase("selection")

    features, derived, make_pipeline = _prepared(config, splits, df)
    names = [feature["name"] for feature in features]
    x_train, y_train = splits.train[names], splits.train[target]
    tuned = tune(make_pipeline, x_train, y_train, config, groups, trials, budget)
    budget.phase("tuning")
    # Selection and tuning scored candidates by cross-validation on the training split; the
    # chosen model is then refitted on training + validation rows (the test split stays
    # held out for the metrics and the promotion gate): a fifth more data, never seen by the
    # test. The validation rows remain the serving parity check's sample.
    fitted = pd.concat([splits.train, splits.validation])
    x_fit, y_fit = fitted[names], fitted[target]
    pipeline = make_pipeline(tuned.params).fit(x_fit, y_fit)
    baseline = build_baseline(config.task).fit(x_fit, y_fit)
    budget.phase("final fit")

    x_test, y_test = splits.test[names], splits.test[target]
    samples = config.metric.bootstrap_samples
    prediction = predict(pipeline, x_test, y_test, config.task)
    metrics = score(prediction, config.task, samples, config.seed)
    baseline_prediction = predict(baseline, x_test, y_test, config.task)
    baseline_metrics = score(baseline_prediction, config.task, samples, config.seed)
    # Does the model beat a constant at all, beyond the noise of this test split?
    against_baseline = compare_predictions(
        primary,
        baseline_prediction,
        prediction,
        paired=True,
        alpha=config.promotion.alpha,
        versions=("baseline", "new"),
        samples=config.promotion.bootstrap_samples,
        seed=config.seed,
    )
    # ... and beyond chance: a constant is not the strongest know-nothing model on every metric
    # (on macro-F1 or F1, guessing classes at random beats it). Both tests must reject, so
    # the evidence carries the larger p-value (an intersection-union test, still level alpha).
    chance = chance_test(primary, prediction, seed=config.seed)
    against_baseline = replace(
        against_baseline,
        test=(
            f"{against_baseline.test} against the Dummy (p={against_baseline.p_value:.3g}) and "
            f"a {chance.permutations}-shuffle label permutation test against chance "
            f"(p={chance.p_value:.3g}, chance level {chance.null_mean:.4f}); the larger p"
        ),
        p_value=max(against_baseline.p_value, chance.p_value),
    )
    budget.phase("evaluation")

    setup(config)
    current = champion_version(config)

    metadata: dict[str, Any] = {
        "model_name": config.tracking.registered_model,
        "task": config.task,
        "target": target,
        # "> 0": the target is yes/no, derived from the column's numbers (targets.py).
        "positive_when": config.data.positive_when,
        "classes": _plain_list(prediction.classes),
        "features": features,
        # The data's other columns (target, ids, excluded): a request may carry them.
        "ignored_columns": [str(c) for c in df.columns if c not in names],
        # A real training row, the example request of the API's documentation.
        "example": request_example(splits.train, features),
        "derived_features": derived,
        "transforms": config.transforms.model_dump(mode="json"),
        "metrics": metrics,
        "baseline_metrics": baseline_metrics,
        "baseline_test": {"test": against_baseline.test, "p_value": against_baseline.p_value},
        "chance_test": {"level": chance.null_mean, "p_value": chance.p_value,
                        "permutations": chance.permutations},
        "primary_metric": primary,
        # Readers outside the service (mlgen verify) compare with the baseline by this.
        "higher_is_better": METRICS[primary].higher_is_better,
        "model_family": config.model.family,
        # model.family auto: each candidate's cross-validated score (best first).
        "leaderboard": [candidate.as_dict() for candidate in leaderboard],
        # Optuna trials run (the warm start counts as one; 0: the family's defaults).
        "tuning_trials": tuned.trials,
        "params": {key: str(value) for key, value in pipeline[-1].get_params().items()},
        "seed": config.seed,
        "data_path": str(path),
        "data_hash": file_hash(path),
        # Rows of the data (all partitions); `rows` below counts those used (data.max_rows).
        "data_rows": data_rows(path) or len(df),
        # The model was fitted on train + validation (see above).
        "rows": {part: len(getattr(splits, part)) for part in ("train", "validation", "test")},
        "git_commit": git_commit(config.root),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if config.fairness.sensitive_attributes:
        # Per-group metrics of the test split (the model card's fairness section).
        metadata["fairness"] = fairness_report(
            splits.test, prediction, config.fairness.sensitive_attributes, config.task
        )
    # Which fast serving path (compiled encoder + ONNX or native model) matches the pipeline.
    metadata["serving"] = export_check(Bundle(pipeline, metadata, {}), splits.validation)
    budget.phase("parity check")
    logged_metrics = {
        **{f"test_{name}": value for name, value in metrics.items()},
        **{f"baseline_{name}": value for name, value in baseline_metrics.items()},
        "baseline_test_p_value": against_baseline.p_value,
    }
    onnx_error = (metadata["serving"].get("onnx") or {}).get("max_error")
    if onnx_error is not None:
        logged_metrics["serving_onnx_max_error"] = onnx_error
    if tuned.cv_score is not None:
        logged_metrics[f"cv_{primary}"] = tuned.cv_score
    for candidate in leaderboard:
        if candidate.cv_mean is not None:
            logged_metrics[f"selection_cv_{primary}_{candidate.family}"] = candidate.cv_mean
    params = {
        "family": config.model.family,
        "class_weight": config.model.class_weight,
        "seed": config.seed,
        "split_strategy": config.split.strategy,
        "n_features": len(features),
        "n_derived_features": len(derived),
        "tuning_trials": tuned.trials,
        "serving_path": metadata["serving"]["path"],
        **{f"model.{key}": value for key, value in metadata["params"].items()},
    }
    # Drift watches the transforms' columns too, computed from the raw rows it is given.
    transforms = pipeline.named_steps.get("transforms")
    reference = build_reference(
        splits.train,
        [*features, *(f for f in derived if "transform" in f)],
        seed=config.seed,
        transforms=None if transforms is None else transforms.fitted_spec(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_plots(pipeline, x_test, y_test, prediction, config, Path(tmp))
        budget.phase("plots")
        # Where the time went, up to logging (the result carries the whole run's).
        metadata["time"] = budget.report()
        metadata = log_candidate(
            config,
            pipeline,
            x_train.head(5),
            metadata,
            reference,
            params,
            logged_metrics,
            Path(tmp),
        )
    budget.phase("logging")

    champion_score, comparison = _against_champion(
        current, prediction, splits, config, metadata["model_version"]
    )
    decision = decide(
        primary,
        metrics[primary],
        baseline_metrics[primary],
        champion_score,
        f"v{current.version}" if current is not None else "",
        config.promotion,
        comparison,
        against_baseline,
    )
    if promote and decision.promote:
        apply_promotion(config, metadata["model_version"], decision.reason)
        # The champion's own Dummy baseline: the last-resort fallback of serving.
        export_baseline(config, baseline, metadata, reference)
    budget.phase("promotion")
    metadata = {**metadata, "time": budget.report()}
    return TrainResult(pipeline, metadata, decision, comparison, against_baseline)


def _prepared(
    config: Config, splits: Splits, data: pd.DataFrame
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Callable[..., Pipeline]]:
    """The features, derived features and pipeline factory of ``config``'s model family.

    Types, ranges and categories come from the training rows; the API also takes the
    categories of every other row of the data file (``data``).
    """
    features = known_categories(resolve_features(splits.train, config), data)
    x_train = splits.train[[feature["name"] for feature in features]]
    custom = derive_features(x_train, features, config)
    derived = [*custom, *transform_features(x_train, features, custom, config)]
    return features, derived, partial(build_pipeline, config, features, derived)


def build_pipeline(
    config: Config,
    features: list[dict[str, Any]],
    derived: list[dict[str, Any]],
    params: dict[str, Any] | None = None,
) -> Pipeline:
    """The unfitted preprocessing + model Pipeline; ``params`` override the config's."""
    pipeline = build_preprocessor(
        features,
        derived,
        config.model.family,
        config.seed,
        custom_features_module(config),
        spec_dicts(config.transforms),
    )
    estimator = build_estimator(
        config.task,
        config.model.family,
        config.seed,
        config.model.class_weight,
        {**config.model.params, **(params or {})},
        metric=config.metric.primary,
    )
    pipeline.steps.append(("model", estimator))
    return pipeline


def summary(result: TrainResult) -> str:
    """A few lines for the terminal: model vs baseline on the test split, and the verdict."""
    meta = result.metadata
    primary = meta["primary_metric"]
    lines = [
        f"Trained {meta['model_name']} v{meta['model_version']} ({meta['model_family']}, "
        f"run {meta['run_id']}) on {meta['rows']['train'] + meta['rows']['validation']} "
        "rows (training + validation splits); "
        f"test split {meta['rows']['test']} rows.",
        f"{'metric':<20}{'model':>10}{'95% CI':>22}{'baseline':>10}",
    ]
    for name in metrics_for(meta["task"]):
        marker = " *" if name == primary else ""
        ci = f"[{result.metrics[f'{name}_ci_low']:.4f}, {result.metrics[f'{name}_ci_high']:.4f}]"
        lines.append(
            f"{name + marker:<20}{result.metrics[name]:>10.4f}{ci:>22}"
            f"{result.baseline_metrics[name]:>10.4f}"
        )
    board = meta.get("leaderboard") or []
    if board:
        lines.append(
            f"Model selection (model.family auto), {primary} by cross-validation on the "
            "training split, defaults of each family:"
        )
        for row in board:
            score = (
                "skipped (time budget spent)"
                if row["cv_mean"] is None
                else f"{row['cv_mean']:.4f} +- {row['cv_sd']:.4f}, fit {row['fit_seconds']:.2f} s"
                f", {row['folds']} fold{'s' if row['folds'] > 1 else ''}"
            )
            lines.append(f"  {row['family']:<24}{score}{'  <- chosen' if row['chosen'] else ''}")
    if "time" in meta:
        lines.append(describe(meta["time"]))
    if result.comparison is not None:
        lines.append(result.comparison.summary())
    verdict = "promoted to champion" if result.decision.promote else "kept as challenger"
    lines.append(f"{verdict}: {result.decision.reason}")
    if not result.decision.beats_baseline:
        lines.append(
            f"The model does not beat a constant prediction on {primary}, the primary metric. "
            "Check that the features can predict the target (and are known at prediction "
            "time), that the data has enough rows, and that metric.primary suits the "
            "problem; `train` exits 1 until a model beats its baseline."
        )
    return "\n".join(lines)


def holdout_comparison(config: Config, version: str) -> Comparison | None:
    """The paired test of the champion against ``version`` on the test split of the
    configured data, on the primary metric: the evidence of ``promote`` without a rollout.

    None, with a warning, when there is no champion or the data or a model cannot be read:
    the gate then compares the logged test metrics, and says that it did.
    """
    current = champion_version(config)
    if current is None or str(current.version) == str(version):
        return None
    try:
        df = load_training_data(config)
        validate(df, config)
        splits = split(df, config)
        model = mlflow.sklearn.load_model(f"models:/{config.tracking.registered_model}/{version}")
        x = splits.test.drop(columns=[config.data.target])
        prediction = predict(model, x, splits.test[config.data.target], config.task)
    except Exception as exc:  # the logged metrics remain a (weaker) comparison
        log.warning(
            "Could not score v%s on the test split of %s (%s); comparing logged metrics.",
            version,
            config.data.path,
            exc,
        )
        return None
    return _against_champion(current, prediction, splits, config, str(version))[1]


def _against_champion(
    current: Any | None, prediction: Prediction, splits: Splits, config: Config, version: str
) -> tuple[float | None, Comparison | None]:
    """The champion's primary metric on this run's test split, and the paired test of the new
    model's ``prediction`` against it on those rows (None, None without a champion).

    Re-scoring keeps the gate fair when the data changed since the champion was trained; its
    logged metric, without a paired test, is the fallback when its model cannot be loaded.
    """
    if current is None:
        return None, None
    primary = config.metric.primary
    try:
        model = mlflow.sklearn.load_model(
            f"models:/{config.tracking.registered_model}/{current.version}"
        )
        x = splits.test.drop(columns=[config.data.target])
        champion = predict(model, x, splits.test[config.data.target], config.task)
    except Exception as exc:  # the champion's logged score is still a valid comparison
        log.warning(
            "Could not re-score champion v%s (%s); using its logged metric.", current.version, exc
        )
        logged = mlflow.MlflowClient().get_run(current.run_id).data.metrics
        return logged.get(f"test_{primary}"), None
    comparison = compare_predictions(
        primary,
        champion,
        prediction,
        paired=True,
        alpha=config.promotion.alpha,
        versions=(str(current.version), version),
        samples=config.promotion.bootstrap_samples,
        seed=config.seed,
    )
    return comparison.champion_value, comparison


def _plain_list(values: list[Any] | None) -> list[Any] | None:
    if values is None:
        return None
    return [value.item() if hasattr(value, "item") else value for value in values]
