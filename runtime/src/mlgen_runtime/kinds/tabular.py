"""The *tabular* kind: supervised prediction from one row of columns (classification, regression).

The first kind, and the one every other module of the runtime was written for: it wires the
runtime's data validation and splits, feature pipeline, model families and Optuna search,
bootstrap metrics, paired comparison tests, FastAPI app with its ONNX/compiled fast paths,
per-feature drift and model card into the :class:`~mlgen_runtime.kinds.ProblemKind` interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..scoring import higher_is_better, metrics_for

if TYPE_CHECKING:
    import pandas as pd
    from fastapi import FastAPI

    from ..bundle import Bundle
    from ..config import Config
    from ..monitoring.investigation import Investigation, Observed
    from ..registry import Decision
    from ..train import TrainResult
    from .command import Command


class TabularKind:
    name = "tabular"
    tasks: tuple[str, ...] = ("binary_classification", "multiclass_classification", "regression")
    unsupported_commands: dict[str, str] = {}

    def validate(self, df: pd.DataFrame, config: Config) -> None:
        from ..data import validate

        validate(df, config)

    def split(self, df: pd.DataFrame, config: Config) -> Any:
        from ..data import split

        return split(df, config)

    def baseline(self, config: Config) -> Any:
        from ..model import build_baseline

        return build_baseline(config.task)

    def candidates(self, config: Config) -> list[str]:
        from ..model import FAMILIES

        return [config.model.family, *(f for f in FAMILIES if f != config.model.family)]

    def metrics(self, config: Config) -> list[str]:
        return metrics_for(config.task)

    def higher_is_better(self, metric: str) -> bool:
        return higher_is_better(metric)

    def comparison_test(self, config: Config) -> str:
        from ..compare import statistical_test

        return f"{statistical_test(config.metric.primary, paired=True)} on {config.metric.primary}"

    def train(
        self, config: Config, data_path: str | Path | None = None, trials: int | None = None
    ) -> TrainResult:
        from ..budget import process_started
        from ..train import train

        # The budget counts what the user waits for: from the start of the process.
        return train(config, data_path=data_path, trials=trials, started=process_started())

    def summary(self, result: TrainResult) -> str:
        from ..train import summary

        return summary(result)

    def create_app(
        self, config: Config, bundle: Bundle | None = None, fallback: Bundle | None = None
    ) -> FastAPI:
        from ..serving.app import create_app

        return create_app(config, bundle, fallback)

    def drift_signals(self, config: Config) -> list[str]:
        return [
            "per-feature distribution (normalised Wasserstein for numbers, Jensen-Shannon for "
            "categories) over a sliding window of requests",
            "out-of-range numeric values",
            "live performance from POST /feedback",
        ]

    def export_check(self, bundle: Bundle, sample: pd.DataFrame) -> dict[str, Any]:
        from ..serving.fastpath import export_check

        return export_check(bundle, sample)

    def model_card_sections(self, config: Config, metadata: dict[str, Any]) -> list[str]:
        from ..model_card import render_model_card

        return [render_model_card(config, metadata)]

    def batch_scorer(self, config: Config, bundle: Bundle) -> TabularBatchScorer:
        """Scores Parquet partitions for ``score`` (batch.py), on any engine."""
        return TabularBatchScorer(bundle, keep=[config.data.id_column or ""])

    def prepare_investigation(self, config: Config) -> Any:
        from ..monitoring.tabular_investigation import prepare

        return prepare(config)

    def investigate(
        self, config: Config, observed: Observed, prepared: Any = None
    ) -> Investigation:
        from ..monitoring.tabular_investigation import investigate

        return investigate(config, observed, history=prepared)

    def commands(self) -> list[Command]:
        return []

    def promote(self, config: Config, version: str, reason: str, force: bool) -> Decision:
        from ..live_comparison import compare_log
        from ..registry import Decision, promote
        from ..train import holdout_comparison

        if force:
            return promote(config, version, reason=reason, force=True)
        if config.serving.rollout.mode != "off":
            # A challenger on live traffic is promoted on that evidence, not on old test data.
            comparison = compare_log(config, version)
            print(comparison.summary())
            if not comparison.better:
                return Decision(False, f"live comparison: {comparison.verdict}")
            return promote(config, version, reason=reason)
        # Both models scored on the same test rows of the configured data: a paired test.
        evidence = holdout_comparison(config, version)
        if evidence is not None:
            print(evidence.summary())
        return promote(config, version, reason=reason, evidence=evidence)


class TabularBatchScorer:
    """One partition's frame -> ``prediction`` (and ``proba_<class>`` for classifiers).

    The row id column (``data.id_column``) is copied first when a partition has it. Numbers
    are cast to float64 as serving casts them; the pipeline types the rest as in training, so
    batch and online answers agree (tested). Picklable: the engine sends it to every worker.
    """

    def __init__(self, bundle: Bundle, keep: list[str]) -> None:
        self.pipeline = bundle.pipeline
        self.regression = bundle.task == "regression"
        self.columns = [feature["name"] for feature in bundle.features]
        self.numeric = [f["name"] for f in bundle.features if f.get("type") == "numeric"]
        self.keep = [name for name in keep if name]
        self.classes = None if self.regression else list(self.pipeline.classes_)

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        import numpy as np
        import pandas as pd
        from threadpoolctl import threadpool_limits

        # The pipeline's first steps type the columns as in training; numbers arrive as float64
        # as they do online (a Parquet int column would otherwise differ in dtype only).
        features = frame[self.columns]
        casts = {name: np.float64 for name in self.numeric if features[name].dtype != np.float64}
        if casts:
            features = features.astype(casts)
        out = pd.DataFrame({name: frame[name].to_numpy() for name in self.keep if name in frame})
        # One thread per task: an engine scales by worker processes, as serving does.
        with threadpool_limits(limits=1, user_api="openmp"):
            if self.regression:
                out["prediction"] = np.asarray(self.pipeline.predict(features), dtype=float)
                return out
            proba = np.asarray(self.pipeline.predict_proba(features), dtype=float)
        classes = self.classes or []
        out["prediction"] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        for index, label in enumerate(classes):
            out[f"proba_{label}"] = proba[:, index]
        return out
