"""*Scoring*: what a model said about some rows (:class:`Prediction`), and the task's metrics.

Each metric has a direction (:func:`higher_is_better`), by which the promotion gate (registry.py)
compares models, and is computed on many bootstrap resamples at once for its confidence
interval (:func:`score`). Training and the ``evaluate`` command score with it; evaluate.py adds
the plots and feature importances.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

BOOTSTRAP_CELLS = 2_000_000  # resampled rows held in memory at once, at most


@dataclass(frozen=True)
class Prediction:
    """What a model said about some rows: labels (or values) and class probabilities."""

    y_true: np.ndarray
    predicted: np.ndarray
    # A classifier's probabilities (a column per class) and its classes; None for regression.
    proba: np.ndarray | None = None
    classes: list[Any] | None = None

    @property
    def probabilities(self) -> np.ndarray:
        """``proba``, for metrics that only a classifier's prediction has."""
        if self.proba is None:
            raise ValueError("A regression prediction has no class probabilities.")
        return self.proba

    @property
    def labels(self) -> list[Any]:
        """``classes``, for metrics that only a classifier's prediction has."""
        if self.classes is None:
            raise ValueError("A regression prediction has no classes.")
        return self.classes

    @cached_property
    def true_codes(self) -> np.ndarray:
        """Each true label's position in ``classes`` (-1 for a label the model never saw)."""
        lookup = {label: code for code, label in enumerate(self.labels)}
        if len(self.y_true) == 0:
            return np.array([])
        # Looked up once per distinct label, not per row (a million rows in investigate).
        rows, distinct = pd.factorize(np.asarray(self.y_true), use_na_sentinel=False)
        return np.array([lookup.get(label, -1) for label in distinct.tolist()])[rows]

    @cached_property
    def predicted_codes(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

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
    codes = range(len(p.labels))
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
    proba = p.probabilities
    chosen = np.where(known, proba[np.arange(len(known)), np.maximum(p.true_codes, 0)], 0.0)
    eps = np.finfo(proba.dtype).eps
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
        (BINARY,), True, "roc_auc", lambda p, r: _auc(p.positive[r], p.probabilities[:, 1][r])
    ),
    "pr_auc": Metric(
        (BINARY,),
        True,
        "average_precision",
        lambda p, r: _average_precision(p.positive[r], p.probabilities[:, 1][r]),
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
            [_auc(p.true_codes[r] == c, p.probabilities[:, c][r]) for c in range(len(p.labels))],
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
