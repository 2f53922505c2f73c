"""Model *selection* and hyper-parameter *tuning*, scored by cross-validation on train.

``model.family: auto`` first cross-validates each candidate family with its defaults on the
same folds and keeps the best mean score on the primary metric (:func:`select_family`; the
leaderboard goes to the training report and to MLflow, a child run per candidate). Then a
seeded Optuna search tunes that family: ``tuning.trials`` trials, or with ``trials: 0`` and a
``tuning.time_budget_seconds``, as many as the budget leaves room for.

With ``tuning.trials: 0`` and no budget nothing is searched and the family's defaults are used.
Selection and search are reproducible for a given seed when they finish before the budget and
``tuning.timeout_seconds`` (the timeout is a safety net, not a budget).

*Shared and distributed tuning.* With ``tuning.storage`` (an Optuna RDB URL on PostgreSQL)
the search is one named study that several processes or machines join: each ``train`` adds
its trials, and the best parameters are the study's best. With ``engine.name: dask`` one
``train`` runs its trials as ``engine.workers`` searchers on the cluster, sharing that study.
Searcher ``i`` samples with seed ``seed + i`` ($MLSERVICE_TUNING_WORKER sets ``i`` for a
process started by hand), so no two repeat each other's path. What stays reproducible: every
trial's parameters and score are stored, and refitting with them gives the same model bit for
bit; one searcher alone repeats its path exactly. What cannot: with several searchers the
order in which trials finish, and so which parameters each sampler proposes next, depends on
timing; the study's best after N trials differs from run to run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
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
    cross_validate,
)
from sklearn.pipeline import Pipeline

from .config import Config
from .errors import ConfigError
from .model import build_estimator
from .scoring import METRICS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuningResult:
    params: dict[str, Any]
    cv_score: float | None
    trials: int


@dataclass(frozen=True)
class Candidate:
    """One family's cross-validated score with its default parameters."""

    family: str
    cv_mean: float | None  # None: skipped, the time budget was spent before its turn
    cv_sd: float | None
    fit_seconds: float  # mean fit time of one fold
    chosen: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# What of ``tuning.time_budget_seconds`` is kept for what follows the search (the final fit,
# evaluation with bootstrap intervals, plots, MLflow logging and registration, the serving
# parity check, the bundle export): this share of it, and at least this many seconds (measured:
# 10-20 s on a 2-core machine for small data), but never more than half of it.
AFTER_SEARCH_SHARE = 0.15
AFTER_SEARCH_SECONDS = 12.0


class Budget:
    """The seconds left of ``tuning.time_budget_seconds`` (unbounded without one) for model
    selection and tuning: the budget less what the steps after the search need."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = None if seconds is None else seconds - after_search(seconds)
        self.start = time.monotonic()

    def left(self) -> float | None:
        if self.seconds is None:
            return None
        return max(0.0, self.seconds - (time.monotonic() - self.start))

    def spent(self) -> bool:
        left = self.left()
        return left is not None and left <= 0


def after_search(seconds: float) -> float:
    """The seconds of a training budget kept for the steps after selection and tuning."""
    return min(max(AFTER_SEARCH_SHARE * seconds, AFTER_SEARCH_SECONDS), seconds / 2)


def select_family(
    pipeline_of: Callable[[str], Pipeline],
    x: pd.DataFrame,
    y: pd.Series,
    config: Config,
    groups: pd.Series | None = None,
    budget: Budget | None = None,
) -> tuple[str, list[Candidate]]:
    """The candidate family with the best mean cross-validated primary metric, and the
    leaderboard (best first; families the budget left no time for come last, unscored).

    ``pipeline_of(family)`` is the unfitted pipeline of ``family`` with its defaults (the
    preprocessing differs by family: linear models get scaled, one-hot columns).
    """
    budget = budget or Budget(None)
    scoring = _scoring(METRICS[config.metric.primary].scorer, y, config.task)
    folds = _folds(config)
    scored: list[Candidate] = []
    skipped: list[Candidate] = []
    cuts = list(folds.split(x, y, groups))
    for family in dict.fromkeys(config.model.candidates):
        scores, fit_times = [], []
        # Fold by fold, so that a slow family overruns the budget by one fit at most (the
        # first family is always scored: there must be a model).
        for cut in cuts:
            if scored and budget.spent():
                break
            result = cross_validate(
                pipeline_of(family), x, y, groups=groups, cv=[cut], scoring=scoring, n_jobs=1
            )
            scores.append(float(result["test_score"][0]))
            fit_times.append(float(result["fit_time"][0]))
        if len(scores) < len(cuts):
            skipped.append(Candidate(family, None, None, 0.0))
            continue
        scored.append(
            Candidate(
                family,
                float(np.mean(scores)),
                float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                float(np.mean(fit_times)),
            )
        )
    if skipped:
        log.warning(
            "Model selection: the time budget (tuning.time_budget_seconds=%s) ran out before "
            "%s; the choice depends on the machine's speed.",
            config.tuning.time_budget_seconds,
            ", ".join(c.family for c in skipped),
        )
    # Scorers are higher-is-better (losses negated); ties go to the earlier candidate.
    ranked = sorted(scored, key=_rank)
    best = ranked[0]
    board = [replace(best, chosen=True), *ranked[1:], *skipped]
    return best.family, board


def search_space(trial: optuna.Trial, family: str, task: str) -> dict[str, Any]:
    """The parameters Optuna tries for one model family."""
    if family == "linear":
        if task == "regression":
            return {"alpha": trial.suggest_float("alpha", 1e-3, 1e3, log=True)}
        return {"C": trial.suggest_float("C", 1e-3, 1e2, log=True)}
    if family in ("random_forest", "extra_trees"):
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


def warm_start(family: str, task: str) -> dict[str, Any]:
    """Where each search starts: the family's defaults (as :func:`.model.build_estimator` makes
    them) inside its search space, so that tuning never ends below them on the cross-validated
    metric. A default outside the space is moved to its nearest end (an unlimited
    ``max_depth`` to the deepest one searched)."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    search_space(trial, family, task)  # registers the space's distributions on the trial
    defaults = build_estimator(task, family, 0).get_params()
    start: dict[str, Any] = {}
    for name, distribution in trial.distributions.items():
        value = defaults.get(name)
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            choices = distribution.choices
            start[name] = value if value in choices else choices[0]
        elif isinstance(
            distribution,
            optuna.distributions.FloatDistribution | optuna.distributions.IntDistribution,
        ):
            low, high = distribution.low, distribution.high
            start[name] = high if value is None else min(max(value, low), high)
    return start


