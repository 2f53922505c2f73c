"""The *recommendation* kind: top-k items for a user, and items related to a set of items,
learnt from implicit feedback (rows of user, item, time, weight) and item metadata.

Modules: data.py (interactions, metadata, splits), models.py (popularity, recent popularity,
item-kNN, EASE, ALS, BPR, content), metrics.py (ranking metrics, intervals, the paired test),
train.py (search, evaluation, MLflow, the gate), recommender.py (what serving loads),
serving.py and monitoring.py (the HTTP app and its drift signals), batch.py (recommend-all).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..package import KindPackage

if TYPE_CHECKING:
    import pandas as pd

    from ...bundle import Bundle
    from ...config import Config
    from ..command import Command
    from .train import RecommendationResult


class RecommendationKind(KindPackage):
    name = "recommendation"
    tasks: tuple[str, ...] = ("recommendation",)
    unsupported_commands: dict[str, str] = {
        "evaluate": "`train` prints the test metrics with their intervals and logs them to "
        "MLflow, and `promote --version N` re-scores a version on the test users.",
        "retrain": "run `train --data NEW_FILE`: a model trained on new data replaces the "
        "champion only if the gate finds it significantly better on the same test users.",
        "drift": "the service watches item-popularity drift, new users and new items as it "
        "serves: see /metrics and the Grafana dashboard.",
        "compare": "champion/challenger rollouts are not available for recommenders yet; "
        "`promote --version N` compares a version with the champion on the test users.",
        "investigate": "the investigation report covers tabular services so far; a "
        "recommender's live hit rate, popularity drift and new-user rate are on /metrics.",
    }

    def validate(self, df: pd.DataFrame, config: Config) -> None:
        from .data import read_interactions

        read_interactions(df, config)

    def split(self, df: pd.DataFrame, config: Config) -> Any:
        from .data import read_interactions, split

        data, _ = read_interactions(df, config)
        return split(data, config)

    def baseline(self, config: Config) -> Any:
        from .models import build

        return build("popularity", seed=config.seed)

    def candidates(self, config: Config) -> list[str]:
        from .data import section

        return list(section(config).candidates)

    def metrics(self, config: Config) -> list[str]:
        from .data import section
        from .metrics import RANKING

        primary = section(config).primary_metric
        return [primary, *(name for name in RANKING if name != primary)]

    def higher_is_better(self, metric: str) -> bool:
        # Ranking metrics and coverage; popularity bias is reported, never gated on.
        return metric != "popularity_bias"

    def comparison_test(self, config: Config) -> str:
        from .data import section
        from .metrics import TEST

        rec = section(config)
        return f"{TEST} on {rec.primary_metric}@{rec.k}"

    def train(
        self, config: Config, data_path: str | Path | None = None, trials: int | None = None
    ) -> RecommendationResult:
        from .train import train

        return train(config, data_path=data_path, trials=trials)

    def drift_signals(self, config: Config) -> list[str]:
        return [
            "item-popularity distribution of requested and of served items vs training "
            "(Jensen-Shannon over popularity bins)",
            "new-user rate and new-item rate of requests",
            "catalogue coverage of what is served",
            "live hit-rate@k from POST /feedback",
        ]

    def export_check(self, bundle: Bundle, sample: pd.DataFrame) -> dict[str, Any]:
        # The served model is the evaluated one (numpy arrays); there is no second path.
        return {"path": "numpy", "reason": "recommenders are served from their arrays"}

    def commands(self) -> list[Command]:
        from .batch import COMMAND

        return [COMMAND]
