"""*Evaluation*: task metrics with bootstrap confidence intervals, and diagnostic plots.

Used by training (model and baseline on the test split) and on its own by the ``evaluate``
command, which scores the current champion on the configured data's test split.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import rankdata  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.calibration import CalibrationDisplay  # noqa: E402

from .config import Config  # noqa: E402

# Permutation importance re-predicts the sample once per feature and repeat: keep it bounded.
IMPORTANCE_ROWS = 1000
IMPORTANCE_REPEATS = 5
IMPORTANCE_CELLS = 300_000  # permuted rows predicted at once, at most
BOOTSTRAP_CELLS = 2_000_000  # resampled rows held in memory at once, at most


@dataclass(frozen=True)
class Prediction:
    """What a model said about some rows: labels (or values) and class probabilities."""

    y_true: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray | None = None
    classes: list[Any] | None = None

    @cached_property
    def true_codes(self) -> np.ndarray:
        """Each true label's position in ``classes`` (-1 for a label the model never saw)."""
        lookup = {label: code for code, label in enumerate(self.classes)}
        return np.array([lookup.get(label, -1) for label in self.y_true.tolist()])

    @cached_property
    def predicted_codes(self) -> np.ndarray:
        return self.proba.argmax(axis=1)

    @cached_property
    def positive(self) -> np.ndarray:
        return self.true_codes == 1