def _rank(candidate: Candidate) -> float:
    score = candidate.cv_mean
    return -score if score is not None and np.isfinite(score) else np.inf


def tune(
    make_pipeline: Callable[[dict[str, Any]], Pipeline],
    x: pd.DataFrame,
    y: pd.Series,
    config: Config,
    groups: pd.Series | None = None,
    trials: int | None = None,
    budget: Budget | None = None,
) -> TuningResult:
    """Search parameters for ``make_pipeline(params)``; returns the best (or none to tune).

    ``budget``: with no trial count, search until it is spent; with one, stop there at the
    latest.
    """
    n_trials: int | None = config.tuning.trials if trials is None else trials
    left = (budget or Budget(None)).left()
    if left is not None and left <= 0:
        return TuningResult(params={}, cv_score=None, trials=0)
    if n_trials is not None and n_trials <= 0:
        # An explicit 0 (--trials 0), or no budget: the defaults. tuning.trials 0 with a
        # budget: as many trials as it holds.
        if trials is not None or left is None:
            return TuningResult(params={}, cv_score=None, trials=0)
        n_trials = None
    metric = METRICS[config.metric.primary]
    scoring = _scoring(metric.scorer, y, config.task)
    folds = _folds(config)

    def objective(trial: optuna.Trial) -> float:
        pipeline = make_pipeline(search_space(trial, config.model.family, config.task))
        # One job: parallel folds would finish in varying order and are no faster on 2 cores.
        scores = cross_val_score(pipeline, x, y, groups=groups, cv=folds, scoring=scoring, n_jobs=1)
        return float(np.mean(scores))

    def in_time(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # Optuna checks its timeout only before a trial: stop when the next trial (about as
        # long as the last) and the final refit (about two folds' fits) would overrun.
        left = budget.left() if budget is not None else None
        duration = trial.duration.total_seconds() if trial.duration is not None else 0.0
        if left is not None and left < duration * (1 + 2 / config.tuning.cv_folds):
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    timeout = (
        config.tuning.timeout_seconds if left is None else min(left, config.tuning.timeout_seconds)
    )
    storage = storage_url(config)
    if config.engine.name == "dask":
        if not storage:
            raise ConfigError(
                "Tuning on the dask engine needs a shared study: set tuning.storage (or "
                f"${STORAGE_ENV}) to a PostgreSQL URL, e.g. "
                "postgresql+psycopg2://user@host:5432/optuna."
            )
        study_name = _open_study(config, storage, 0).study_name
        completed = _search_on_dask(config, storage, objective, n_trials, timeout)
        study = optuna.load_study(study_name=study_name, storage=storage)
    else:
        worker = int(os.environ.get(WORKER_ENV, "0"))
        study = _open_study(config, storage, worker)
        completed = _optimize(study, objective, n_trials, timeout, [in_time])
    if n_trials is not None and completed < n_trials:
        log.warning(
            "Tuning stopped after %d of %d trials (tuning.time_budget_seconds=%s, "
            "tuning.timeout_seconds=%s); the result may differ between runs.",
            completed,
            n_trials,
            config.tuning.time_budget_seconds,
            config.tuning.timeout_seconds,
        )
    params = {**study.best_params}
    if config.model.family == "lightgbm":
        params["subsample_freq"] = 1
    return TuningResult(params=params, cv_score=float(study.best_value), trials=completed)


STORAGE_ENV = "MLSERVICE_OPTUNA_STORAGE"
WORKER_ENV = "MLSERVICE_TUNING_WORKER"


def storage_url(config: Config) -> str:
    """The shared Optuna storage (empty: an in-memory study of this process)."""
    return os.environ.get(STORAGE_ENV) or config.tuning.storage


def study_name(config: Config) -> str:
    return config.tuning.study or f"{config.tracking.registered_model}-{config.model.family}"


def _open_study(config: Config, storage: str, worker: int) -> optuna.Study:
    """This searcher's handle on the study: its own sampler seed, the warm start once."""
    sampler = optuna.samplers.TPESampler(seed=config.seed + worker)
    if not storage:
        study = optuna.create_study(direction="maximize", sampler=sampler)
    else:
        from sqlalchemy.exc import ArgumentError

        try:
            study = _create_shared_study(storage, study_name(config), sampler)
        except (ImportError, ValueError, ArgumentError) as exc:
            raise ConfigError(
                f"Cannot open the Optuna storage {storage!r}: {exc}. Use a "
                "postgresql+psycopg2:// URL (psycopg2 is installed with the runtime)."
            ) from exc
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ConfigError(f"Study {study.study_name!r} in {storage} does not maximize.")
    _enqueue_once(study, storage, warm_start(config.model.family, config.task))
    return study


def _enqueue_once(study: optuna.Study, storage: str, params: dict[str, Any]) -> None:
    """Enqueue ``params`` unless the study has them. Optuna's check-then-enqueue is not atomic:
    8 processes joining one PostgreSQL study at once enqueued the warm start 3 times. There a
    session advisory lock, keyed by the study's name, makes it one at a time."""
    if not storage.startswith("postgresql"):
        study.enqueue_trial(params, skip_if_exists=True)
        return
    import zlib

    import sqlalchemy

    key = zlib.crc32(f"mlgen-warm-start:{study.study_name}".encode())
    engine = sqlalchemy.create_engine(storage, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                study.enqueue_trial(params, skip_if_exists=True)
            finally:
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key}
                )
    finally:
        engine.dispose()


