"""Helpers shared by the rollout and compare tests: a real weaker model and rollout configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlgen_runtime import bundle as bundle_format
from mlgen_runtime.config import Config
from mlgen_runtime.data import (
    Splits,
    load_data,
    split,
)
from mlgen_runtime.model import build_baseline
from service_fixture import TrainedService, isolated_config
from sklearn.linear_model import LogisticRegression, Ridge


def splits_of(trained: TrainedService) -> Splits:
    """The splits the trained service was trained and tested on."""
    config = trained.config
    return split(load_data(config.resolve(config.data.path)), config)


def features_and_target(trained: TrainedService, frame: pd.DataFrame) -> tuple[pd.DataFrame, Any]:
    names = [feature["name"] for feature in trained.bundle.features]
    return frame[names], frame[trained.config.data.target]


def as_requests(features: list[dict[str, Any]], frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``frame`` as request bodies for a model of ``features`` (missing as null)."""
    x = frame[[feature["name"] for feature in features]]
    return x.astype(object).where(x.notna(), None).to_dict(orient="records")


def outcome(task: str, truth: Any) -> dict[str, Any]:
    """The POST /feedback field carrying an observed outcome."""
    if task == "regression":
        return {"value": float(truth)}
    return {"label": truth.item() if hasattr(truth, "item") else truth}


def baseline_bundle(trained: TrainedService) -> bundle_format.Bundle:
    """The trained service's Dummy baseline as a bundle of its own (a real, weaker model)."""
    x, y = features_and_target(trained, splits_of(trained).train)
    metadata = {**trained.bundle.metadata, "model_version": "dummy", "run_id": "dummy-run"}
    baseline = build_baseline(trained.config.task).fit(x, y)
    return bundle_format.Bundle(baseline, metadata, trained.bundle.reference)


def save(bundle: bundle_format.Bundle, folder: Path) -> Path:
    return bundle_format.save_bundle(
        folder, bundle.pipeline, bundle.metadata, bundle.reference
    )


def rollout_config(folder: Path, challenger: Path | str, **rollout: Any) -> Config:
    """A throwaway service config whose rollout serves ``challenger`` (a bundle folder)."""
    settings = {"challenger": str(challenger), "min_samples": 30, **rollout}
    return isolated_config(folder, {"serving": {"rollout": settings}})


def settle(client: Any) -> None:
    """Wait until the challenger scored every queued shadow request and the log is written.

    What the service's shutdown does too; tests call it before reading the log or metrics.
    """
    client.app.state.service.model.rollout.flush()


def break_model(folder: Path, trained: TrainedService) -> None:
    """Replace the bundle's model with one fitted on a different number of columns.

    The files load, but every prediction raises, as a model exported from the wrong training
    run would.
    """
    _, y = features_and_target(trained, splits_of(trained).train)
    wrong_width = np.random.default_rng(0).normal(size=(len(y), len(trained.bundle.features) + 1))
    estimator = Ridge() if trained.config.task == "regression" else LogisticRegression()
    model_dir = folder / bundle_format.MODEL_DIR
    shutil.rmtree(model_dir)
    mlflow.sklearn.save_model(
        estimator.fit(wrong_width, y), str(model_dir), serialization_format="cloudpickle"
    )


def copy_bundle(source: Path, folder: Path, version: str) -> Path:
    """A copy of a bundle folder under another version (and run) id."""
    shutil.copytree(source, folder)
    path = folder / bundle_format.METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata.update(model_version=version, run_id=f"run-of-{version}")
    path.write_text(json.dumps(metadata))
    return folder
