"""*Retraining*: a model trained on new data replaces the champion only through the gate.

The new model and the current champion are scored on the same holdout (the test split of the
new data). It is promoted when it passes the training gate (it beats its Dummy baseline and the
champion on the primary metric) and the paired test of :mod:`.compare` finds it significantly
better (exact McNemar on accuracy, or Wilcoxon on absolute errors). Otherwise it stays a
registered ``challenger``, which a shadow or split rollout can still try on live traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow.sklearn

from .compare import Comparison, compare_losses, losses
from .config import Config
from .data import load_data, split, validate
from .registry import Decision, apply_promotion, champion_version, setup
from .scoring import predict
from .serving.rollout import RolloutSettings
from .train import TrainResult, summary, train


@dataclass(frozen=True)
class RetrainResult:
    """The training run, its holdout comparison with the champion, and the verdict."""

    trained: TrainResult
    comparison: Comparison | None
    decision: Decision

    def summary(self) -> str:
        lines = [summary(self.trained).rsplit("\n", 1)[0]]
        if self.comparison is not None:
            lines.append(self.comparison.summary())
        verdict = "promoted to champion" if self.decision.promote else "kept as challenger"
        lines.append(f"{verdict}: {self.decision.reason}")
        return "\n".join(lines)


def retrain(
    config: Config, data_path: str | Path | None = None, trials: int | None = None
) -> RetrainResult:
    """Train on ``data_path``; promote only if the gate and the paired holdout test agree."""
    setup(config)
    current = champion_version(config)
    trained = train(config, data_path=data_path, trials=trials, promote=False)
    if current is None or not trained.decision.promote:
        # No champion to test against, or the point estimate already lost: the gate decides.
        decision = trained.decision
        comparison = None
    else:
        comparison = holdout_comparison(config, trained, str(current.version), data_path)
        evidence = (
            f"{comparison.test} on {comparison.n_challenger} holdout rows: "
            f"p={comparison.p_value:.3g} (alpha {comparison.alpha}, minimum "
            f"{comparison.min_samples} rows)"
        )
        decision = (
            Decision(True, f"{trained.decision.reason}; {evidence}")
            if comparison.better
            else Decision(False, f"{comparison.verdict}: {evidence}")
        )
    if decision.promote:
        apply_promotion(config, trained.version, decision.reason)
    return RetrainResult(trained=trained, comparison=comparison, decision=decision)


def holdout_comparison(
    config: Config, trained: TrainResult, champion: str, data_path: str | Path | None
) -> Comparison:
    """The paired test of the new model against version ``champion`` on the new test split."""
    df = load_data(config.resolve(data_path or config.data.path))
    validate(df, config)
    # The same seeded split as training: these are exactly the rows the new model never saw.
    test = split(df, config).test
    target = test[config.data.target]
    champion_model = mlflow.sklearn.load_model(
        f"models:/{config.tracking.registered_model}/{champion}"
    )
    # Each model takes the columns it was trained on; the pipelines select their own.
    champion_rows = predict(
        champion_model, test.drop(columns=[config.data.target]), target, config.task
    )
    names = [feature["name"] for feature in trained.metadata["features"]]
    new_rows = predict(trained.pipeline, test[names], target, config.task)
    settings = RolloutSettings.of(config)
    return compare_losses(
        config.task,
        losses(config.task, champion_rows.predicted, target),
        losses(config.task, new_rows.predicted, target),
        paired=True,
        alpha=settings.alpha,
        min_samples=settings.min_samples,
        versions=(champion, trained.version),
    )
