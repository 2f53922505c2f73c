"""*Labelled examples*: what the audio and text classification kinds share at training.

A clip or a document has one label; both kinds split their examples the same way (held-out
groups when the data has them: speakers, voices, authors; else stratified by label), score a
model with the tabular kind's classification metrics and bootstrap intervals (scoring.py),
compare two models on the same test examples by the paired test of the primary metric
(compare.py: exact McNemar for accuracy, a paired bootstrap for macro F1), and gate a model the
same way (:func:`gate`); registry.py registers and exports it, as every kind's.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient

from ..bundle import save_bundle
from ..compare import Comparison, compare_predictions
from ..config import Config
from ..errors import DataValidationError, RegistryError
from ..fallback import keep_previous
from ..registry import (
    BUNDLE_ARTIFACT,
    CHAMPION,
    Decision,
    champion_dir,
    champion_version,
    decide,
    set_alias,
    setup,
)
from ..scoring import MULTI, Prediction, score


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_examples(
    labels: np.ndarray,
    groups: np.ndarray | None,
    test_size: float,
    validation_size: float,
    seed: int,
) -> Split:
    """Row positions of train, validation and test.

    With ``groups`` every group's examples land in one part (whole groups are drawn, seeded,
    until each held-out part has its share of examples); without, each label is split in the
    same proportions. Every label must keep training examples.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    if groups is not None:
        names = np.unique(groups)
        if len(names) < 3:
            raise DataValidationError(
                f"The data has {len(names)} group(s): holding groups out needs at least 3 "
                "(one each for train, validation and test). Add groups or drop the group column."
            )
        order = rng.permutation(names)
        sizes = {name: int(np.sum(groups == name)) for name in order}
        parts: list[list[Any]] = [[], [], []]  # test, validation, train
        filled = [0, 0]
        wanted = [test_size * n, validation_size * n]
        for name in order:
            part = next((i for i in (0, 1) if filled[i] < wanted[i] and len(order) - 1 > i), 2)
            if part < 2:
                filled[part] += sizes[name]
            parts[part].append(name)
        if not parts[2]:
            parts[2].append(parts[1].pop())
        test, validation, train = (np.flatnonzero(np.isin(groups, p)) for p in parts)
    else:
        test_rows, validation_rows, train_rows = [], [], []
        for label in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == label))
            n_test = int(round(len(rows) * test_size))
            n_validation = int(round(len(rows) * validation_size))
            test_rows.append(rows[:n_test])
            validation_rows.append(rows[n_test : n_test + n_validation])
            train_rows.append(rows[n_test + n_validation :])
        train, validation, test = (np.sort(np.concatenate(r)) for r in
                                   (train_rows, validation_rows, test_rows))
    missing = sorted(set(labels.tolist()) - set(labels[train].tolist()))
    if missing:
        raise DataValidationError(
            f"Label(s) {', '.join(map(str, missing))} have no training examples after the split: "
            "add examples (in more groups) of them, or lower test_size / validation_size."
        )
    if not len(validation) or not len(test):
        raise DataValidationError(
            f"The split left {len(validation)} validation and {len(test)} test examples of "
            f"{n}: add data or raise test_size / validation_size."
        )
    return Split(train, validation, test)


def prediction(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> Prediction:
    predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    return Prediction(labels, predicted, probabilities, list(classes))


def majority(train_codes: np.ndarray, rows: int, n_classes: int) -> np.ndarray:
    """The majority-class baseline's probabilities: the training label shares, every row."""
    shares = np.bincount(train_codes, minlength=n_classes) / len(train_codes)
    return np.tile(shares, (rows, 1))


def metrics(prediction: Prediction, samples: int, seed: int) -> dict[str, float]:
    """Accuracy, macro F1, balanced accuracy, log loss, ... with bootstrap 95% intervals."""
    return score(prediction, MULTI, samples, seed)


def paired(
    metric: str, old: Prediction, new: Prediction, alpha: float, versions: tuple[str, str],
    seed: int,
) -> Comparison:
    """The one-sided paired test of "``new`` is better than ``old``" on the same examples."""
    return compare_predictions(metric, old, new, paired=True, alpha=alpha, versions=versions,
                               seed=seed)


def gate(
    config: Config,
    primary: str,
    model: Prediction,
    baseline: Prediction,
    champion: Prediction | None,
    champion_label: str,
    new_version: str,
    baseline_label: str,
) -> tuple[Decision, Comparison, Comparison | None]:
    """The promotion gate: beat the baseline, then the champion, each by the paired test on
    the same test examples (registry.decide)."""
    alpha, seed = config.promotion.alpha, config.seed
    against_baseline = paired(primary, baseline, model, alpha, ("baseline", new_version), seed)
    against_champion = None
    if champion is not None:
        against_champion = paired(primary, champion, model, alpha,
                                  (champion_label, new_version), seed)
    decision = decide(
        primary,
        against_baseline.challenger_value,
        against_baseline.champion_value,
        against_champion.champion_value if against_champion else None,
        f"v{champion_label}" if champion is not None else "",
        config.promotion,
        against_champion,
        against_baseline,
        higher=True,
        baseline_label=f"the baseline ({baseline_label})",
    )
    return decision, against_baseline, against_champion


def current_champion(config: Config) -> str | None:
    """The champion's registered version, when the store has one and its bundle is exported."""
    setup(config)
    version = champion_version(config)
    if version is None or not (champion_dir(config) / "metadata.json").exists():
        return None
    return str(version.version)


def write_bundle(
    folder: Path, files: dict[str, bytes], metadata: dict[str, Any], reference: dict[str, Any]
) -> Path:
    """A bundle folder (bundle.py's layout) whose model folder holds ``files`` (ONNX graphs)."""

    def saver(_: Any, path: Path) -> None:
        path.mkdir(parents=True)
        for name, data in files.items():
            (path / name).write_bytes(data)

    return save_bundle(folder, None, metadata, reference, model_saver=saver)


def promote_registered(config: Config, version: str, reason: str, force: bool) -> Decision:
    """``promote --version N``: a version becomes champion at training, by the gate on the
    test examples of its run; by hand only with ``--force --reason``, which exports the
    version's registered bundle as the champion."""
    if not force:
        return Decision(
            False,
            "this kind promotes at training (the paired test against the baseline and the "
            "champion on the same test examples): run `train`, or `promote --version N --force "
            "--reason TEXT` to serve a version anyway",
        )
    setup(config)
    name = config.tracking.registered_model
    client = MlflowClient()
    try:
        run_id = client.get_model_version(name, str(version)).run_id
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"Model {name!r} has no version {version}.") from exc
    decision = Decision(True, f"forced: {reason or 'no reason given'}")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=BUNDLE_ARTIFACT, dst_path=tmp))

        def copy(folder: Path) -> Path:
            staging = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(bundle, staging)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
            return folder

        set_alias(client, name, CHAMPION, str(version))
        client.set_model_version_tag(name, str(version), "promotion_reason", decision.reason)
        keep_previous(config, str(version))
        copy(champion_dir(config))
    return decision
