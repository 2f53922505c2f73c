"""*Training* an audio classifier: clips -> split (voices/speakers held out when the data has
groups) -> features -> the MFCC + logistic regression baseline and the CNN -> the candidate
best on validation -> int8 quantisation measured against fp32 -> test metrics with intervals ->
MLflow run and registered version -> the promotion gate -> the champion's bundle.

The gate asks the model to beat the baseline and the champion on the primary metric by the
paired test on the same test clips (labelled.py). Same seed, data and ``audio.threads``: the
same metrics, bit for bit.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import mlgen_runtime.kinds.labelled as labelled

from ...compare import Comparison
from ...config import AudioConfig, Config
from ...data import file_hash
from ...errors import ConfigError
from ...monitoring.drift import build_reference
from ...registry import (
    Decision,
    RegisteredRun,
    champion_dir,
    export_champion,
    git_commit,
    register_version,
)
from ..labelled import Split
from .classifier import FILES, AudioClassifier, featurise, load_classifier, spectra
from .clips import ClipSet, read_dataset
from .features import CLIP_STATS, FrontEnd, spectrum
from .models import Fitted, OnnxModel, Recipe, fit_baseline, fit_cnn, latency_ms, quantize

log = logging.getLogger(__name__)

INPUTS = {"cnn": "log_mel", "mfcc_logistic": "mfcc_stats"}
#: The per-clip drift signals, and the embedding's distance to the training centroid.
EMBEDDING_DISTANCE = "embedding_distance"
DRIFT_FEATURES = (*CLIP_STATS, EMBEDDING_DISTANCE)


def section(config: Config) -> AudioConfig:
    if config.audio is None:
        raise ConfigError("This service has no `audio` section in configs/config.yaml.")
    return config.audio


def front_end(audio: AudioConfig) -> FrontEnd:
    return FrontEnd(
        sample_rate=audio.sample_rate,
        clip_seconds=audio.clip_seconds,
        n_fft=audio.n_fft,
        hop_length=audio.hop_length,
        n_mels=audio.n_mels,
        n_mfcc=audio.n_mfcc,
    )


@dataclass(frozen=True)
class AudioResult(RegisteredRun):
    """What one training run produced and decided (``summary()`` prints it)."""

    metadata: dict[str, Any]
    decision: Decision
    baseline_comparison: Comparison
    comparison: Comparison | None
    skipped: list[tuple[str, str]]
    #: Every candidate as trained (benchmarks measure them), by family.
    fitted: dict[str, Fitted]


def _fit(family: str, clips: ClipSet, split: Split, codes: np.ndarray, config: Config,
         inputs: dict[str, np.ndarray]) -> Fitted:
    audio = section(config)
    x = inputs[INPUTS[family]]
    if family == "mfcc_logistic":
        return fit_baseline(x[split.train], codes[split.train], config.seed)
    return fit_cnn(
        (x[split.train], codes[split.train]),
        (x[split.validation], codes[split.validation]),
        n_classes=int(codes.max()) + 1,
        seed=config.seed,
        threads=audio.threads,
        recipe=recipe(audio),
    )


def recipe(audio: AudioConfig) -> Recipe:
    """The CNN's training settings in the config."""
    return Recipe(**{name: getattr(audio, name) for name in Recipe.__dataclass_fields__})


