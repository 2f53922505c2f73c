"""The HTTP API serves the trained model: train -> serve -> predict -> metadata -> metrics."""

from __future__ import annotations

import csv
import itertools
import json
import math

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.data import load_data
from mlgen_runtime.serving.app import create_app
from mlgen_runtime.serving.schemas import (
    BatchResponse,
    PredictionResponse,
)
from serving_support import fit_bundle, free_port, live_server, sample_value, valid_record
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge


@pytest.fixture
def app(trained_service):
    return create_app(trained_service.config, trained_service.bundle)


@pytest.fixture
def client(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture
def record(trained_service):
    return valid_record(trained_service.bundle.features)


def test_predict_returns_the_pipelines_prediction_with_model_version(
    client, trained_service, record
):
    bundle = trained_service.bundle
    response = client.post("/predict", json=record)
    assert response.status_code == 200
    body = response.json()
    frame_prediction = bundle.pipeline.predict(
        client.app.state.service.model.predictor.model_input([record])
    )[0]
    if bundle.task == "regression":
        assert body["probabilities"] is None
        assert body["prediction"] == pytest.approx(float(frame_prediction))
    else:
        assert str(body["prediction"]) == str(frame_prediction)
        assert set(body["probabilities"]) == {str(c) for c in bundle.pipeline.classes_}
        assert math.fsum(body["probabilities"].values()) == pytest.approx(1.0)
    assert body["model_version"] == bundle.model_version
    assert body["model_name"] == bundle.model_name
    assert body["out_of_range"] == []


def test_the_request_id_is_the_servers_and_a_clients_own_is_echoed_beside_it(client, record):
    generated = client.post("/predict", json=record)
    assert len(generated.headers["x-request-id"]) == 32
    assert generated.json()["request_id"] == generated.headers["x-request-id"]
    assert "x-client-request-id" not in generated.headers
    given = client.post("/predict", json=record, headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-client-request-id"] == "trace-42"
    assert given.json()["request_id"] == given.headers["x-request-id"] != "trace-42"
    again = client.post("/predict", json=record, headers={"X-Request-ID": "trace-42"})
    assert again.json()["request_id"] not in ("trace-42", given.json()["request_id"])


def test_a_client_id_unfit_for_headers_is_not_echoed(client):
    response = client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert "x-client-request-id" not in response.headers


def test_batch_predicts_every_record_in_order(client, trained_service, record):
    bundle = trained_service.bundle
    records = [record, {}, record]
    response = client.post("/predict/batch", json={"records": records})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 3
    single = client.post("/predict", json=record).json()
    assert predictions[0]["prediction"] == single["prediction"]
    assert predictions[2]["prediction"] == single["prediction"]
    assert response.json()["model_version"] == bundle.model_version


def test_a_columnar_batch_predicts_what_the_same_records_predict(client, trained_service):
    features = trained_service.bundle.features
    records = [valid_record(features), {}, valid_record(features)]
    omitted = features[0]["name"]
    del records[2][omitted]
    columns = {
        f["name"]: [record.get(f["name"]) for record in records]
        for f in features
        if f["name"] != omitted
    }
    columns[omitted] = [records[0][omitted], None, None]
    by_records = client.post("/predict/batch", json={"records": records})
    # An omitted feature is missing in every row, as an omitted key is in a record.
    partial = {name: values[1:] for name, values in columns.items() if name != omitted}
    by_columns = client.post("/predict/batch", json={"columns": columns})
    assert by_records.status_code == by_columns.status_code == 200
    assert by_columns.json()["predictions"] == by_records.json()["predictions"]
    missing_first = client.post("/predict/batch", json={"columns": partial})
    assert missing_first.json()["predictions"] == by_records.json()["predictions"][1:]


def training_rows(path, names: list[str], count: int) -> tuple[list[dict], list[dict]]:
    """The first ``count`` rows of a CSV file as ``csv.DictReader`` reads them (every value a
    string) and as pandas writes them to JSON."""
    with open(path, newline="") as handle:
        rows = itertools.islice(csv.DictReader(handle), count)
        text = [{name: row[name] for name in names} for row in rows]
    frame = load_data(path).head(count)[names]
    return text, json.loads(frame.to_json(orient="records"))


def assert_scored_as_training_reads(client, bundle, rows: list[dict], frame) -> None:
    """/predict and /predict/batch (records and columns) take ``rows`` and answer what the
    pipeline answers for ``frame``, the same rows as training reads them."""
    singles = [client.post("/predict", json=row) for row in rows]
    batches = [
        client.post("/predict/batch", json={"records": rows}),
        client.post("/predict/batch", json={"columns": {n: [r[n] for r in rows] for n in rows[0]}}),
    ]
    for response in singles + batches:
        assert response.status_code == 200, response.text
    answers = [
        [response.json() for response in singles],
        *(batch.json()["predictions"] for batch in batches),
    ]
    if bundle.task == "regression":
        expected = bundle.pipeline.predict(frame).tolist()
        for answer in answers:
            served = [a["prediction"] for a in answer]
            assert served == pytest.approx(expected, rel=1e-6, abs=1e-5)
        return
    expected = bundle.pipeline.predict_proba(frame).tolist()
    keys = [str(label) for label in bundle.pipeline.classes_]
    for answer in answers:
        served = [[a["probabilities"][key] for key in keys] for a in answer]
        assert served == [pytest.approx(row, rel=1e-6, abs=1e-5) for row in expected]


def test_rows_of_the_training_file_score_as_the_file_and_pandas_write_them(
    client, trained_service, sample_data
):
    bundle = trained_service.bundle
    names = [feature["name"] for feature in bundle.features]
    text, from_pandas = training_rows(sample_data, names, 20)
    frame = load_data(sample_data).head(20)[names]
    assert_scored_as_training_reads(client, bundle, text, frame)
    assert_scored_as_training_reads(client, bundle, from_pandas, frame)


def test_whole_rows_of_the_data_file_score_as_their_features_alone(
    client, trained_service, sample_data
):
    """A row copied from the CSV as it is (its target, id and excluded columns included) is
    answered, not refused for unknown fields: those columns are documented and dropped."""
    bundle = trained_service.bundle
    names = [feature["name"] for feature in bundle.features]
    with open(sample_data, newline="") as handle:
        whole = list(itertools.islice(csv.DictReader(handle), 20))
    others = set(whole[0]) - set(names)
    assert bundle.metadata["target"] in others
    assert set(bundle.ignored_columns) == others
    frame = load_data(sample_data).head(20)[names]
    assert_scored_as_training_reads(client, bundle, whole, frame)
    # The target's value plays no part in the answer.
    target = bundle.metadata["target"]
    answers = [
        client.post("/predict", json={**whole[0], target: value}).json()
        for value in (whole[1][target], "", None)
    ]
    assert len({json.dumps(a["probabilities"] or a["prediction"]) for a in answers}) == 1
    # A key that is neither a feature nor a column of the data is still a client's mistake.
    refused = client.post("/predict", json={**whole[0], "colour": "red"})
    assert refused.status_code == 422
    assert [item["field"] for item in refused.json()["fields"]] == ["colour"]
    documented = client.get("/openapi.json").json()["components"]["schemas"]["Record"]
    assert "accepted and ignored" in documented["properties"][target]["description"]


def test_a_yes_no_column_takes_the_files_words_and_refuses_others(default_service):
    """ISLR Default's ``student`` is "Yes"/"No" in the file: the model's boolean feature."""
    bundle, path = default_service.bundle, default_service.config.data.path
    student = next(f for f in bundle.features if f["name"] == "student")
    assert student["type"] == "boolean"
    names = [feature["name"] for feature in bundle.features]
    text, from_pandas = training_rows(path, names, 20)
    assert {row["student"] for row in text} == {"Yes", "No"}
    assert all(isinstance(row["balance"], str) for row in text)
    frame = load_data(path).head(20)[names]
    with TestClient(create_app(default_service.config, bundle)) as client:
        assert_scored_as_training_reads(client, bundle, text, frame)
        assert_scored_as_training_reads(client, bundle, from_pandas, frame)
        as_json = [{**row, "student": row["student"] == "Yes"} for row in from_pandas]
        assert_scored_as_training_reads(client, bundle, as_json, frame)

        bad = client.post("/predict", json={**text[0], "student": "maybe"})
        assert bad.status_code == 422
        (problem,) = bad.json()["fields"]
        assert problem["field"] == "student" and "not a boolean" in problem["problem"]
        batch = client.post(
            "/predict/batch", json={"records": [text[0], {**text[1], "balance": "lots"}]}
        )
        assert batch.status_code == 422
        (problem,) = batch.json()["fields"]
        assert problem["field"] == "records[1].balance" and "not a number" in problem["problem"]


def test_responses_have_the_documented_shape(client, record):
    single = client.post("/predict", json=record)
    batch = client.post("/predict/batch", json={"records": [record, {}]})
    assert single.headers["content-type"] == batch.headers["content-type"] == "application/json"
    for response, model in ((single, PredictionResponse), (batch, BatchResponse)):
        body = response.json()
        assert model.model_validate(body).model_dump(mode="json") == body


def test_omitted_features_are_missing_values_not_errors(client):
    response = client.post("/predict", json={})
    assert response.status_code == 200


def test_health_ready_and_metadata_describe_the_model(client, trained_service):
    bundle = trained_service.bundle
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == bundle.model_version
    metadata = client.get("/metadata").json()
    assert metadata["model_version"] == bundle.model_version
    assert metadata["run_id"] == bundle.metadata.get("run_id")
    assert [f["name"] for f in metadata["features"]] == [f["name"] for f in bundle.features]
    assert metadata["metrics"] == bundle.metadata["metrics"]
    # The fastest path that matched the pipeline at load time (onnx, compiled or sklearn).
    assert metadata["serving_path"] == client.app.state.service.model.predictor.serving_path
    assert metadata["serving_path"] in {"onnx", "compiled", "sklearn"}


def test_openapi_shows_the_real_feature_names_and_types(client, trained_service):
    document = client.get("/openapi.json").json()
    bodies = {
        path: document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        for path in ("/predict", "/predict/batch")
    }
    assert bodies["/predict"]["schema"] == {"$ref": "#/components/schemas/Record"}
    assert bodies["/predict/batch"]["schema"] == {"$ref": "#/components/schemas/BatchRequest"}
    batch = document["components"]["schemas"]["BatchRequest"]
    assert set(batch["properties"]) == {"records", "columns"}
    columns = document["components"]["schemas"]["Columns"]["properties"]
    # The features, then the data's other columns, documented as ignored.
    bundle = trained_service.bundle
    assert list(columns) == [feature["name"] for feature in bundle.features] + [
        name for name in bundle.ignored_columns
    ]
    schema = document["components"]["schemas"]["Record"]
    assert schema["additionalProperties"] is False
    for feature in trained_service.bundle.features:
        field = schema["properties"][feature["name"]]
        types = {option.get("type") for option in field["anyOf"]}
        expected = {
            "numeric": "number",
            "boolean": "boolean",
        }.get(feature["type"], "string")
        assert types == {expected, "null"}
        if feature["type"] == "categorical" and feature.get("categories"):
            enum = next(option["enum"] for option in field["anyOf"] if "enum" in option)
            assert enum == feature["categories"]


def test_the_docs_example_is_a_training_row_that_scores_in_range(client, trained_service):
    document = client.get("/openapi.json").json()
    example = trained_service.bundle.metadata["example"]
    # A row with a value for every feature, when the data has one (missing ones left out).
    assert example and set(example) <= {f["name"] for f in trained_service.bundle.features}
    for path, body in (("/predict", example), ("/predict/batch", {"records": [example]})):
        content = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        (shown,) = content["examples"].values()
        assert shown["value"] == body
        response = client.post(path, json=body)
        assert response.status_code == 200
        answer = response.json()
        for prediction in answer.get("predictions", [answer]):
            assert prediction["out_of_range"] == []


def test_metrics_count_requests_by_route_template_and_show_drift(
    client, trained_service, record
):
    rows = trained_service.config.drift.min_rows
    client.post("/predict/batch", json={"records": [record] * rows})
    client.post("/predict", json=record)
    client.get("/does-not-exist/1")
    client.get("/does-not-exist/2")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/predict/batch",status="200"} 1.0' in text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 2.0' in text
    assert f"model_drift_window_rows {float(rows + 1)}" in text
    # The same row repeated is as far from the training distribution as data can be.
    assert "model_feature_drift_alert{" in text and '} 1.0' in text
    version = trained_service.bundle.model_version
    version_label = 'model_version="' + version + '"'
    assert "model_prediction_score_count{" + version_label + "} " + str(float(rows + 1)) in text
    assert 'model_info{name="' + trained_service.bundle.model_name + '"' in text


def test_a_service_without_a_model_starts_and_answers_503(trained_service, tmp_path):
    config = trained_service.config
    # No tracking server listens on this port, no such model is registered, and no champion
    # was exported to this folder.
    empty = config.model_copy(
        update={
            "tracking": config.tracking.model_copy(
                update={
                    "uri": f"http://127.0.0.1:{free_port()}",
                    "registered_model": "never-trained",
                }
            ),
            "paths": config.paths.model_copy(update={"artifacts": str(tmp_path)}),
        }
    )
    with TestClient(create_app(empty)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "make train" in ready.json()["reason"]
        for path in ("/predict", "/predict/batch"):
            response = client.post(path, json={})
            assert response.status_code == 503
            assert response.json()["error"] == "model_unavailable"
        assert client.get("/metadata").status_code == 503
        assert "model_fallback_active" in client.get("/metrics").text


def test_a_real_uvicorn_server_serves_predictions_and_metrics(app, record):
    with live_server(app) as url, httpx.Client(base_url=url) as http:
        assert http.get("/ready").status_code == 200
        prediction = http.post("/predict", json=record)
        assert prediction.status_code == 200
        assert prediction.headers["x-request-id"] == prediction.json()["request_id"]
        assert http.post("/predict", json={"no such feature": 1}).status_code == 422
        metrics = http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'route="/predict",status="200"} 1.0' in metrics.text
        assert 'model_validation_errors_total{route="/predict"} 1.0' in metrics.text


def test_a_regression_model_answers_values_and_scores_them(trained_service):
    diabetes = load_diabetes(as_frame=True)
    bundle = fit_bundle(diabetes.data, diabetes.target, "regression", Ridge())
    row = diabetes.data.iloc[0].to_dict()
    config = trained_service.config.model_copy(update={"task": "regression"})
    with TestClient(create_app(config, bundle)) as client:
        body = client.post("/predict", json=row).json()
        expected = bundle.pipeline.predict(pd.DataFrame([row]))[0]
        assert body["prediction"] == pytest.approx(expected)
        assert body["probabilities"] is None
        metrics = client.get("/metrics").text
        assert 'model_predictions_total{model_version="7",outcome="value"} 1.0' in metrics
        score_sum = sample_value(metrics, "model_prediction_score_sum", {"model_version": "7"})
        assert score_sum == pytest.approx(body["prediction"])
