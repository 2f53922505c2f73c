"""Metrics agree with scikit-learn, intervals are seeded, and the gate compares correctly."""

from __future__ import annotations

import numpy as np
import pytest
from mlgen_runtime.registry import decide
from mlgen_runtime.scoring import (
    METRICS,
    Prediction,
    higher_is_better,
    score,
)
from sklearn import metrics as skm


def classification(classes: int, seed: int = 0) -> Prediction:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=300)
    # Rounded probabilities create ties, the hard case for rank-based metrics.
    proba = np.round(rng.dirichlet(np.ones(classes), size=300) + 0.3 * np.eye(classes)[y], 1)
    proba = proba / proba.sum(axis=1, keepdims=True)
    labels = list(range(classes))
    return Prediction(y, np.array(labels)[proba.argmax(axis=1)], proba, labels)


def test_binary_metrics_match_scikit_learn():
    p = classification(2)
    expected = {
        "roc_auc": skm.roc_auc_score(p.y_true, p.proba[:, 1]),
        "pr_auc": skm.average_precision_score(p.y_true, p.proba[:, 1]),
        "f1": skm.f1_score(p.y_true, p.predicted),
        "log_loss": skm.log_loss(p.y_true, p.proba),
        "accuracy": skm.accuracy_score(p.y_true, p.predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(p.y_true, p.predicted),
    }
    assert {name: METRICS[name].value(p) for name in expected} == pytest.approx(expected, abs=1e-12)


def test_multiclass_metrics_match_scikit_learn():
    p = classification(4)
    expected = {
        "f1_macro": skm.f1_score(p.y_true, p.predicted, average="macro"),
        "roc_auc_ovr": skm.roc_auc_score(p.y_true, p.proba, multi_class="ovr"),
        "log_loss": skm.log_loss(p.y_true, p.proba),
        "balanced_accuracy": skm.balanced_accuracy_score(p.y_true, p.predicted),
    }
    assert {name: METRICS[name].value(p) for name in expected} == pytest.approx(expected, abs=1e-12)


def test_regression_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    p = Prediction(y, y + rng.normal(scale=0.5, size=200))
    expected = {
        "rmse": skm.root_mean_squared_error(p.y_true, p.predicted),
        "mae": skm.mean_absolute_error(p.y_true, p.predicted),
        "r2": skm.r2_score(p.y_true, p.predicted),
    }
    assert {name: METRICS[name].value(p) for name in expected} == pytest.approx(expected, abs=1e-12)


def test_bootstrap_intervals_are_seeded_and_contain_the_estimate():
    p = classification(2)
    first = score(p, "binary_classification", samples=200, seed=7)
    assert first == score(p, "binary_classification", samples=200, seed=7)
    assert first != score(p, "binary_classification", samples=200, seed=8)
    assert first["roc_auc_ci_low"] < first["roc_auc"] < first["roc_auc_ci_high"]


def test_direction_of_each_metric():
    assert higher_is_better("roc_auc") and higher_is_better("r2")
    assert not higher_is_better("rmse") and not higher_is_better("log_loss")
    with pytest.raises(ValueError, match="Unknown metric 'auc'"):
        higher_is_better("auc")


def test_gate_needs_the_baseline_beaten_then_the_champion():
    assert decide("roc_auc", 0.9, 0.5, None, "").promote
    assert not decide("roc_auc", 0.5, 0.5, None, "").promote
    assert decide("rmse", 1.0, 2.0, 1.5, "v1").promote
    refused = decide("rmse", 1.5, 2.0, 1.5, "v1")
    assert not refused.promote and "does not beat champion v1" in refused.reason
