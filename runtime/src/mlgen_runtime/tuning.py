"""Hyper-parameter *tuning*: a seeded Optuna search scored by cross-validation on train.

With ``tuning.trials: 0`` nothing is searched and the family's defaults are used. The search
is reproducible for a given seed as long as it finishes all trials before
``tuning.timeout_seconds`` (the timeout is a safety net, not a budget).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, make_scorer
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedKFold,
    TimeSeriesSplit,
    cross_val_score,
)
from sklearn.pipeline import Pipeline

from .config import Config
from .scoring import METRICS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuningResult:
    params: dict[str, Any]
    cv_score: float | None
    trials: int


def search_space(trial: optuna.Trial, family: str, task: str) -> dict[str, Any]:
    """The parameters Optuna tries for one model family."""
    if family == "linear":
        if task == "regression":
            return {"alpha": trial.suggest_float("alpha", 1e-3, 1e3, log=True)}
        return {"C": trial.suggest_float("C", 1e-3, 1e2, log=True)}
    if family == "random_forest":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 100, 500, step=100),
            "max_depth": trial.suggest_int("max_depth", 3, 24),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 20, log=True),
            "max_features": trial.suggest_categorical("max_features", ["sqrt", 0.5, 1.0]),
        }
    if family == "hist_gradient_boosting":
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 128, log=True),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 100, log=True),
            "l2_regularization": trial.suggest_float("l2_regularization", 1e-6, 10.0, log=True),
        }
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 100, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "subsample_freq": 1,
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-6, 10.0, log=True),
    }


def tune(
    make_pipeline: Callable[[dict[str, Any]], Pipeline],
    x: pd.DataFrame,
    y: pd.Series,
    config: Config,
    groups: pd.Series | None = None,
    trials: int | None = None,
) -> TuningResult:
    """Search parameters for ``make_pipeline(params)``; returns the best (or none to tune)."""
    n_trials = config.tuning.trials if trials is None else trials
    if n_trials <= 0:
        return TuningResult(params={}, cv_score=None, trials=0)
    metric = METRICS[config.metric.primary]
    scoring = _scoring(metric.scorer, y, config.task)
    folds = _folds(config)

    def objective(trial: optuna.Trial) -> float:
        pipeline = make_pipeline(search_space(trial, config.model.family, config.task))
        # One job: parallel folds would finish in varying order and are no faster on 2 cores.
        scores = cross_val_score(
            pipeline, x, y, groups=groups, cv=folds, scoring=scoring, n_jobs=1
        )
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    study.optimize(objective, n_trials=n_trials, timeout=config.tuning.timeout_seconds)
    completed = len(study.trials)
    if completed < n_trials:
        log.warning(
            "Tuning stopped after %d of %d trials (tuning.timeout_seconds=%s); "
            "the result may differ between runs.",
            completed,
            n_trials,
            config.tuning.timeout_seconds,
        )
    params = {**study.best_params}
    if config.model.family == "lightgbm":
        params["subsample_freq"] = 1
    return TuningResult(params=params, cv_score=float(study.best_value), trials=completed)


def _scoring(name: str, y: pd.Series, task: str) -> Any:
    """The cross-validation scorer for a metric.

    scikit-learn's named f1 and average_precision scorers take the label 1 as the
    positive class and fail on labels such as "No"/"Yes". Like scoring.py, the positive class
    is the second of the sorted labels (an estimator's classes_[1]).
    """
    if task != "binary_classification" or name not in {"f1", "average_precision"}:
        return name
    positive = np.unique(y.dropna())[1]
    if name == "f1":
        return make_scorer(f1_score, pos_label=positive)
    return make_scorer(
        average_precision_score, response_method="predict_proba", pos_label=positive
    )


def _folds(config: Config) -> Any:
    n_splits, seed = config.tuning.cv_folds, config.seed
    if config.split.strategy == "time":
        return TimeSeriesSplit(n_splits=n_splits)
    if config.split.strategy == "group":
        return GroupKFold(n_splits=n_splits)
    if config.is_classification:
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return KFold(n_splits=n_splits, shuffle=True, random_state=seed)
