"""The *model*: one estimator per family, and the Dummy baseline every model must beat.

Defaults are sensible without tuning and fully seeded. Parallelism is chosen so that the
same seed gives the same predictions bit for bit (see the comments on ``n_jobs``).
"""

from __future__ import annotations

from typing import Any

from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.base import BaseEstimator
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

FAMILIES = ("linear", "random_forest", "extra_trees", "hist_gradient_boosting", "lightgbm")

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "linear": {},
    # Random forests sum tree votes from worker threads in arbitrary order, which changes the
    # last bits of the probabilities: one job keeps predictions reproducible.
    "random_forest": {"n_estimators": 300, "min_samples_leaf": 2, "n_jobs": 1},
    # Random split points average out noise that a forest's best splits fit: strong on small,
    # noisy and wide data (one job, as the random forest).
    "extra_trees": {"n_estimators": 300, "min_samples_leaf": 2, "n_jobs": 1},
    "hist_gradient_boosting": {"learning_rate": 0.1, "max_iter": 300, "early_stopping": True},
    # deterministic + force_row_wise make LightGBM's multithreaded histograms reproducible.
    "lightgbm": {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "n_jobs": 2,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    },
}


# The training loss that matches a primary metric, where it differs from the family's default
# (squared error): a model scored by MAE estimates the median, not the mean. Forests are left
# out: their absolute-error criterion is quadratic in the rows of a node.
METRIC_LOSSES: dict[tuple[str, str], dict[str, Any]] = {
    ("mae", "hist_gradient_boosting"): {"loss": "absolute_error"},
    ("mae", "lightgbm"): {"objective": "l1"},
}


def build_estimator(
    task: str,
    family: str,
    seed: int,
    class_weight: str = "none",
    params: dict | None = None,
    metric: str | None = None,
) -> BaseEstimator:
    """An unfitted estimator of ``family`` for ``task`` with defaults, the loss that matches
    ``metric`` (see ``METRIC_LOSSES``), then ``params``."""
    if family not in FAMILIES:
        raise ValueError(f"Unknown model family {family!r}: use one of {', '.join(FAMILIES)}.")
    classify = task != "regression"
    loss = {} if classify else METRIC_LOSSES.get((metric or "", family), {})
    settings = {**DEFAULT_PARAMS[family], **loss, **(params or {})}
    weights = "balanced" if classify and class_weight == "balanced" else None
    if family == "linear":
        if classify:
            return LogisticRegression(
                **{"C": 1.0, "max_iter": 2000, "class_weight": weights, **settings},
                random_state=seed,
            )
        return Ridge(**{"alpha": 1.0, **settings})
    if family in ("random_forest", "extra_trees"):
        if family == "random_forest":
            cls = RandomForestClassifier if classify else RandomForestRegressor
        else:
            cls = ExtraTreesClassifier if classify else ExtraTreesRegressor
        extra: dict[str, Any] = {"class_weight": weights} if classify else {}
        return cls(**extra, **settings, random_state=seed)
    if family == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        extra = {"class_weight": weights} if classify else {}
        return cls(**extra, **settings, random_state=seed)
    cls = LGBMClassifier if classify else LGBMRegressor
    extra = {"class_weight": weights} if classify else {}
    return cls(**extra, **settings, random_state=seed)


def build_baseline(task: str) -> BaseEstimator:
    """The honest baseline: predict the class prior, or the mean of the target."""
    if task == "regression":
        return DummyRegressor(strategy="mean")
    return DummyClassifier(strategy="prior")