def _create_shared_study(
    storage: str, name: str, sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    """Create or join study ``name``. Processes that start together on an empty database race
    to create Optuna's tables (and the study): the losers retry and find them made."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(5):
        try:
            return optuna.create_study(
                storage=storage,
                study_name=name,
                direction="maximize",
                sampler=sampler,
                load_if_exists=True,
            )
        except (
            IntegrityError,
            OperationalError,
            ProgrammingError,
            optuna.exceptions.DuplicatedStudyError,
        ):
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _search_on_dask(
    config: Config,
    storage: str,
    objective: Callable[[optuna.Trial], float],
    n_trials: int | None,
    timeout: float,
) -> int:
    """``engine.workers`` searchers on the Dask cluster share the trials; how many ran."""
    from .engine import dask_client

    searchers = config.engine.workers
    shares = (
        [None] * searchers
        if n_trials is None
        else [n_trials // searchers + (i < n_trials % searchers) for i in range(searchers)]
    )
    with dask_client(config) as client:
        futures = [
            client.submit(_searcher, config, storage, objective, i, share, timeout, pure=False)
            for i, share in enumerate(shares)
            if share != 0
        ]
        return int(sum(client.gather(futures)))


def _searcher(
    config: Config,
    storage: str,
    objective: Callable[[optuna.Trial], float],
    worker: int,
    n_trials: int | None,
    timeout: float,
) -> int:
    """One searcher's loop on a worker (one thread: trials scale by processes)."""
    from threadpoolctl import threadpool_limits

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(config, storage, worker)
    with threadpool_limits(limits=1):
        return _optimize(study, objective, n_trials, timeout)


def _optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int | None,
    timeout: float,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
) -> int:
    """Run trials of ``study`` here; how many this process ran (others may run meanwhile)."""
    ran: list[int] = []
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=timeout,
        callbacks=[lambda _study, trial: ran.append(trial.number), *(callbacks or [])],
    )
    return len(ran)


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
    return make_scorer(average_precision_score, response_method="predict_proba", pos_label=positive)


def _folds(config: Config) -> Any:
    n_splits, seed = config.tuning.cv_folds, config.seed
    if config.split.strategy == "time":
        return TimeSeriesSplit(n_splits=n_splits)
    if config.split.strategy == "group":
        return GroupKFold(n_splits=n_splits)
    if config.is_classification:
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return KFold(n_splits=n_splits, shuffle=True, random_state=seed)
