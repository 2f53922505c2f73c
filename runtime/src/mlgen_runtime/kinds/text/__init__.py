"""The *text* kind: a label for each text (reviews, tickets, messages), with optional tabular
columns beside it.

Modules: model.py (the TF-IDF word + char n-gram and logistic regression pipeline, its skops
file), train.py (checks, split, C chosen on validation, metrics, MLflow, the gate),
serving.py (the HTTP app and its drift monitoring).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..package import LabelledKind

if TYPE_CHECKING:
    import pandas as pd

    from ...bundle import Bundle
    from ...config import Config
    from .train import TextResult


class TextKind(LabelledKind):
    name = "text"
    tasks: tuple[str, ...] = ("text_classification",)
    examples = "rows"

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

    def train(self, config: Config, data_path: str | Path | None = None,
              trials: int | None = None) -> TextResult:
        from .train import train

        return train(config, data_path=data_path, trials=trials)

    def drift_signals(self, config: Config) -> list[str]:
        return ["text length and out-of-vocabulary rate (normalised Wasserstein against the "
                "training texts)", "distribution of the training data's top terms "
                "(Jensen-Shannon)"]

    def export_check(self, bundle: Bundle, sample: pd.DataFrame) -> dict[str, Any]:
        return {"path": "sklearn", "reason": "the fitted pipeline is served as evaluated"}
