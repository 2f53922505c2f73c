"""A *bundle* is everything serving needs about one trained model, as files on disk.

Training writes the champion's bundle to ``artifacts/champion/`` (and logs the same files to
the MLflow run); serving loads it from the registry alias ``champion`` and falls back to this
folder when the tracking store is unreachable.

Layout of a bundle folder::

    model/                   an MLflow sklearn model (the whole fitted Pipeline)
    metadata.json            model name/version/run id, task, classes, resolved features, metrics
    reference_profile.json   the drift reference built from the training split
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference_profile.json"
MODEL_DIR = "model"


@dataclass(frozen=True)
class Bundle:
    """A loaded model with the facts serving and monitoring need about it."""

    pipeline: Any
    metadata: dict[str, Any]
    reference: dict[str, Any]
    source: str = "file"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.metadata["task"]

    @property
    def features(self) -> list[dict[str, Any]]:
        """The raw input features a request carries, as resolved at training time."""
        return self.metadata["features"]

    @property
    def ignored_columns(self) -> list[str]:
        """The data's columns that are not features (the target, ids, excluded ones): a
        request may carry them, as a row of the data file does; they are dropped. A bundle
        trained before this was recorded knows its target only."""
        recorded = self.metadata.get("ignored_columns")
        if recorded is not None:
            return [str(name) for name in recorded]
        target = self.metadata.get("target")
        return [str(target)] if target else []

    @property
    def classes(self) -> list[Any] | None:
        return self.metadata.get("classes")

    @property
    def model_name(self) -> str:
        return str(self.metadata.get("model_name", "model"))

    @property
    def model_version(self) -> str:
        return str(self.metadata.get("model_version", "0"))


def save_bundle(
    directory: Path,
    pipeline: Any,
    metadata: dict[str, Any],
    reference: dict[str, Any],
    model_saver: Any = None,
) -> Path:
    """Write a bundle folder atomically (a temporary sibling, then a rename).

    ``model_saver(pipeline, path)`` writes the model folder; the default saves an MLflow
    sklearn model. Several processes of one service (concurrent ``train`` runs on a machine)
    each write their own temporary folder and swap it in under a lock: the last one wins
    whole, none sees another's half-written files.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(directory)
    try:
        tmp.mkdir()
        saver = model_saver or _save_mlflow_model
        saver(pipeline, tmp / MODEL_DIR)
        (tmp / METADATA_FILE).write_text(
            json.dumps(metadata, indent=2, sort_keys=True, default=str)
        )
        (tmp / REFERENCE_FILE).write_text(json.dumps(reference, sort_keys=True))
        swap_in(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def staging_dir(directory: Path) -> Path:
    """A temporary sibling of ``directory`` that no other process uses."""
    return directory.with_name(f"{directory.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def bundle_lock(directory: Path) -> Iterator[None]:
    """Held while a bundle folder is replaced or copied (processes of one machine)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.with_name(directory.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def swap_in(staged: Path, directory: Path) -> None:
    """Replace ``directory`` by the complete folder ``staged``."""
    with bundle_lock(directory):
        if directory.exists():
            shutil.rmtree(directory)
        staged.rename(directory)


def load_bundle_dir(directory: Path, source: str = "file") -> Bundle:
    """Load a bundle folder written by :func:`save_bundle` (or downloaded from a run)."""
    directory = Path(directory)
    missing = [
        name
        for name in (MODEL_DIR, METADATA_FILE, REFERENCE_FILE)
        if not (directory / name).exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"Model bundle at {directory} is incomplete (missing {', '.join(missing)}). "
            "Run `make train` to train and export a champion."
        )
    pipeline = load_model_dir(directory / MODEL_DIR)
    metadata = load_metadata(directory)
    reference = json.loads((directory / REFERENCE_FILE).read_text())
    return Bundle(pipeline=pipeline, metadata=metadata, reference=reference, source=source)


def load_model_dir(model_dir: Path) -> Any:
    """The fitted pipeline of an MLflow sklearn model folder.

    A folder as this runtime saves it (a pickle or cloudpickle file, no code paths) is
    unpickled directly, as ``mlflow.sklearn.load_model`` would: importing MLflow costs ~2 s of
    CPU, which ``investigate`` and the service's start need not pay. Anything else (another
    serialization, code paths to add) is loaded by MLflow itself."""
    import yaml

    model_dir = Path(model_dir)
    try:
        flavors = yaml.safe_load((model_dir / "MLmodel").read_text()).get("flavors") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        flavors = {}
    sklearn = flavors.get("sklearn") or {}
    pickled = sklearn.get("pickled_model")
    if (
        sklearn.get("serialization_format") in ("pickle", "cloudpickle")
        and not sklearn.get("code")
        and isinstance(pickled, str)
        and (model_dir / pickled).is_file()
    ):
        if sklearn["serialization_format"] == "cloudpickle":
            import cloudpickle as pickler
        else:
            import pickle as pickler
        with open(model_dir / pickled, "rb") as f:
            return pickler.load(f)
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(model_dir))


def load_metadata(directory: Path) -> dict[str, Any]:
    """A bundle folder's ``metadata.json``, without loading its model."""
    return json.loads((Path(directory) / METADATA_FILE).read_text())


def pip_requirements() -> list[str]:
    """What a saved model needs, listed: MLflow's own inference of it starts a subprocess that
    imports the model (3 s on an idle machine, 13 s on a busy one) on every save."""
    import cloudpickle
    import lightgbm
    import numpy as np
    import pandas as pd
    import sklearn

    return [
        f"scikit-learn=={sklearn.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
    ]


def _save_mlflow_model(pipeline: Any, path: Path) -> None:
    import mlflow.sklearn

    mlflow.sklearn.save_model(pipeline, str(path), serialization_format="cloudpickle",
                              pip_requirements=pip_requirements())