def train(config: Config, data_path: str | Path | None = None,
          trials: int | None = None, promote: bool = True) -> AudioResult:
    """Train, evaluate, log and register an audio classifier; promote it if it passes the gate.
    (``trials`` is the tabular kind's search; the audio kind trains its candidates once.)"""
    del trials
    audio = section(config)
    front = front_end(audio)
    started = time.perf_counter()
    path = config.resolve(data_path or config.data.path)
    clips = read_dataset(path, audio)
    for file, reason in clips.skipped:
        log.warning("Skipped %s", reason if file in reason else f"{file}: {reason}")
    classes = sorted(set(clips.labels.tolist()))
    codes = np.searchsorted(np.asarray(classes), clips.labels)
    split = labelled.split_examples(
        clips.labels, clips.groups, audio.test_size, audio.validation_size, config.seed
    )
    needed = {INPUTS[family] for family in {*audio.candidates, "mfcc_logistic"}}
    inputs = {kind: featurise(spectra(clips.signals, front), kind) for kind in needed}
    threads = audio.threads
    fitted: dict[str, Fitted] = {}
    validation: dict[str, float] = {}
    for family in dict.fromkeys([*audio.candidates, "mfcc_logistic"]):
        fitted[family] = _fit(family, clips, split, codes, config, inputs)
        probabilities, _ = OnnxModel(fitted[family].onnx, threads).run(
            inputs[INPUTS[family]][split.validation]
        )
        validation[family] = float(np.mean(probabilities.argmax(axis=1) ==
                                           codes[split.validation]))
    chosen = max(audio.candidates, key=lambda family: validation[family])
    model = fitted[chosen]
    x = inputs[INPUTS[chosen]]
    files = {FILES["fp32"]: model.onnx}
    variants = {"fp32": OnnxModel(model.onnx, threads)}
    if chosen == "cnn" and audio.quantize:
        calibration = x[split.train][np.random.default_rng(config.seed).permutation(
            len(split.train))[:200]]
        files[FILES["int8"]] = quantize(model.onnx, calibration)
        variants["int8"] = OnnxModel(files[FILES["int8"]], threads)
    quantisation = _measure(variants, x, codes, split)
    serving_variant = _choose(quantisation, audio.quantize_tolerance)

    test_labels = clips.labels[split.test]
    model_test = labelled.prediction(
        test_labels, variants[serving_variant].run(x[split.test])[0], classes
    )
    if chosen == "mfcc_logistic":
        # The baseline itself was chosen: it has to beat the majority class instead.
        baseline_name = "majority class"
        baseline_probabilities = labelled.majority(codes[split.train], len(split.test),
                                                   len(classes))
    else:
        baseline_name = "MFCC + logistic regression"
        baseline_probabilities, _ = OnnxModel(fitted["mfcc_logistic"].onnx, threads).run(
            inputs["mfcc_stats"][split.test]
        )
    baseline_test = labelled.prediction(test_labels, baseline_probabilities, classes)
    samples = audio.bootstrap_samples
    metrics = labelled.metrics(model_test, samples, config.seed)
    baseline_metrics = labelled.metrics(baseline_test, samples, config.seed)

    # How the CNN was trained, in the run's params and metadata (none if it was no candidate).
    cnn_recipe = asdict(recipe(audio)) if "cnn" in fitted else {}
    _, train_embeddings = variants[serving_variant].run(x[split.train])
    reference = _reference(clips, split, train_embeddings, front, config.seed)
    metadata: dict[str, Any] = {
        "model_name": config.tracking.registered_model,
        "kind": "audio",
        "task": config.task,
        "model_family": chosen,
        "input": INPUTS[chosen],
        "front_end": front.to_dict(),
        "classes": classes,
        "primary_metric": audio.primary_metric,
        # Accuracy and macro F1 are better higher; `mlgen verify` reads the direction here.
        "higher_is_better": True,
        "metrics": metrics,
        "baseline_metrics": baseline_metrics,
        "baseline": baseline_name,
        "validation_accuracy": validation,
        "epochs": model.epochs,
        "recipe": cnn_recipe,
        "history": list(model.history),
        "quantisation": quantisation,
        "serving_variant": serving_variant,
        "clips": {"train": len(split.train), "validation": len(split.validation),
                  "test": len(split.test), "skipped": len(clips.skipped)},
        "skipped": [{"path": file, "reason": reason} for file, reason in clips.skipped],
        "held_out_groups": clips.groups is not None,
        "groups": {part: sorted(set(clips.groups[rows].tolist()))
                   for part, rows in (("validation", split.validation), ("test", split.test))}
        if clips.groups is not None else {},
        "seed": config.seed,
        "threads": threads,
        "data_path": str(path),
        "data_hash": _data_hash(path),
        "git_commit": git_commit(config.root),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": time.perf_counter() - started,
    }
    primary = audio.primary_metric
    current = labelled.current_champion(config)
    champion_test = None
    if current is not None:
        champion_test = _rescore(champion_dir(config), clips, split, classes)
    logged = {
        **{f"test_{k}": v for k, v in metrics.items()},
        **{f"baseline_{k}": v for k, v in baseline_metrics.items()},
        **{f"validation_accuracy_{k}": v for k, v in validation.items()},
        **{f"latency_ms_{row['variant']}": row["latency_ms"] for row in quantisation},
        "training_seconds": metadata["training_seconds"],
    }
    params = {"family": chosen, "serving_variant": serving_variant, "epochs": model.epochs,
              "seed": config.seed, "threads": threads, **front.to_dict(),
              **{f"cnn_{name}": value for name, value in cnn_recipe.items()}}
    metadata = register_version(
        config, "audio", metadata, params, logged,
        lambda folder, meta: labelled.write_bundle(folder, files, meta, reference),
    )
    decision, against_baseline, against_champion = labelled.gate(
        config, primary, model_test, baseline_test, champion_test, current or "",
        metadata["model_version"], baseline_name,
    )
    metadata["baseline_test"] = {"test": against_baseline.test,
                                 "p_value": against_baseline.p_value}
    if promote and decision.promote:
        export_champion(
            config, metadata["model_version"], decision.reason,
            lambda folder: labelled.write_bundle(folder, files, metadata, reference),
            model_card(config, metadata),
        )
    return AudioResult(metadata, decision, against_baseline, against_champion, clips.skipped,
                       fitted)


