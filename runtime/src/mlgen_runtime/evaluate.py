"""*Evaluation*: diagnostic plots and feature importances of a model on a split, and the
``evaluate`` command, which scores the current champion on the configured data's test split.

Training calls :func:`write_plots` for the model it logs; the metrics themselves, with their
bootstrap confidence intervals, are in scoring.py.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.calibration import CalibrationDisplay  # noqa: E402

from .config import Config  # noqa: E402
from .data import load_training_data, split, validate  # noqa: E402
from .fairness import fairness_report  # noqa: E402
from .registry import load_champion  # noqa: E402
from .scoring import BINARY, METRICS, REGRESSION, Prediction, predict, score  # noqa: E402

# Permutation importance re-predicts the sample once per feature and repeat: keep it bounded.
IMPORTANCE_ROWS = 1000
IMPORTANCE_REPEATS = 5
# Permuted cells (rows x columns) predicted at once, at most: the cost grows with the square
# of the columns. 300,000 rows of 85 columns (ISLR Caravan) took 97 s at a load average of 10
# (37 s of CPU), more than the whole 60 s training budget; 2,000,000 cells is ~3 s of CPU.
IMPORTANCE_CELLS = 2_000_000


def write_plots(
    model: Any,
    x: pd.DataFrame,
    y: pd.Series,
    prediction: Prediction,
    config: Config,
    out_dir: Path,
) -> dict[str, float]:
    """Save the task's diagnostic plots to ``out_dir``; returns permutation importances."""
    out_dir.mkdir(parents=True, exist_ok=True)
    p = prediction
    if config.task == BINARY:
        positive, probability = p.positive, p.probabilities[:, 1]
        _save(
            out_dir / "roc_curve.png",
            lambda ax: skm.RocCurveDisplay.from_predictions(positive, probability, ax=ax),
        )
        _save(
            out_dir / "pr_curve.png",
            lambda ax: skm.PrecisionRecallDisplay.from_predictions(positive, probability, ax=ax),
        )
        _save(
            out_dir / "calibration.png",
            lambda ax: CalibrationDisplay.from_predictions(
                positive, probability, n_bins=10, strategy="quantile", ax=ax
            ),
        )
    if config.task == REGRESSION:
        _save(
            out_dir / "residuals.png",
            lambda ax: skm.PredictionErrorDisplay.from_predictions(
                p.y_true, p.predicted, kind="residual_vs_predicted", ax=ax
            ),
        )
        _save(
            out_dir / "predicted_vs_actual.png",
            lambda ax: skm.PredictionErrorDisplay.from_predictions(
                p.y_true, p.predicted, kind="actual_vs_predicted", ax=ax
            ),
        )
    else:
        labels = [str(label) for label in p.labels]
        _save(
            out_dir / "confusion_matrix.png",
            lambda ax: skm.ConfusionMatrixDisplay(
                skm.confusion_matrix(p.y_true, p.predicted, labels=p.classes), display_labels=labels
            ).plot(ax=ax, colorbar=False),
        )
    importances = feature_importance(model, x, y, config)
    ordered = sorted(importances.items(), key=lambda item: item[1])[-20:]

    def bars(ax: plt.Axes) -> None:
        ax.barh([name for name, _ in ordered], [value for _, value in ordered])
        ax.set_xlabel(f"drop in {config.metric.primary} when shuffled")

    _save(out_dir / "permutation_importance.png", bars)
    (out_dir / "permutation_importance.json").write_text(json.dumps(importances, indent=2))
    return importances


def feature_importance(model: Any, x: pd.DataFrame, y: pd.Series, config: Config) -> dict:
    """Permutation importance of each raw feature: the primary metric's loss when shuffled.

    All shuffled copies of a bounded, seeded sample are predicted in one call: per-call
    overhead, not rows, dominates the cost of tree ensembles.
    """
    copies = len(x.columns) * IMPORTANCE_REPEATS
    size = importance_rows(len(x), len(x.columns)) // copies
    picked = x.sample(n=min(size, len(x)), random_state=config.seed).index
    sample, truth = x.loc[picked].reset_index(drop=True), y.loc[picked].reset_index(drop=True)
    metric = METRICS[config.metric.primary]
    baseline = metric.value(predict(model, sample, truth, config.task))
    rng = np.random.default_rng(config.seed)
    shuffled = []
    for column in x.columns:
        for _ in range(IMPORTANCE_REPEATS):
            copy = sample.copy()
            copy[column] = sample[column].to_numpy()[rng.permutation(len(sample))]
            shuffled.append(copy)
    prediction = predict(
        model,
        pd.concat(shuffled, ignore_index=True),
        pd.concat([truth] * copies, ignore_index=True),
        config.task,
    )
    rows = np.arange(copies * len(sample)).reshape(copies, len(sample))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = metric.compute(prediction, rows).reshape(len(x.columns), IMPORTANCE_REPEATS)
    sign = 1.0 if metric.higher_is_better else -1.0
    drops = sign * (baseline - np.nanmean(scores, axis=1))
    return {str(name): float(drop) for name, drop in zip(x.columns, drops, strict=True)}


def importance_rows(rows: int, columns: int) -> int:
    """How many rows :func:`feature_importance` predicts for ``rows`` x ``columns`` data: a
    sample of up to IMPORTANCE_ROWS, IMPORTANCE_REPEATS shuffled copies per column."""
    copies = columns * IMPORTANCE_REPEATS
    return copies * max(50, min(IMPORTANCE_ROWS, rows, IMPORTANCE_CELLS // (copies * columns)))


def _save(path: Path, draw: Callable[[plt.Axes], Any]) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    try:
        draw(ax)
        ax.set_title(path.stem.replace("_", " "))
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def evaluate_champion(config: Config, data_path: str | Path | None = None) -> dict[str, Any]:
    """Score the registered champion on the test split of the configured data.

    Writes ``<reports>/evaluation/`` (metrics JSON and plots) and returns the metrics.
    """
    bundle = load_champion(config)
    path = config.resolve(data_path or config.data.path)
    df = load_training_data(config, path)
    validate(df, config)
    test = split(df, config).test
    names = [feature["name"] for feature in bundle.features]
    x, y = test[names], test[config.data.target]
    prediction = predict(bundle.pipeline, x, y, config.task)
    metrics = score(prediction, config.task, config.metric.bootstrap_samples, config.seed)
    out_dir = config.resolve(config.paths.reports) / "evaluation"
    write_plots(bundle.pipeline, x, y, prediction, config, out_dir)
    report = {
        "model_name": bundle.model_name,
        "model_version": bundle.model_version,
        "source": bundle.source,
        "data": str(path),
        "rows": len(test),
        "metrics": metrics,
        "baseline_metrics": bundle.metadata.get("baseline_metrics", {}),
    }
    if config.fairness.sensitive_attributes:
        report["fairness"] = fairness_report(
            test, prediction, config.fairness.sensitive_attributes, config.task
        )
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2, default=str))
    return report
