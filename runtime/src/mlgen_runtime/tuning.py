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
from sklearn.metrics import average_precision_score, check_scoring, f1_score, make_scorer
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedKFold,
    TimeSeriesSplit,
    cross_val_score,
)
from sklearn.pipeline import Pipeline

from .budget import Budget
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
    folds: int = 0  # folds scored (fewer than tuning.cv_folds: the budget ended the selection)
    chosen: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# A default fold's cost (fit + predict) by family, relative to the linear model's: the estimate
# of a family's first fold from the families already measured on the same rows. The larger of
# the ratios measured on ISLR Default (10,000 x 3) and Caravan (5,822 x 85) at a load average
# of 13-15 on 2 cores (docs/benchmarks.md), rounded up.
FOLD_COST = {
    "linear": 1.0,
    "extra_trees": 3.0,
    "random_forest": 6.0,
    "hist_gradient_boosting": 12.0,
    "lightgbm": 30.0,
}


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

    Fold by fold: every family's first fold before any family's second, so that when the
    budget ends the selection, the families it reached were all scored on the same rows. A
    fold runs only if its estimate (the family's own last fold, else the families measured so
    far scaled by :data:`FOLD_COST`) ends in time for the steps after the search; a family
    that misses a fold gets no later one. The first family's first fold always runs: there
    must be a model.
    """
    budget = budget or Budget(None)
    scoring = _scoring(METRICS[config.metric.primary].scorer, y, config.task)
    cuts = list(_folds(config).split(x, y, groups))
    families = list(dict.fromkeys(config.model.candidates))
    scores: dict[str, list[float]] = {family: [] for family in families}
    fits: dict[str, list[float]] = {family: [] for family in families}
    # Per family: a fold's wall seconds (fit + predict) and its part of the tail.
    cost: dict[str, float] = {}
    tail: dict[str, float] = {}
    dropped: set[str] = set()
    for index, (fit_rows, test_rows) in enumerate(cuts):
        for family in families:
            if family in dropped:
                continue
            guess = _guess(family, cost, tail)
            if (index or scores[families[0]]) and not budget.fits(
                guess[0], f"{family} fold {index + 1}", guess[1]
            ):
                dropped.add(family)
                continue
            score, fit_s, wall = _fold(
                pipeline_of, family, x, y, fit_rows, test_rows, scoring, budget.clock
            )
            scores[family].append(score)
            fits[family].append(fit_s)
            cost[family] = max(cost.get(family, 0.0), wall)
            part = budget.model_part(fit_s, len(fit_rows), wall - fit_s, len(test_rows))
            tail[family] = max(tail.get(family, 0.0), part)
            leader = max(tail, key=lambda name: _mean(scores[name]))
            budget.model_tail = tail[leader]
            budget.fold_seconds[family] = cost[family]
    scored = [
        Candidate(
            family,
            float(np.mean(scores[family])),
            float(np.std(scores[family], ddof=1)) if len(scores[family]) > 1 else 0.0,
            float(np.mean(fits[family])),
            folds=len(scores[family]),
        )
        for family in families
        if scores[family]
    ]
    skipped = [Candidate(family, None, None, 0.0) for family in families if not scores[family]]
    if skipped or any(candidate.folds < len(cuts) for candidate in scored):
        log.warning(
            "Model selection: the time budget (tuning.time_budget_seconds=%s) ran out before "
            "%s; the choice depends on the machine's speed.",
            config.tuning.time_budget_seconds,
            ", ".join(decision["skipped"] for decision in budget.decisions),
        )
    # Scorers are higher-is-better (losses negated); ties go to the earlier candidate.
    ranked = sorted(scored, key=_rank)
    best = ranked[0]
    budget.model_tail = tail[best.family]
    board = [replace(best, chosen=True), *ranked[1:], *skipped]
    return best.family, board


def _fold(
    pipeline_of: Callable[[str], Pipeline],
    family: str,
    x: pd.DataFrame,
    y: pd.Series,
    fit_rows: np.ndarray,
    test_rows: np.ndarray,
    scoring: Any,
    clock: Callable[[], float],
) -> tuple[float, float, float]:
    """One fold of ``family``'s pipeline: its score, and its fit (building the pipeline
    included) and wall seconds on ``clock``; scored as cross_validate scores it: a fit that
    fails scores NaN, with a warning, and ranks last."""
    began = clock()
    pipeline = pipeline_of(family)
    try:
        pipeline.fit(x.iloc[fit_rows], y.iloc[fit_rows])
    except Exception as exc:  # one family failing on this data must not end the selection
        log.warning("Model selection: %s failed to fit a fold (%s); it ranks last.", family, exc)
        return float("nan"), clock() - began, clock() - began
    fitted = clock()
    score = float(
        check_scoring(pipeline, scoring=scoring)(pipeline, x.iloc[test_rows], y.iloc[test_rows])
    )
    return score, fitted - began, clock() - began


def _guess(family: str, cost: dict[str, float], tail: dict[str, float]) -> tuple[float, float]:
    """A fold's estimated seconds and tail part for ``family``: its own measurements, else the
    most expensive estimate from the families measured (no measurement: nothing to go on)."""
    if family in cost:
        return cost[family], tail[family]
    ratios = {other: FOLD_COST[family] / FOLD_COST[other] for other in cost}
    return (
        max((cost[other] * ratio for other, ratio in ratios.items()), default=0.0),
        max((tail[other] * ratio for other, ratio in ratios.items()), default=0.0),
    )


def _mean(scores: list[float]) -> float:
    return float(np.mean(scores)) if scores and np.isfinite(np.mean(scores)) else -np.inf


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
    budget = budget or Budget(None)
    left = budget.left()
    if left is not None and left <= 0:
        return TuningResult(params={}, cv_score=None, trials=0)
    if n_trials is not None and n_trials <= 0:
        # An explicit 0 (--trials 0), or no budget: the defaults. tuning.trials 0 with a
        # budget: as many trials as it holds.
        if trials is not None or left is None:
            return TuningResult(params={}, cv_score=None, trials=0)
        n_trials = None
    family, k = config.model.family, config.tuning.cv_folds
    # A trial is k folds; selection measured this family's fold (none measured: try one).
    fold = budget.fold_seconds.get(family)
    if fold is not None and not budget.fits(k * fold, "tuning trial 1"):
        return TuningResult(params={}, cv_score=None, trials=0)
    metric = METRICS[config.metric.primary]
    scoring = _scoring(metric.scorer, y, config.task)
    folds = _folds(config)
    longest: list[float] = [0.0]

    def objective(trial: optuna.Trial) -> float:
        pipeline = make_pipeline(search_space(trial, family, config.task))
        # One job: parallel folds would finish in varying order and are no faster on 2 cores.
        scores = cross_val_score(pipeline, x, y, groups=groups, cv=folds, scoring=scoring, n_jobs=1)
        return float(np.mean(scores))

    def in_time(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # Optuna checks its timeout only before a trial: stop when the next trial (about as
        # long as the longest so far) would not end in time for the refit of a model like it
        # and the steps after it.
        duration = trial.duration.total_seconds() if trial.duration is not None else 0.0
        longest[0] = max(longest[0], duration)
        refit = budget.model_part(longest[0] / k, len(x) * (k - 1) // k, 0.0, 1)
        if not budget.fits(longest[0], f"tuning trial {trial.number + 2}", refit):
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
    if family == "lightgbm":
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