def _measure(variants: dict[str, OnnxModel], x: np.ndarray, codes: np.ndarray,
             split: Split) -> list[dict[str, Any]]:
    """Validation accuracy and single-clip latency of each variant (fp32, int8)."""
    rows = []
    for name, variant in variants.items():
        probabilities, _ = variant.run(x[split.validation])
        rows.append({
            "variant": name,
            "validation_accuracy": float(np.mean(probabilities.argmax(axis=1) ==
                                                 codes[split.validation])),
            "latency_ms": latency_ms(variant, x[:1]),
        })
    return rows


def _choose(rows: list[dict[str, Any]], tolerance: float) -> str:
    """The fastest variant whose validation accuracy is within ``tolerance`` of fp32's."""
    fp32 = next(row for row in rows if row["variant"] == "fp32")
    allowed = [r for r in rows
               if r["validation_accuracy"] >= fp32["validation_accuracy"] - tolerance]
    return str(min(allowed, key=lambda row: row["latency_ms"])["variant"])


def _reference(clips: ClipSet, split: Split, embeddings: np.ndarray, front: FrontEnd,
               seed: int) -> dict[str, Any]:
    """The drift reference: per-clip signals of the training clips, and their embeddings'
    centroid and spread (distances are in units of the spread)."""
    import pandas as pd

    centroid = embeddings.mean(axis=0)
    spread = float(np.sqrt(np.mean(np.sum((embeddings - centroid) ** 2, axis=1)))) or 1.0
    rows = [spectrum(clips.signals[i], front).clip_stats() for i in split.train]
    frame = pd.DataFrame(rows, columns=list(CLIP_STATS))
    frame[EMBEDDING_DISTANCE] = np.linalg.norm(embeddings - centroid, axis=1) / spread
    reference = build_reference(frame, [{"name": n, "type": "numeric"} for n in DRIFT_FEATURES],
                                seed=seed)
    reference["embedding"] = {"centroid": centroid.tolist(), "spread": spread}
    return reference


