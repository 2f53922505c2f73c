"""The service end to end on its own data: train, then answer over HTTP with rows of that data.

A model that cannot beat the baseline on your data is reported by ``train`` (its summary and
exit status), not here: these tests check that the service works, whatever the data.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.serving.app import create_app


@pytest.fixture(scope="module")
def client(trained):
    with TestClient(create_app(trained.config, trained.bundle)) as client:
        yield client


def _records(trained, n: int) -> list[dict]:
    """Rows of the training data as a client would send them: the feature columns only."""
    names = [feature["name"] for feature in trained.bundle.features]
    frame = pd.read_csv(trained.data) if trained.data.suffix == ".csv" else None
    if frame is None:
        frame = pd.read_parquet(trained.data)
    rows = frame.sample(min(n, len(frame)), random_state=0)[names]
    return json.loads(rows.to_json(orient="records", date_format="iso"))


def test_training_logs_finite_test_metrics_beside_the_baseline(trained):
    metrics = trained.bundle.metadata["metrics"]
    primary = trained.bundle.metadata["primary_metric"]
    assert math.isfinite(metrics[primary])
    assert primary in trained.bundle.metadata["baseline_metrics"]


def test_health_ready_and_metadata(client, trained):
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json()["status"] == "ready"
    assert client.get("/metadata").json()["target"] == trained.config.data.target


def test_a_row_of_the_data_is_predicted(client, trained):
    record = _records(trained, 1)[0]
    response = client.post("/predict", json=record)
    assert response.status_code == 200, response.text
    prediction = response.json()["prediction"]
    if trained.config.is_classification:
        assert str(prediction) in {str(c) for c in trained.bundle.metadata["classes"]}
    else:
        assert math.isfinite(prediction)


def test_a_batch_of_rows_gets_one_prediction_each(client, trained):
    records = _records(trained, 25)
    response = client.post("/predict/batch", json={"records": records})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(records)


def test_a_bad_request_names_the_field_and_is_counted(client):
    response = client.post("/predict", json={"no such feature": 1})
    assert response.status_code == 422
    assert response.json()["error"]
    assert "model_validation_errors_total" in client.get("/metrics").text
