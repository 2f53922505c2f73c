"""Shared fixtures: the service under test (see service_fixture.py) and one real training run.

``trained_service`` trains the configured model once per test session on the service's own
sample data, with the MLflow store, artifacts and reports in a temporary folder, and exposes
the config, the champion bundle loaded back from the registry, and the training result.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlgen_runtime.registry import load_champion
from mlgen_runtime.testing import bounded_sample, isolated_environment
from mlgen_runtime.train import train
from service_fixture import SERVICE_ROOT, TrainedService, isolated_config


@pytest.fixture(scope="session", autouse=True)
def _isolated_session():
    with isolated_environment():
        yield


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    """The data the tests train on: data.sample_path if present, else data.path, bounded."""
    return bounded_sample(SERVICE_ROOT, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained_service(tmp_path_factory, sample_data) -> TrainedService:
    # Tuning is tested on its own; here it would only multiply the session's run time.
    config = isolated_config(
        tmp_path_factory.mktemp("service"),
        {"data": {"path": str(sample_data)}, "tuning": {"trials": 0}},
    )
    result = train(config)
    return TrainedService(config=config, bundle=load_champion(config), result=result)
