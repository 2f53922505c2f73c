"""Shared fixtures: the service trained once, on its own sample data, in a throwaway folder.

Nothing here writes into the service's MLflow store, artifacts or reports, and a developer's
``MLFLOW_TRACKING_URI`` receives no test runs (see ``mlgen_runtime.testing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from mlgen_runtime.bundle import Bundle
from mlgen_runtime.config import Config, load_config
from mlgen_runtime.registry import load_registered
from mlgen_runtime.testing import bounded_sample, isolated_config, isolated_environment
from mlgen_runtime.train import TrainResult, train

SERVICE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Trained:
    config: Config
    bundle: Bundle
    result: TrainResult
    data: Path


@pytest.fixture(scope="session", autouse=True)
def _isolated_session():
    with isolated_environment():
        yield


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config(SERVICE_ROOT)


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    return bounded_sample(SERVICE_ROOT, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, sample_data) -> Trained:
    """The configured model trained on the sample (no tuning: that is the real run's job).

    The version just trained, promoted or not: on a small sample it may not beat its baseline
    significantly, and these tests check that the service works, not how good the model is.
    """
    config = isolated_config(
        SERVICE_ROOT,
        tmp_path_factory.mktemp("service"),
        # No search: trials 0 with a time budget would search until the budget is spent.
        {"data": {"path": str(sample_data)}, "tuning": {"trials": 0, "time_budget_seconds": None}},
    )
    result = train(config)
    return Trained(config, load_registered(config, result.version), result, sample_data)