# A metric maps a prediction and an index matrix (one resample of rows per line) to one value
# per line: the point estimate is the identity resample, the bootstrap is many at once.
MetricFn = Callable[[Prediction, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Metric:
    tasks: tuple[str, ...]
    higher_is_better: bool
    scorer: str  # the scikit-learn scoring name, for cross-validation
    compute: MetricFn

    def value(self, prediction: Prediction) -> float:
        """The metric on all rows of ``prediction``."""
        return float(self.compute(prediction, np.arange(len(prediction.y_true))[None, :])[0])


def _class_counts(p: Prediction, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per resample and class: true positives, true count, predicted count."""
    true, predicted = p.true_codes[rows], p.predicted_codes[rows]
    codes = range(len(p.classes))
    hits = np.stack([((true == c) & (predicted == c)).sum(axis=1) for c in codes], axis=1)
    actual = np.stack([(true == c).sum(axis=1) for c in codes], axis=1)
    said = np.stack([(predicted == c).sum(axis=1) for c in codes], axis=1)
    return hits, actual, said


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(
        numerator, denominator, out=np.full(denominator.shape, np.nan), where=denominator > 0
    )


def _f1_per_class(p: Prediction, rows: np.ndarray) -> np.ndarray:
    hits, actual, said = _class_counts(p, rows)
    return _ratio(2.0 * hits, (actual + said).astype(float))


def _balanced_accuracy(p: Prediction, rows: np.ndarray) -> np.ndarray:
    hits, actual, _ = _class_counts(p, rows)
    return np.nanmean(_ratio(hits.astype(float), actual.astype(float)), axis=1)


def row_log_loss(p: Prediction) -> np.ndarray:
    """Each row's log loss: minus the log of the probability given to its true class."""
    known = p.true_codes >= 0
    chosen = np.where(known, p.proba[np.arange(len(known)), np.maximum(p.true_codes, 0)], 0.0)
    eps = np.finfo(p.proba.dtype).eps
    return -np.log(np.clip(chosen, eps, 1 - eps))


def _log_loss(p: Prediction, rows: np.ndarray) -> np.ndarray:
    return row_log_loss(p)[rows].mean(axis=1)


def _auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC per line as the Mann-Whitney statistic (ties count one half)."""
    ranks = rankdata(scores, axis=1)
    n_pos = labels.sum(axis=1).astype(float)
    n_neg = labels.shape[1] - n_pos
    rank_sum = (ranks * labels).sum(axis=1)
    return _ratio(rank_sum - n_pos * (n_pos + 1) / 2, n_pos * n_neg)


def _average_precision(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision per line: precision at each distinct threshold, weighted by recall."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=1)
    hits = np.take_along_axis(labels, order, axis=1).astype(float)
    n = scores.shape[1]
    precision = np.cumsum(hits, axis=1) / np.arange(1, n + 1)
    # Tied scores form one threshold: every row of a tie takes the precision at its end.
    group_end = np.ones(ordered.shape, dtype=bool)
    group_end[:, :-1] = ordered[:, :-1] != ordered[:, 1:]
    ends = np.where(group_end, np.arange(n), n)[:, ::-1]
    ends = np.minimum.accumulate(ends, axis=1)[:, ::-1]
    at_end = np.take_along_axis(precision, ends, axis=1)
    return _ratio((hits * at_end).sum(axis=1), hits.sum(axis=1))


def _residuals(p: Prediction, rows: np.ndarray) -> np.ndarray:
    return (p.y_true - p.predicted)[rows]


def _r2(p: Prediction, rows: np.ndarray) -> np.ndarray:
    truth = p.y_true[rows]
    spread = ((truth - truth.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    return 1 - _ratio((_residuals(p, rows) ** 2).sum(axis=1), spread)


BINARY, MULTI, REGRESSION = "binary_classification", "multiclass_classification", "regression"
CLASSIFICATION = (BINARY, MULTI)
METRICS: dict[str, Metric] = {
    "roc_auc": Metric(
        (BINARY,), True, "roc_auc", lambda p, r: _auc(p.positive[r], p.proba[:, 1][r])
    ),
    "pr_auc": Metric(
        (BINARY,),
        True,
        "average_precision",
        lambda p, r: _average_precision(p.positive[r], p.proba[:, 1][r]),
    ),
    "f1": Metric(
        (BINARY,), True, "f1", lambda p, r: np.nan_to_num(_f1_per_class(p, r)[:, 1], nan=0.0)
    ),
    "f1_macro": Metric(
        (MULTI,), True, "f1_macro", lambda p, r: np.nanmean(_f1_per_class(p, r), axis=1)
    ),
    "log_loss": Metric(CLASSIFICATION, False, "neg_log_loss", _log_loss),
    "accuracy": Metric(
        CLASSIFICATION,
        True,
        "accuracy",
        lambda p, r: (p.true_codes[r] == p.predicted_codes[r]).mean(axis=1),
    ),
    "balanced_accuracy": Metric(CLASSIFICATION, True, "balanced_accuracy", _balanced_accuracy),
    "roc_auc_ovr": Metric(
        (MULTI,),
        True,
        "roc_auc_ovr",
        lambda p, r: np.mean(
            [_auc(p.true_codes[r] == c, p.proba[:, c][r]) for c in range(len(p.classes))],
            axis=0,
        ),
    ),
    "rmse": Metric(
        (REGRESSION,),
        False,
        "neg_root_mean_squared_error",
        lambda p, r: np.sqrt((_residuals(p, r) ** 2).mean(axis=1)),
    ),
    "mae": Metric(
        (REGRESSION,),
        False,
        "neg_mean_absolute_error",
        lambda p, r: np.abs(_residuals(p, r)).mean(axis=1),
    ),
    "r2": Metric((REGRESSION,), True, "r2", _r2),
}


def metrics_for(task: str) -> list[str]:
    """The metric names reported for ``task``, in a stable order."""
    return [name for name, metric in METRICS.items() if task in metric.tasks]


def higher_is_better(metric: str) -> bool:
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}: use one of {', '.join(METRICS)}.")
    return METRICS[metric].higher_is_better


def is_better(metric: str, candidate: float, reference: float) -> bool:
    """Whether ``candidate`` is strictly better than ``reference`` on ``metric``."""
    return candidate > reference if higher_is_better(metric) else candidate < reference


def predict(model: Any, x: pd.DataFrame, y: pd.Series, task: str) -> Prediction:
    """Run ``model`` (a Pipeline or a baseline) on ``x`` and pair the output with ``y``."""
    if task == REGRESSION:
        return Prediction(y.to_numpy(dtype=float), np.asarray(model.predict(x), dtype=float))
    proba = model.predict_proba(x)
    classes = np.asarray(model.classes_)
    return Prediction(y.to_numpy(), classes[proba.argmax(axis=1)], proba, classes.tolist())


def score(prediction: Prediction, task: str, samples: int, seed: int) -> dict[str, float]:
    """Every metric of ``task``, each with a seeded bootstrap 95% CI (``<m>_ci_low/high``).

    A resample can miss a class entirely; such draws have no value and are left out.
    """
    n = len(prediction.y_true)
    draws = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    # Resamples are scored in blocks to bound memory on large test splits.
    block = max(1, BOOTSTRAP_CELLS // n)
    result: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in metrics_for(task):
            metric = METRICS[name]
            values = np.concatenate(
                [metric.compute(prediction, draws[i : i + block]) for i in range(0, samples, block)]
                or [np.array([])]
            )
            values = values[~np.isnan(values)]
            low, high = np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)
            result[name] = metric.value(prediction)
            result[f"{name}_ci_low"] = float(low)
            result[f"{name}_ci_high"] = float(high)
    return result


def write_plots(
    model: Any,
    x: pd.DataFrame,
    y: pd.Series,
    prediction: Prediction,
    config: Config,
    out_dir: Path,
) -> dict[str, float]:
    """Save the task's diagnostic plots to ``out_dir``; returns permutation importances."""
    out_dir.mkdir(parents=True, exist_ok=True)
    p = prediction
    if config.task == BINARY:
        positive = p.positive
        _save(
            out_dir / "roc_curve.png",
            lambda ax: skm.RocCurveDisplay.from_predictions(positive, p.proba[:, 1], ax=ax),
        )
        _save(
            out_dir / "pr_curve.png",
            lambda ax: skm.PrecisionRecallDisplay.from_predictions(positive, p.proba[:, 1], ax=ax),
        )
        _save(
            out_dir / "calibration.png",
            lambda ax: CalibrationDisplay.from_predictions(
                positive, p.proba[:, 1], n_bins=10, strategy="quantile", ax=ax
            ),
        )
    if config.task == REGRESSION:
        _save(
            out_dir / "residuals.png",
            lambda ax: skm.PredictionErrorDisplay.from_predictions(
                p.y_true, p.predicted, kind="residual_vs_predicted", ax=ax
            ),
        )
        _save(
            out_dir / "predicted_vs_actual.png",
            lambda ax: skm.PredictionErrorDisplay.from_predictions(
                p.y_true, p.predicted, kind="actual_vs_predicted", ax=ax
            ),
        )
    else:
        labels = [str(label) for label in p.classes]
        _save(
            out_dir / "confusion_matrix.png",
            lambda ax: skm.ConfusionMatrixDisplay(
                skm.confusion_matrix(p.y_true, p.predicted, labels=p.classes), display_labels=labels
            ).plot(ax=ax, colorbar=False),
        )
    importances = feature_importance(model, x, y, config)
    ordered = sorted(importances.items(), key=lambda item: item[1])[-20:]

    def bars(ax: plt.Axes) -> None:
        ax.barh([name for name, _ in ordered], [value for _, value in ordered])
        ax.set_xlabel(f"drop in {config.metric.primary} when shuffled")

    _save(out_dir / "permutation_importance.png", bars)
    (out_dir / "permutation_importance.json").write_text(json.dumps(importances, indent=2))
    return importances


def feature_importance(model: Any, x: pd.DataFrame, y: pd.Series, config: Config) -> dict:
    """Permutation importance of each raw feature: the primary metric's loss when shuffled.

    All shuffled copies of a bounded, seeded sample are predicted in one call: per-call
    overhead, not rows, dominates the cost of tree ensembles.
    """
    copies = len(x.columns) * IMPORTANCE_REPEATS
    size = max(50, min(IMPORTANCE_ROWS, len(x), IMPORTANCE_CELLS // copies))
    picked = x.sample(n=min(size, len(x)), random_state=config.seed).index
    sample, truth = x.loc[picked].reset_index(drop=True), y.loc[picked].reset_index(drop=True)
    metric = METRICS[config.metric.primary]
    baseline = metric.value(predict(model, sample, truth, config.task))
    rng = np.random.default_rng(config.seed)
    shuffled = []
    for column in x.columns:
        for _ in range(IMPORTANCE_REPEATS):
            copy = sample.copy()
            copy[column] = sample[column].to_numpy()[rng.permutation(len(sample))]
            shuffled.append(copy)
    prediction = predict(
        model,
        pd.concat(shuffled, ignore_index=True),
        pd.concat([truth] * copies, ignore_index=True),
        config.task,
    )
    rows = np.arange(copies * len(sample)).reshape(copies, len(sample))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = metric.compute(prediction, rows).reshape(len(x.columns), IMPORTANCE_REPEATS)
    sign = 1.0 if metric.higher_is_better else -1.0
    drops = sign * (baseline - np.nanmean(scores, axis=1))
    return {str(name): float(drop) for name, drop in zip(x.columns, drops, strict=True)}


def _save(path: Path, draw: Callable[[plt.Axes], Any]) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    try:
        draw(ax)
        ax.set_title(path.stem.replace("_", " "))
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def evaluate_champion(config: Config, data_path: str | Path | None = None) -> dict[str, Any]:
    """Score the registered champion on the test split of the configured data.

    Writes ``<reports>/evaluation/`` (metrics JSON and plots) and returns the metrics.
    """
    # Imported here: training imports this module, and the registry imports it for the gate.
    from .data import load_data, split, validate
    from .registry import load_champion

    bundle = load_champion(config)
    path = config.resolve(data_path or config.data.path)
    df = load_data(path)
    validate(df, config)
    test = split(df, config).test
    names = [feature["name"] for feature in bundle.features]
    x, y = test[names], test[config.data.target]
    prediction = predict(bundle.pipeline, x, y, config.task)
    metrics = score(prediction, config.task, config.metric.bootstrap_samples, config.seed)
    out_dir = config.resolve(config.paths.reports) / "evaluation"
    write_plots(bundle.pipeline, x, y, prediction, config, out_dir)
    report = {
        "model_name": bundle.model_name,
        "model_version": bundle.model_version,
        "source": bundle.source,
        "data": str(path),
        "rows": len(test),
        "metrics": metrics,
        "baseline_metrics": bundle.metadata.get("baseline_metrics", {}),
    }
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2, default=str))
    return report
