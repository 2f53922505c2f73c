"""Fallback and degradation: model files broken on purpose, and what the service answers then."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.fallback import (
    BASELINE,
    PREVIOUS,
    fallback_dir,
    keep_previous,
    load_fallback,
)
from mlgen_runtime.registry import champion_dir
from mlgen_runtime.serving.app import create_app
from service_fixture import isolated_config
from serving_support import sample_value, valid_record


class Switchable:
    """The trained model, made to raise while ``broken`` is set (as after a bad deploy)."""

    def __init__(self, fitted):
        self.fitted = fitted
        self.classes_ = getattr(fitted, "classes_", None)
        self.broken = True

    def _check(self):
        if self.broken:
            raise OSError("model file truncated on a full disk")

    def predict(self, frame):
        self._check()
        return self.fitted.predict(frame)

    def predict_proba(self, frame):
        self._check()
        return self.fitted.predict_proba(frame)


def break_model_files(bundle_dir: Path) -> None:
    """Overwrite the pickled model of a bundle folder with garbage."""
    pickles = list((bundle_dir / "model").rglob("*.pkl"))
    assert pickles, f"no pickled model in {bundle_dir / 'model'}"
    for path in pickles:
        path.write_bytes(b"\x00 not a pickle")


@pytest.fixture
def offline(trained_service, tmp_path):
    """A copy of the trained service whose registry is unusable (its database is garbage),
    with the exported champion and the baseline fallback that training wrote."""
    broken_store = tmp_path / "broken.db"
    broken_store.write_bytes(b"this is not an sqlite database" * 100)
    config = isolated_config(
        tmp_path / "service", {"tracking": {"uri": f"sqlite:///{broken_store}"}}
    )
    shutil.copytree(champion_dir(trained_service.config), champion_dir(config))
    shutil.copytree(
        fallback_dir(trained_service.config, BASELINE), fallback_dir(config, BASELINE)
    )
    return config


def test_training_exports_the_champions_dummy_baseline_as_the_fallback(trained_service):
    fallback = load_fallback(trained_service.config)
    bundle = trained_service.bundle
    assert fallback.source == BASELINE
    assert fallback.model_version == f"baseline-of-{bundle.model_version}"
    assert fallback.features == bundle.features
    assert fallback.metadata["metrics"] == bundle.metadata["baseline_metrics"]


def test_a_champion_raising_at_prediction_time_is_answered_by_the_fallback(trained_service):
    bundle = trained_service.bundle
    model = Switchable(bundle.pipeline)
    champion = dataclasses.replace(bundle, pipeline=model)
    fallback = dataclasses.replace(
        bundle, metadata={**bundle.metadata, "model_version": "baseline-of-1"}, source=BASELINE
    )
    record = valid_record(bundle.features)
    with TestClient(create_app(trained_service.config, champion, fallback)) as client:
        answered = client.post("/predict/batch", json={"records": [record, record]})
        assert answered.status_code == 200
        assert answered.json()["model_version"] == "baseline-of-1"
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert "model file truncated" in ready.json()["reason"]
        metrics = client.get("/metrics").text
        assert sample_value(metrics, "model_fallback_active", {}) == 1
        assert sample_value(
            metrics, "model_fallback_predictions_total", {"reason": "champion_prediction_failed"}
        ) == 2

        model.broken = False
        recovered = client.post("/predict", json=record)
        assert recovered.json()["model_version"] == bundle.model_version
        assert client.get("/ready").json()["status"] == "ready"
        assert sample_value(client.get("/metrics").text, "model_fallback_active", {}) == 0


def test_broken_champion_files_and_registry_at_start_up_serve_the_baseline(offline):
    break_model_files(champion_dir(offline))
    with TestClient(create_app(offline)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert "could not be loaded" in ready.json()["reason"]
        metadata = client.get("/metadata").json()
        assert metadata["source"] == BASELINE
        answer = client.post("/predict", json={})
        assert answer.status_code == 200
        assert answer.json()["model_version"].startswith("baseline-of-")
        metrics = client.get("/metrics").text
    assert sample_value(metrics, "model_fallback_active", {}) == 1
    assert sample_value(metrics, "model_info", {"source": BASELINE}) == 1
    assert sample_value(
        metrics, "model_fallback_predictions_total", {"reason": "champion_load_failed"}
    ) == 1


def test_the_previous_champion_is_preferred_and_a_broken_one_is_skipped(offline, trained_service):
    version = trained_service.bundle.model_version
    assert keep_previous(offline, new_version=version) is None, "a model is not its own fallback"
    previous = keep_previous(offline, new_version=f"{version}0")
    assert previous == fallback_dir(offline, PREVIOUS)
    loaded = load_fallback(offline)
    assert (loaded.source, loaded.model_version) == (PREVIOUS, version)

    break_model_files(previous)
    assert load_fallback(offline).source == BASELINE


def test_a_registry_outage_serves_the_exported_champion_and_is_not_a_fallback(offline):
    with TestClient(create_app(offline)) as client:
        ready = client.get("/ready").json()
        metrics = client.get("/metrics").text
    assert ready["status"] == "ready"
    assert sample_value(metrics, "model_fallback_active", {}) == 0
    assert sample_value(metrics, "model_info", {"source": "file"}) == 1


def test_without_any_fallback_a_broken_champion_keeps_the_pod_out_of_rotation(offline):
    break_model_files(champion_dir(offline))
    shutil.rmtree(fallback_dir(offline, BASELINE))
    with TestClient(create_app(offline)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert client.post("/predict", json={}).status_code == 503
