"""The *live comparison*: the rollout's challenger against the champion on fed-back outcomes.

``python -m <package> compare`` (and ``promote`` during a rollout) reads the rollout's
prediction log (:class:`.serving.rollout.PredictionLog`), where POST /feedback joined observed
outcomes to the predictions of both variants, and judges them with :func:`.compare.
compare_predictions` on the primary metric. The statistics live in :mod:`.compare`, which knows
nothing of logs; this module turns logged rows into the two models' predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .compare import Comparison, compare_predictions
from .config import CHALLENGER, CHAMPION, Config, RolloutSettings
from .errors import CompareError
from .monitoring.database import describe, is_url
from .scoring import Prediction
from .serving.rollout import PredictionLog, rollout_log_target


def compare_log(config: Config, challenger_version: str | None = None) -> Comparison:
    """Compare the variants of the rollout prediction log on their fed-back outcomes.

    ``challenger_version`` defaults to the most recent challenger in the log; the champion
    rows are those logged beside it. Shadow rows are paired by (request id, row).
    """
    settings = RolloutSettings.of(config)
    target = rollout_log_target(config)
    path = describe(target)
    if not is_url(target) and not Path(target).is_file():
        raise CompareError(
            f"No rollout log at {path}. Serve a challenger (serving.rollout.mode: shadow or "
            "split), send outcomes to POST /feedback, then compare."
        )
    prediction_log = PredictionLog(target)
    try:
        rows = list(prediction_log.labelled())
    finally:
        prediction_log.close()
    challengers = [row for row in rows if row["variant"] == CHALLENGER]
    if challenger_version is None and challengers:
        challenger_version = challengers[-1]["model_version"]
    challengers = [row for row in challengers if row["model_version"] == challenger_version]
    if not challengers:
        which = f"v{challenger_version}" if challenger_version else "any challenger"
        raise CompareError(
            f"The rollout log {path} has no labelled predictions of {which}. Send the observed "
            "outcomes of its requests to POST /feedback."
        )
    champions = [row for row in rows if row["variant"] == CHAMPION]
    paired = any(not row["served"] for row in challengers)
    if paired:
        by_key = {(row["request_id"], row["row"]): row for row in champions}
        challengers = [row for row in challengers if (row["request_id"], row["row"]) in by_key]
        champion_rows = [by_key[(row["request_id"], row["row"])] for row in challengers]
    else:
        # The champion's rows of the same period: logged since the challenger's first row.
        start = next(i for i, row in enumerate(rows) if row is challengers[0])
        champion_rows = [row for row in rows[start:] if row["variant"] == CHAMPION]
    versions = sorted({row["model_version"] for row in champion_rows}) or ["?"]
    metric, note = _live_metric(config, [*champion_rows, *challengers])
    champion, challenger = _logged_predictions(config.task, champion_rows, challengers)
    return compare_predictions(
        metric,
        champion,
        challenger,
        paired,
        settings.alpha,
        settings.min_samples,
        ("/".join(versions), str(challenger_version)),
        config.promotion.bootstrap_samples,
        config.seed,
        note,
    )


# The rollout log keeps one score per prediction (the probability of the positive class, of the
# predicted class, or the value) and, since 0.2.0, every class's probability.
NEEDS_EVERY_PROBABILITY = ("log_loss", "roc_auc_ovr")


def _live_metric(config: Config, rows: list[dict[str, Any]]) -> tuple[str, str]:
    """The metric the logged rows can measure: the primary one, or accuracy and why."""
    primary = config.metric.primary
    if (
        config.task == "multiclass_classification"
        and primary in NEEDS_EVERY_PROBABILITY
        and any(row.get("probabilities") is None for row in rows)
    ):
        return "accuracy", (
            f"not {primary}, which needs every class's probability; rows logged before "
            "mlgen-runtime 0.2.0 keep the predicted class's only"
        )
    return primary, ""


def _logged_predictions(task: str, *variants: list[dict[str, Any]]) -> list[Prediction]:
    """Each variant's logged rows as a :class:`Prediction` of their fed-back outcomes."""
    if task == "regression":
        return [
            Prediction(
                np.array([float(row["label"]) for row in rows]),
                np.array([float(row["prediction"]) for row in rows]),
            )
            for rows in variants
        ]
    classes = _logged_classes(task, [row for rows in variants for row in rows])
    return [_logged_classification(rows, classes) for rows in variants]


def _logged_classes(task: str, rows: list[dict[str, Any]]) -> list[str]:
    """The class labels as text (a label fed back as "1" is the class 1), in model order.

    A binary model's score is the probability of its second class, the positive one, so a
    row scored above 0.5 predicted the positive class.
    """
    seen = {str(row["label"]) for row in rows} | {str(row["prediction"]) for row in rows}
    if task != "binary_classification":
        # A model's classes that no row predicted or observed are in its probabilities.
        return sorted(seen.union(*(row.get("probabilities") or {} for row in rows)))
    positive = {str(row["prediction"]) for row in rows if row["score"] > 0.5}
    if not positive:
        positive = seen - {str(row["prediction"]) for row in rows}
    if len(seen) != 2 or len(positive) != 1:
        raise CompareError(
            f"The labelled rollout rows name {len(seen)} class(es) ({', '.join(sorted(seen))}): "
            "a binary comparison needs outcomes or predictions of both classes. Send more "
            "outcomes to POST /feedback."
        )
    return sorted(seen - positive) + sorted(positive)


def _logged_classification(rows: list[dict[str, Any]], classes: list[str]) -> Prediction:
    scores = np.array([row["score"] for row in rows], dtype=float).reshape(-1, 1)
    if len(classes) > 2 and all(row.get("probabilities") for row in rows):
        # Every class's probability, as the model gave it (a class it never predicts is 0).
        proba = np.array(
            [[row["probabilities"].get(label, 0.0) for label in classes] for row in rows],
            dtype=float,
        )
    elif len(classes) == 2:
        proba = np.hstack([1 - scores, scores])
    else:
        # The predicted class's probability is kept; the others share the rest.
        proba = np.repeat((1 - scores) / (len(classes) - 1), len(classes), axis=1)
        winners = [classes.index(str(row["prediction"])) for row in rows]
        proba[np.arange(len(rows)), winners] = scores[:, 0]
    return Prediction(
        np.array([str(row["label"]) for row in rows], dtype=object),
        np.array([str(row["prediction"]) for row in rows], dtype=object),
        proba,
        classes,
    )
