"""*Training* a text classifier: rows -> checks -> split (groups held out when ``data.
group_column`` is set, else stratified) -> TF-IDF + logistic regression for each
``text.c_values`` on the training split, the best on validation refitted on train +
validation (the *evaluated* model) -> test metrics with intervals beside the majority-class
baseline -> the same settings refitted on every row (the *served* model, when it passes its
checks) -> MLflow run and registered version -> the gate (the paired test of the evaluated
models on the test rows) -> the champion's bundle (both models).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

import mlgen_runtime.kinds.labelled as labelled

from ...compare import Comparison
from ...config import Config, TextConfig
from ...data import derive_target, file_hash, load_data
from ...errors import ConfigError, DataValidationError
from ...monitoring.drift import build_reference
from ...registry import (
    Decision,
    RegisteredRun,
    champion_dir,
    export_champion,
    git_commit,
    register_version,
)
from .model import build_pipeline, load_pipeline, save_pipeline, tokens, top_terms, vocabulary

log = logging.getLogger(__name__)

#: Per-document drift signals.
LENGTH, OOV = "text_length", "oov_rate"


def section(config: Config) -> TextConfig:
    if config.text is None:
        raise ConfigError("This service has no `text` section in configs/config.yaml.")
    return config.text


def read_rows(df: pd.DataFrame, config: Config) -> pd.DataFrame:
    """The rows that can train: the configured columns checked, labels as text, empty texts
    kept as ""; a :class:`DataValidationError` naming the column otherwise."""
    text = section(config)
    target = config.data.target
    needed = [text.text_column, target, *text.numeric_columns, *text.categorical_columns]
    if config.data.group_column:
        needed.append(config.data.group_column)
    missing = [column for column in needed if column not in df.columns]
    if missing:
        raise DataValidationError(
            f"The data has no column {', '.join(map(repr, missing))} (it has "
            f"{', '.join(map(str, df.columns[:20]))}): fix text.* or data.target in the config."
        )
    for column in text.numeric_columns:
        values = pd.to_numeric(df[column], errors="coerce")
        if (values.isna() & df[column].notna()).any():
            raise DataValidationError(
                f"Column {column!r} is in text.numeric_columns but holds text "
                f"(e.g. {df[column][values.isna() & df[column].notna()].iloc[0]!r})."
            )
    rows = df[df[target].notna()].copy()
    if len(rows) < len(df):
        log.warning("%d rows without a %s label are left out.", len(df) - len(rows), target)
    rows[target] = rows[target].astype(str)
    rows[text.text_column] = rows[text.text_column].fillna("").astype(str)
    if rows[target].nunique() < 2:
        raise DataValidationError(
            f"Column {target!r} has {rows[target].nunique()} label(s): a classifier needs two."
        )
    return rows.reset_index(drop=True)


def doc_stats(texts: pd.Series | list[str], known: set[str]) -> pd.DataFrame:
    """Length in characters and the share of word tokens outside ``known``, per document."""
    return pd.DataFrame({LENGTH: [len(text) for text in texts],
                         OOV: [oov_rate(tokens(text), known) for text in texts]})


def oov_rate(words: list[str], known: set[str]) -> float:
    """The share of ``words`` outside ``known`` (0 for no words)."""
    return sum(w not in known for w in words) / len(words) if words else 0.0


@dataclass(frozen=True)
class TextResult(RegisteredRun):
    metadata: dict[str, Any]
    decision: Decision
    baseline_comparison: Comparison
    comparison: Comparison | None


def train(config: Config, data_path: str | Path | None = None,
          trials: int | None = None, promote: bool = True) -> TextResult:
    del trials
    text = section(config)
    started = time.perf_counter()
    path = config.resolve(data_path or config.data.path)
    rows = read_rows(derive_target(load_data(path), config), config)
    target, primary = config.data.target, text.primary_metric
    labels = rows[target].to_numpy()
    groups = rows[config.data.group_column].astype(str).to_numpy() \
        if config.data.group_column else None
    split = labelled.split_examples(labels, groups, text.test_size, text.validation_size,
                                    config.seed)
    columns = [text.text_column, *text.numeric_columns, *text.categorical_columns]
    x = rows[columns]
    # The features are fitted once on train and each C fits only the logistic regression
    # (what Pipeline.fit does per C, without vectorising the texts again).
    searched = build_pipeline(text, text.c_values[0], config.seed)
    features = searched.named_steps["features"]
    x_train = features.fit_transform(x.iloc[split.train], labels[split.train])
    x_validation = features.transform(x.iloc[split.validation])
    validation: dict[float, float] = {}
    for c in text.c_values:
        fitted = clone(searched.named_steps["model"]).set_params(C=c).fit(
            x_train, labels[split.train])
        validation[c] = float(np.mean(fitted.predict(x_validation) == labels[split.validation]))
    chosen = max(text.c_values, key=lambda c: validation[c])
    fit_rows = np.concatenate([split.train, split.validation])
    # The evaluated model: fitted on train + validation, judged on the test rows (metrics,
    # the gate), kept in the bundle so that the next training re-scores it on test rows it
    # has not seen.
    evaluated = build_pipeline(text, chosen, config.seed).fit(x.iloc[fit_rows],
                                                              labels[fit_rows])
    classes = [str(c) for c in evaluated.classes_]
    test_labels = labels[split.test]
    test_probabilities = evaluated.predict_proba(x.iloc[split.test])
    model_test = labelled.prediction(test_labels, test_probabilities, classes)
    # The served model: the same settings refitted on every labelled row, once everything
    # the gate reads is fixed; the evaluated model serves when it fails its checks.
    pipeline, refit = _refit_on_all_rows(text, chosen, config.seed, x, labels, evaluated,
                                         split.test, test_probabilities)
    codes = np.searchsorted(np.asarray(classes), labels[fit_rows])
    baseline_test = labelled.prediction(
        test_labels, labelled.majority(codes, len(split.test), len(classes)), classes
    )
    samples = text.bootstrap_samples
    metrics = labelled.metrics(model_test, samples, config.seed)
    baseline_metrics = labelled.metrics(baseline_test, samples, config.seed)
    reference = _reference(rows[text.text_column].iloc[split.train], pipeline, config)
    # Validation reviews for serving's check of its fast path against this pipeline.
    kept = rows[text.text_column].iloc[split.validation].tolist()
    metadata: dict[str, Any] = {
        "model_name": config.tracking.registered_model,
        "kind": "text",
        "task": config.task,
        "model_family": "tfidf_logistic",
        "params": {"C": chosen, "word_ngrams": text.word_ngrams,
                   "char_ngrams": list(text.char_ngrams), "min_df": text.min_df,
                   "class_weight": text.class_weight},
        "validation_accuracy": {str(c): v for c, v in validation.items()},
        "classes": classes,
        "positive_when": config.data.positive_when,
        "text_column": text.text_column,
        "numeric_columns": list(text.numeric_columns),
        "categorical_columns": list(text.categorical_columns),
        # The data's other columns (the label, ids): a request may carry them; they are dropped.
        "ignored_columns": [str(c) for c in rows.columns if c not in columns],
        "max_chars": text.max_chars,
        "primary_metric": primary,
        # Accuracy and macro F1 are better higher; `mlgen verify` reads the direction here.
        "higher_is_better": True,
        "metrics": metrics,
        "baseline_metrics": baseline_metrics,
        "baseline": "majority class",
        "rows": {"train": len(split.train), "validation": len(split.validation),
                 "test": len(split.test)},
        # Which model serves: refitted on all rows, or the evaluated one (and why).
        "served_model": refit,
        "seed": config.seed,
        "data_path": str(path),
        "data_hash": file_hash(path),
        "git_commit": git_commit(config.root),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": time.perf_counter() - started,
    }
    current = labelled.current_champion(config)
    champion_test = None
    if current is not None:
        champion_test = _rescore(champion_dir(config), x.iloc[split.test],
                                 test_labels, classes)
    logged = {**{f"test_{k}": v for k, v in metrics.items()},
              **{f"baseline_{k}": v for k, v in baseline_metrics.items()},
              "training_seconds": metadata["training_seconds"]}

    def write(folder: Path, meta: dict[str, Any]) -> Path:
        from ...bundle import save_bundle

        return save_bundle(folder, pipeline, meta, reference,
                           model_saver=lambda p, target: save_pipeline(
                               p, target, kept, None if p is evaluated else evaluated))

    metadata = register_version(config, "text", metadata, metadata["params"], logged, write)
    decision, against_baseline, against_champion = labelled.gate(
        config, primary, model_test, baseline_test, champion_test, current or "",
        metadata["model_version"], "majority class",
    )
    if promote and decision.promote:
        export_champion(config, metadata["model_version"], decision.reason,
                                 lambda folder: write(folder, metadata),
                                 model_card(config, metadata))
    return TextResult(metadata, decision, against_baseline, against_champion)


def _reference(texts: pd.Series, pipeline: Any, config: Config) -> dict[str, Any]:
    known = vocabulary(pipeline)
    stats = doc_stats(texts, known)
    reference = build_reference(stats, [{"name": LENGTH, "type": "numeric"},
                                        {"name": OOV, "type": "numeric"}], seed=config.seed)
    terms, counts = top_terms(texts)
    reference["top_terms"] = {"terms": terms, "counts": counts}
    return reference


def _refit_on_all_rows(
    text: TextConfig, c: float, seed: int, x: pd.DataFrame, labels: np.ndarray,
    evaluated: Any, test: np.ndarray, test_probabilities: np.ndarray,
) -> tuple[Any, dict[str, Any]]:
    """The pipeline to serve and how it was fitted: ``evaluated``'s settings refitted on all
    ``labels`` (train + validation + test) when ``text.refit_on_all_rows`` is on and the refit
    passes its checks, else ``evaluated`` itself.

    The refit is not judged: it has seen the test rows. Its checks catch a broken fit only:
    the same classes, finite probabilities, and on the test rows (now its training rows) at
    least the accuracy of the evaluated model that never saw them. On the fine-food reviews a
    model fitted on 25% more rows gained +0.4 points (5-fold learning curve, docs/benchmarks.md,
    issue 16)."""
    held_out = {"fitted_on": "train + validation", "rows": int(len(labels) - len(test))}
    if not text.refit_on_all_rows:
        return evaluated, {**held_out, "reason": "text.refit_on_all_rows is off"}
    refit = build_pipeline(text, c, seed).fit(x, labels)
    probabilities = refit.predict_proba(x.iloc[test])
    classes = evaluated.classes_
    truth = labels[test]
    accuracy = float(np.mean(refit.classes_[probabilities.argmax(axis=1)] == truth))
    before = float(np.mean(classes[test_probabilities.argmax(axis=1)] == truth))
    problem = None
    if refit.classes_.tolist() != classes.tolist():
        problem = f"its classes {refit.classes_.tolist()} are not {classes.tolist()}"
    elif not np.isfinite(probabilities).all():
        problem = "it answers probabilities that are not finite"
    elif accuracy < before:
        problem = (f"on the test rows it was fitted on, its accuracy {accuracy:.4f} is below "
                   f"the evaluated model's {before:.4f}, which never saw them")
    if problem is not None:
        log.warning("The model refitted on all rows is not served (%s).", problem)
        return evaluated, {**held_out, "reason": f"the refit on all rows failed: {problem}"}
    return refit, {"fitted_on": "all labelled rows", "rows": int(len(labels)),
                   "test_accuracy_in_sample": accuracy, "evaluated_test_accuracy": before}


def _rescore(folder: Path, x: pd.DataFrame, labels: np.ndarray, classes: list[str]) -> Any:
    """The champion's predictions of the test rows, by its evaluated model (the one fitted
    without them; bundles before the refit hold only the served one)."""
    try:
        champion = load_pipeline(folder / "model", evaluated=True)
        if [str(c) for c in champion.classes_] != classes:
            return None
        return labelled.prediction(labels, champion.predict_proba(x), classes)
    except Exception as exc:  # a champion that cannot score leaves the gate to the baseline
        log.warning("Could not re-score the champion in %s (%s).", folder, exc)
        return None


def summary(result: TextResult) -> str:
    meta = result.metadata
    metrics, baseline = meta["metrics"], meta["baseline_metrics"]
    lines = [f"Text classifier {meta['model_name']} v{meta['model_version']}: TF-IDF word + "
             f"char n-grams, logistic regression C={meta['params']['C']}, rows train/"
             f"validation/test {meta['rows']['train']}/{meta['rows']['validation']}/"
             f"{meta['rows']['test']}"]
    for name in ("accuracy", "f1_macro"):
        lines.append(f"  {name:<10} {metrics[name]:.4f} [{metrics[name + '_ci_low']:.4f}, "
                     f"{metrics[name + '_ci_high']:.4f}]  baseline (majority class) "
                     f"{baseline[name]:.4f}")
    lines.append(f"  served: {meta['served_model']['fitted_on']} "
                 f"({meta['served_model']['rows']} rows)")
    lines.append(f"  {result.decision.verdict}")
    return "\n".join(lines)


def model_card(config: Config, metadata: dict[str, Any]) -> str:
    metrics = metadata["metrics"]
    return "\n".join([
        f"# Model card: {config.project.name}",
        "",
        f"Model `{metadata['model_name']}` version {metadata['model_version']} (MLflow run "
        f"`{metadata['run_id']}`), trained {metadata['trained_at']}: TF-IDF of word and "
        f"character n-grams into a logistic regression ({json.dumps(metadata['params'])}).",
        "",
        _served_sentence(metadata),
        "",
        "## Intended use",
        config.project.description or "Not described: set project.description in the config.",
        "",
        f"Classifies `{metadata['text_column']}` into {', '.join(metadata['classes'])}.",
        "",
        "## Evaluation (test rows, by the model fitted without them)",
        f"accuracy {metrics['accuracy']:.4f} [{metrics['accuracy_ci_low']:.4f}, "
        f"{metrics['accuracy_ci_high']:.4f}], macro F1 {metrics['f1_macro']:.4f}; majority "
        f"class: accuracy {metadata['baseline_metrics']['accuracy']:.4f}.",
        "",
        "## Drift signals",
        "text length, out-of-vocabulary rate, and the distribution of the training data's top "
        "terms.",
    ])


def _served_sentence(metadata: dict[str, Any]) -> str:
    served = metadata.get("served_model") or {}
    if served.get("fitted_on") == "all labelled rows":
        return (f"The served model is these settings refitted on all {served['rows']} labelled "
                "rows after the evaluation below, which judged the same settings fitted on "
                "train + validation (kept in the bundle for the next promotion gate).")
    return ("The served model is the evaluated one (train + validation)"
            + (f": {served['reason']}." if served.get("reason") else "."))
