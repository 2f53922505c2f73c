"""Prometheus metrics: per-app registries in one process, shared counts across worker processes."""

from __future__ import annotations

import sys

import httpx
from fastapi.testclient import TestClient
from mlgen_runtime.serving.app import create_app
from prometheus_client.parser import text_string_to_metric_families
from serving_support import (
    free_port,
    sample_value,
    serve_command,
    server_process,
    service_root,
    valid_record,
)

PACKAGE = "mlgen_runtime"


def test_each_app_counts_only_its_own_requests(trained_service):
    first = TestClient(create_app(trained_service.config, trained_service.bundle))
    second = TestClient(create_app(trained_service.config, trained_service.bundle))
    for _ in range(3):
        first.get("/health")
    second.get("/health")
    health = {"route": "/health", "status": "200"}
    assert sample_value(first.get("/metrics").text, "http_requests_total", health) == 3
    assert sample_value(second.get("/metrics").text, "http_requests_total", health) == 1


def test_every_documented_metric_is_exposed(trained_service):
    client = TestClient(create_app(trained_service.config, trained_service.bundle))
    client.post("/predict", json=valid_record(trained_service.bundle.features))
    client.post("/predict", json={"no such feature": 1})
    names = {family.name for family in text_string_to_metric_families(client.get("/metrics").text)}
    documented = {
        "http_requests",
        "http_request_duration_seconds",
        "model_predictions",
        "model_prediction_score",
        "model_validation_errors",
        "model_info",
        "model_feature_drift",
        "model_feature_drift_alert",
        "model_drift_window_rows",
        "model_fallback_active",
    }
    assert documented <= names


def test_the_documented_uvicorn_factory_command_serves_the_champion(trained_service, tmp_path):
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", f"{PACKAGE}.serving.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port),
    ]
    env = {"MLSERVICE_ROOT": str(service_root(trained_service.config, tmp_path / "service"))}
    with server_process(command, port, env) as server:
        url = server.url
        assert httpx.get(f"{url}/ready").status_code == 200
        metadata = httpx.get(f"{url}/metadata").json()
        assert metadata["model_version"] == trained_service.bundle.model_version
        assert metadata["source"] == "registry"
        record = valid_record(trained_service.bundle.features)
        assert httpx.post(f"{url}/predict", json=record).status_code == 200


def test_workers_share_their_counts_through_the_multiprocess_folder(trained_service, tmp_path):
    port = free_port()
    folder = tmp_path / "prometheus"
    command = serve_command(port, workers=2)
    env = {
        "MLSERVICE_ROOT": str(service_root(trained_service.config, tmp_path / "service")),
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    record = valid_record(trained_service.bundle.features)
    requests = 12
    with server_process(command, port, env) as server:
        url = server.url
        for _ in range(requests):
            # A new connection per request lets either worker take it.
            assert httpx.post(f"{url}/predict", json=record).status_code == 200
        scrape = httpx.get(f"{url}/metrics").text
        # Each live worker keeps value files there (<type>_<mode>_<pid>.db) for scrapes to merge.
        pids = {path.stem.rsplit("_", 1)[1] for path in folder.glob("gauge_live*.db")}
    predict_ok = {"route": "/predict", "method": "POST", "status": "200"}
    assert sample_value(scrape, "http_requests_total", predict_ok) == requests
    assert len(pids) == 2
    # A stopped worker's live gauges are dropped, so they cannot haunt the next scrape.
    assert not list(folder.glob("gauge_live*.db"))
