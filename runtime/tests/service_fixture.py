"""The service the runtime's tests run against, and throwaway copies of it.

By default a small penguins service kept beside these tests (``fixture_service/``: the config
the template renders for the penguins example, its data and a ``custom_features.py``).
``MLGEN_SERVICE_ROOT`` points the same tests at any rendered service instead: mlgen's own
end-to-end tests run them on every example, so the engine is tested on each kind of data.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgen_runtime.bundle import Bundle
from mlgen_runtime.config import Config, deep_merge, load_config
from mlgen_runtime.testing import isolated_config as _isolated_config
from mlgen_runtime.train import TrainResult

SERVICE_ENV = "MLGEN_SERVICE_ROOT"
FIXTURE = Path(__file__).resolve().parent / "fixture_service"
SERVICE_ROOT = Path(os.environ.get(SERVICE_ENV) or FIXTURE).resolve()
if SERVICE_ROOT == FIXTURE:
    # The fixture's package (its custom_features module) is imported by name, as an installed
    # service's is.
    sys.path.insert(0, str(FIXTURE / "src"))


@dataclass(frozen=True)
class TrainedService:
    config: Config
    bundle: Bundle
    result: TrainResult


def isolated_config(folder: Path, overrides: dict[str, Any] | None = None) -> Config:
    """The config of a throwaway copy of the service under test, rooted at ``folder``.

    A service that chooses its family (``model.family: auto``, as ``mlgen new`` plans) is tested
    with one family and no time budget: this suite tests the engine's pieces (tuning, serving,
    fast paths) family by family; the choice itself has tests of its own (test_train.py).
    """
    pinned: dict[str, Any] = {}
    if load_config(SERVICE_ROOT).model.family == "auto":
        pinned = {
            "model": {"family": "hist_gradient_boosting"},
            "tuning": {"time_budget_seconds": None},
        }
    return _isolated_config(SERVICE_ROOT, folder, deep_merge(pinned, overrides or {}))


def islr_default_config(
    folder: Path, data: Path, features: list[dict[str, str]] | None = None, **params: Any
) -> Config:
    """The service under test, retargeted at ISLR's Default data (``data``): a linear model of
    ``default`` ("Yes" for 3.3% of card holders) chosen on PR AUC, the metric for rare
    positives; ``features`` as in the config (inferred when empty), ``params`` the model's."""
    return binary_config(folder, data, "default", "pr_auc", features=features, **params)


def binary_config(
    folder: Path,
    data: Path,
    target: str,
    primary: str,
    data_settings: dict[str, Any] | None = None,
    features: list[dict[str, str]] | None = None,
    **params: Any,
) -> Config:
    """The service under test, retargeted at a binary ``target`` of ``data``: a linear model
    chosen on ``primary``, no tuning; ``data_settings`` add to or replace the data section."""
    return isolated_config(
        folder,
        {
            "task": "binary_classification",
            "data": {
                "path": str(data),
                "sample_path": None,
                "target": target,
                "id_column": None,
                "time_column": None,
                "group_column": None,
                "exclude_columns": [],
                **(data_settings or {}),
            },
            "features": features or [],
            "split": {"strategy": "stratified"},
            "model": {"family": "linear", "class_weight": "none", "params": params},
            "metric": {"primary": primary},
            "tuning": {"trials": 0, "time_budget_seconds": None},
        },
    )
