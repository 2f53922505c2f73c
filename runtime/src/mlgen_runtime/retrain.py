"""*Retraining*: a model trained on new data replaces the champion only through the gate.

The gate of training is the evidence: the new model and the current champion are scored on the
same holdout (the test split of the new data), and the new model is promoted only when it beats
its Dummy baseline and the champion on the primary metric, by ``promotion``'s minimum changes
and significantly (the paired test of :mod:`.compare` that fits the metric). Otherwise it stays
a registered ``challenger``, which a shadow or split rollout can still try on live traffic.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .train import TrainResult, train


def retrain(
    config: Config, data_path: str | Path | None = None, trials: int | None = None
) -> TrainResult:
    """Train on ``data_path``; promote only if the gate and its paired holdout test agree."""
    return train(config, data_path=data_path, trials=trials)
