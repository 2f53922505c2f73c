"""The *text* kind: a label for each text (reviews, tickets, messages), with optional tabular
columns beside it.

Modules: model.py (the TF-IDF word + char n-gram and logistic regression pipeline, its skops
file), train.py (checks, split, C chosen on validation, metrics, MLflow, the gate),
serving.py (the HTTP app and its drift monitoring).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..command import LABELLED_UNSUPPORTED

if TYPE_CHECKING:
    import pandas as pd
    from fastapi import FastAPI

    from ...bundle import Bundle
    from ...config import Config
    from ...monitoring.investigation import Investigation, Observed
    from ...registry import Decision
    from ..command import Command
    from .train import TextResult


class TextKind:
    name = "text"
    tasks: tuple[str, ...] = ("text_classification",)
    unsupported_commands: dict[str, str] = LABELLED_UNSUPPORTED

    def validate(self, df: pd.DataFrame, config: Config) -> None:
        from .train import read_rows

        read_rows(df, config)

    def split(self, df: pd.DataFrame, config: Config) -> Any:
        from ..labelled import split_examples
        from .train import read_rows, section

        rows = read_rows(df, config)
        text = section(config)
        group = config.data.group_column
        return split_examples(rows[config.data.target].to_numpy(),
                              rows[group].astype(str).to_numpy() if group else None,
                              text.test_size, text.validation_size, config.seed)

    def baseline(self, config: Config) -> Any:
        return "majority class"

    def candidates(self, config: Config) -> list[str]:
        return ["tfidf_logistic"]

    def metrics(self, config: Config) -> list[str]:
        from .train import section

        primary = section(config).primary_metric
        return [primary, *(m for m in ("accuracy", "f1_macro", "balanced_accuracy", "log_loss")
                           if m != primary)]

    def higher_is_better(self, metric: str) -> bool:
        return metric != "log_loss"

    def comparison_test(self, config: Config) -> str:
        from ...compare import statistical_test
        from .train import section

        primary = section(config).primary_metric
        return f"{statistical_test(primary, paired=True)} on {primary} of the test rows"

    def train(self, config: Config, data_path: str | Path | None = None,
              trials: int | None = None) -> TextResult:
        from .train import train

        return train(config, data_path=data_path, trials=trials)

    def summary(self, result: TextResult) -> str:
        from .train import summary

        return summary(result)

    def create_app(self, config: Config, bundle: Bundle | None = None,
                   fallback: Bundle | None = None) -> FastAPI:
        from .serving import create_app

        return create_app(config)

    def drift_signals(self, config: Config) -> list[str]:
        return ["text length and out-of-vocabulary rate (normalised Wasserstein against the "
                "training texts)", "distribution of the training data's top terms "
                "(Jensen-Shannon)"]

    def export_check(self, bundle: Bundle, sample: pd.DataFrame) -> dict[str, Any]:
        return {"path": "sklearn", "reason": "the fitted pipeline is served as evaluated"}

    def model_card_sections(self, config: Config, metadata: dict[str, Any]) -> list[str]:
        from .train import model_card

        return [model_card(config, metadata)]

    def commands(self) -> list[Command]:
        return []

    def investigate(self, config: Config, observed: Observed) -> Investigation:
        from ...errors import UsageError

        # cli.py refuses the command first (unsupported_commands); a direct call is refused too.
        raise UsageError(f"investigate: {self.unsupported_commands['investigate']}")

    def promote(self, config: Config, version: str, reason: str, force: bool) -> Decision:
        from ..labelled import promote_registered

        return promote_registered(config, version, reason, force)