def _rescore(folder: Path, clips: ClipSet, split: Split, classes: list[str]) -> Any:
    """The champion's prediction of this run's test clips (None if it cannot give one)."""
    try:
        champion: AudioClassifier = load_classifier(folder)
        probabilities, _ = champion.predict([clips.signals[i] for i in split.test])
    except Exception as exc:  # a champion that cannot score leaves the gate to the baseline
        log.warning("Could not re-score the champion in %s (%s).", folder, exc)
        return None
    if champion.classes != classes:
        log.warning("The champion knows other classes (%s): not compared.", champion.classes)
        return None
    return labelled.prediction(clips.labels[split.test], probabilities, classes)


def _data_hash(path: Path) -> str:
    if path.is_file():
        return file_hash(path)
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(file_hash(file).encode())
    return digest.hexdigest()


def summary(result: AudioResult) -> str:
    meta = result.metadata
    metrics, baseline = meta["metrics"], meta["baseline_metrics"]
    lines = [
        f"Audio classifier {meta['model_name']} v{meta['model_version']}: {meta['model_family']}"
        f" ({meta['serving_variant']} served), {len(meta['classes'])} classes, clips "
        f"train/validation/test {meta['clips']['train']}/{meta['clips']['validation']}/"
        f"{meta['clips']['test']}" + (", voices/speakers held out" if meta["held_out_groups"]
                                      else ""),
    ]
    for name in ("accuracy", "f1_macro"):
        lines.append(
            f"  {name:<10} {metrics[name]:.4f} [{metrics[name + '_ci_low']:.4f}, "
            f"{metrics[name + '_ci_high']:.4f}]  baseline ({meta['baseline']}) {baseline[name]:.4f}"
        )
    for row in meta["quantisation"]:
        lines.append(f"  {row['variant']:<5} validation accuracy {row['validation_accuracy']:.4f}"
                     f", {row['latency_ms']:.3f} ms per clip")
    if result.skipped:
        lines.append(f"  {len(result.skipped)} clip(s) skipped:")
        lines += [f"    {reason}" for _, reason in result.skipped[:20]]
    lines.append(f"  {result.decision.verdict}")
    return "\n".join(lines)


def model_card(config: Config, metadata: dict[str, Any]) -> str:
    metrics, baseline = metadata["metrics"], metadata["baseline_metrics"]
    rows = "\n".join(
        f"| {row['variant']} | {row['validation_accuracy']:.4f} | {row['latency_ms']:.3f} |"
        for row in metadata["quantisation"]
    )
    return "\n".join([
        f"# Model card: {config.project.name}",
        "",
        f"Model `{metadata['model_name']}` version {metadata['model_version']} (MLflow run "
        f"`{metadata['run_id']}`), trained {metadata['trained_at']}: {metadata['model_family']}"
        f" on {metadata['input']} features, serving {metadata['serving_variant']}.",
        "",
        "## Intended use",
        config.project.description or "Not described: set project.description in the config.",
        "",
        f"Classifies audio clips into {', '.join(metadata['classes'])}. Clips are mixed to "
        f"mono, resampled to {metadata['front_end']['sample_rate']} Hz and fitted to "
        f"{metadata['front_end']['clip_seconds']} s.",
        "",
        "## Evaluation (test clips" + (", unseen voices/speakers)" if
                                       metadata["held_out_groups"] else ")"),
        f"accuracy {metrics['accuracy']:.4f} [{metrics['accuracy_ci_low']:.4f}, "
        f"{metrics['accuracy_ci_high']:.4f}], macro F1 {metrics['f1_macro']:.4f}; the baseline "
        f"({metadata['baseline']}): accuracy {baseline['accuracy']:.4f}.",
        "",
        "## Quantisation (validation clips)",
        "| variant | accuracy | ms per clip |",
        "| --- | --- | --- |",
        rows,
        "",
        "## Drift signals",
        "clip duration, RMS loudness, silence ratio, spectral centroid, and the distance of "
        "the penultimate-layer embeddings from the training centroid.",
        "",
        f"Skipped clips at training: {metadata['clips']['skipped']}.",
        "",
        f"Data hash `{metadata['data_hash']}`, seed {metadata['seed']}, threads "
        f"{metadata['threads']}. Metadata: {json.dumps(metadata['clips'])}.",
    ])
