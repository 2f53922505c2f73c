"""Bad requests get a 4xx naming the problem, never a 5xx, and never reach the model."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.serving.app import create_app
from mlgen_runtime.serving.predictor import Rows
from mlgen_runtime.serving.schemas import RequestBodies
from pydantic import ValidationError
from serving_support import fit_bundle, numeric_feature, valid_record
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression

API_KEY = "s3cret-key-for-tests"


@pytest.fixture
def client(trained_service):
    with TestClient(create_app(trained_service.config, trained_service.bundle)) as client:
        yield client


@pytest.fixture
def record(trained_service):
    return valid_record(trained_service.bundle.features)


def problems(response) -> dict[str, str]:
    return {item["field"]: item["problem"] for item in response.json()["fields"]}


def test_unknown_field_is_named_with_the_expected_ones(client, record, trained_service):
    response = client.post("/predict", json={**record, "colour": "red"})
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    first = trained_service.bundle.features[0]["name"]
    assert "unknown field" in problems(response)["colour"]
    assert first in problems(response)["colour"]


def test_wrong_type_names_the_field(client, record, trained_service):
    name = numeric_feature(trained_service.bundle.features)["name"]
    response = client.post("/predict", json={**record, name: "twelve"})
    assert response.status_code == 422
    assert "number" in problems(response)[name]
    assert name in response.json()["message"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_rejected_not_imputed(client, trained_service, literal):
    name = numeric_feature(trained_service.bundle.features)["name"]
    body = b"{" + json.dumps(name).encode() + b": " + literal + b"}"
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "send null" in problems(response)[name]


def test_a_category_never_seen_in_training_lists_the_known_ones(client, record, trained_service):
    categorical = [
        f for f in trained_service.bundle.features
        if f["type"] == "categorical" and f.get("categories")
    ]
    if not categorical:
        pytest.skip("this model has no categorical feature with known categories")
    feature = categorical[0]
    response = client.post("/predict", json={**record, feature["name"]: "never-seen-value"})
    assert response.status_code == 422
    assert str(feature["categories"][0]) in problems(response)[feature["name"]]


def test_a_bad_record_in_a_batch_is_located_by_index(client, record):
    response = client.post("/predict/batch", json={"records": [record, {**record, "bogus": 1}]})
    assert response.status_code == 422
    assert "records[1].bogus" in problems(response)


def test_invalid_json_and_wrong_shapes_are_422(client):
    headers = {"content-type": "application/json"}
    assert client.post("/predict", content=b"{oops", headers=headers).status_code == 422
    empty = client.post("/predict", content=b"", headers=headers)
    assert empty.status_code == 422
    assert problems(empty) == {"body": "the request body is empty; send a JSON object"}
    assert client.post("/predict", json=[1, 2]).status_code == 422
    assert client.post("/predict/batch", json={"records": []}).status_code == 422
    assert client.post("/predict/batch", json={"rows": []}).status_code == 422


def test_a_batch_over_the_limit_is_413(client, record, trained_service):
    limit = trained_service.config.serving.max_batch_size
    response = client.post("/predict/batch", json={"records": [{}] * (limit + 1)})
    assert response.status_code == 413
    assert str(limit) in response.json()["message"]
    name = trained_service.bundle.features[0]["name"]
    columns = client.post("/predict/batch", json={"columns": {name: [None] * (limit + 1)}})
    assert columns.status_code == 413
    assert problems(columns) == {f"columns.{name}": problems(response)["records"]}


def test_a_bad_column_value_is_located_by_feature_and_row(client, trained_service):
    name = numeric_feature(trained_service.bundle.features)["name"]
    response = client.post("/predict/batch", json={"columns": {name: [1.0, "twelve"]}})
    assert response.status_code == 422
    assert "number" in problems(response)[f"columns.{name}[1]"]


@pytest.mark.parametrize(
    "body",
    [
        {"columns": {}},
        {"columns": {0: [None], 1: [None, None]}},
        {"records": [{}], "columns": {0: [None]}},
        {},
    ],
    ids=["no-column", "uneven-columns", "both-forms", "neither-form"],
)
def test_a_batch_needs_exactly_one_form_and_columns_of_one_length(
    client, trained_service, body
):
    # Columns are given by feature position here: the names are the trained model's.
    names = [feature["name"] for feature in trained_service.bundle.features]
    if "columns" in body:
        body = {**body, "columns": {names[i]: v for i, v in body["columns"].items()}}
    response = client.post("/predict/batch", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert response.json()["fields"], "the answer says where the problem is"


def test_a_body_declared_as_something_other_than_json_is_422(client, record):
    response = client.post(
        "/predict", content=json.dumps(record), headers={"content-type": "text/plain"}
    )
    assert response.status_code == 422
    assert "application/json" in problems(response)["body"]


def test_a_body_over_the_byte_limit_is_413_with_or_without_content_length(trained_service):
    config = trained_service.config.model_copy(deep=True)
    config.serving.max_body_bytes = 2_000
    oversized = json.dumps({"records": [{}] * 1_000}).encode()
    with TestClient(create_app(config, trained_service.bundle)) as client:
        declared = client.post(
            "/predict/batch", content=oversized, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert "max_body_bytes" in declared.json()["message"]
        chunks = (oversized[i : i + 500] for i in range(0, len(oversized), 500))
        streamed = client.post(
            "/predict/batch", content=chunks, headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert client.post("/predict", json={}).status_code == 200


def test_out_of_range_values_are_served_flagged_and_counted(client, record, trained_service):
    feature = numeric_feature(trained_service.bundle.features)
    far = feature["max"] + 1000 * (abs(feature["max"]) + 1)
    response = client.post("/predict", json={**record, feature["name"]: far})
    assert response.status_code == 200
    assert response.json()["out_of_range"] == [feature["name"]]
    metrics = client.get("/metrics").text
    assert 'model_out_of_range_total{feature="' + feature["name"] + '"} 1.0' in metrics


def test_a_value_a_million_times_beyond_the_training_range_is_rejected(
    client, record, trained_service
):
    feature = numeric_feature(trained_service.bundle.features)
    response = client.post("/predict", json={**record, feature["name"]: 1e300})
    assert response.status_code == 422
    assert "unit or encoding error" in problems(response)[feature["name"]]


@pytest.mark.parametrize(
    "failure",
    [
        ValueError("custom feature produced NaN in a required column"),
        SystemExit("custom feature called sys.exit()"),
        KeyboardInterrupt("custom feature raised KeyboardInterrupt"),
    ],
    ids=["ValueError", "SystemExit", "KeyboardInterrupt"],
)
def test_a_model_failure_is_a_422_answer_and_the_service_keeps_serving(
    trained_service, record, failure
):
    fitted = trained_service.bundle.pipeline

    class Unfit:
        """A model that cannot score anything, as after a broken custom feature."""

        classes_ = getattr(fitted, "classes_", None)

        def predict(self, frame):
            raise failure

        predict_proba = predict

    broken = dataclasses.replace(trained_service.bundle, pipeline=Unfit())
    with TestClient(create_app(trained_service.config, broken)) as client:
        for response in (
            client.post("/predict", json=record),
            client.post("/predict/batch", json={"records": [record, record]}),
        ):
            assert response.status_code == 422
            assert response.json()["error"] == "prediction_failed"
            assert str(failure) in response.json()["message"]
        assert client.get("/health").status_code == 200
    with TestClient(create_app(trained_service.config, broken, trained_service.bundle)) as client:
        # With a fallback model, it answers instead.
        assert client.post("/predict", json=record).status_code == 200
        assert client.get("/ready").json()["status"] == "degraded"


def test_a_system_exit_anywhere_while_answering_is_a_json_500(trained_service, record):
    app = create_app(trained_service.config, trained_service.bundle)

    @app.get("/leave")
    def leave() -> None:
        raise SystemExit(3)

    with TestClient(app) as client:
        response = client.get("/leave")
        assert response.status_code == 500
        assert response.json()["error"] == "internal_error"
        assert response.json()["request_id"] == response.headers["x-request-id"]
        assert client.post("/predict", json=record).status_code == 200


@pytest.fixture
def auth_config(trained_service, monkeypatch):
    monkeypatch.setenv(trained_service.config.serving.api_key_env, API_KEY)
    config = trained_service.config.model_copy(deep=True)
    config.serving.auth_enabled = True
    return config


def test_auth_requires_the_api_key_everywhere_but_the_probes(auth_config, trained_service, record):
    with TestClient(create_app(auth_config, trained_service.bundle)) as client:
        assert client.post("/predict", json=record).status_code == 401
        wrong = client.post("/predict", json=record, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 401
        assert "X-API-Key" in wrong.json()["message"]
        # The documentation shows what /metadata shows: categories and training ranges.
        for path in ("/metadata", "/metrics", "/docs", "/redoc", "/openapi.json"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["error"] == "unauthorized"
        # Feedback moves the live performance gauges: only key holders may send it.
        feedback = client.post("/feedback", json={"request_id": "any", "label": "any"})
        assert feedback.status_code == 401
        granted = client.post("/predict", json=record, headers={"X-API-Key": API_KEY})
        assert granted.status_code == 200
        bearer = client.post(
            "/predict", json=record, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert bearer.status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
        document = client.get("/openapi.json", headers={"X-API-Key": API_KEY}).json()
        security = document["components"]["securitySchemes"]
        assert security["APIKeyHeader"]["name"] == "X-API-Key"
        assert client.get("/metrics", headers={"X-API-Key": API_KEY}).status_code == 200


def test_public_paths_answer_without_the_key(auth_config, trained_service):
    auth_config.serving.public_paths = ["/health", "/metrics", "/openapi.json", "/docs"]
    with TestClient(create_app(auth_config, trained_service.bundle)) as client:
        assert client.get("/metrics").status_code == 200
        assert "/predict" in client.get("/openapi.json").json()["paths"]
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert "/openapi.json" in docs.text
        assert client.get("/redoc").status_code == 401
        assert client.get("/ready").status_code == 401
        assert client.get("/metadata").status_code == 401


def test_without_auth_the_documentation_is_served(client):
    assert "/feedback" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    assert "redoc" in client.get("/redoc").text.lower()


def test_auth_enabled_without_a_key_refuses_to_start(trained_service, monkeypatch):
    monkeypatch.delenv(trained_service.config.serving.api_key_env, raising=False)
    config = trained_service.config.model_copy(deep=True)
    config.serving.auth_enabled = True
    with pytest.raises(RuntimeError, match=trained_service.config.serving.api_key_env):
        create_app(config, trained_service.bundle)


def test_feature_names_with_spaces_and_unicode_work_end_to_end(trained_service):
    wine = load_wine(as_frame=True)
    frame = wine.data.iloc[:, :3].set_axis(["alcohol %", "acide malique (g/l)", "cendre é"], axis=1)
    target = wine.target.astype(str)
    bundle = fit_bundle(frame, target, "multiclass_classification", LogisticRegression())
    row = frame.iloc[0].to_dict()
    with TestClient(create_app(trained_service.config, bundle)) as client:
        response = client.post("/predict", json=row)
        assert response.status_code == 200
        expected = bundle.pipeline.predict(pd.DataFrame([row]))[0]
        assert response.json()["prediction"] == expected
        properties = client.get("/openapi.json").json()["components"]["schemas"]["Record"]
        assert set(properties["properties"]) == set(frame.columns)
        assert client.post("/predict", json={"cendre e": 1.0}).status_code == 422


SCREENED_FEATURES = [
    {"name": "bill length (mm)", "type": "numeric", "min": 32.1, "max": 59.6},
    {"name": "island", "type": "categorical", "categories": ["Biscoe", "Dream", "Torgersen"]},
    {"name": "smoker", "type": "boolean"},
    {"name": "seen_at", "type": "datetime"},
    {"name": "note", "type": "text"},
]
GOOD = {"bill length (mm)": 39.1, "island": "Dream", "smoker": True,
        "seen_at": "2024-05-01T13:45:00", "note": "calm"}
# The same row as a CSV file writes it (csv.DictReader gives only strings).
AS_TEXT = {"bill length (mm)": "39.1", "island": "Dream", "smoker": "Yes",
           "seen_at": "05/01/2024 13:45", "note": "calm"}
SCREENED_BODIES = [
    {"records": [GOOD, {}]},
    {"records": [{**GOOD, "bill length (mm)": 40}, {"island": None, "smoker": False}]},
    b'\n { "records" :[{"island": "Dream"}]}',
    {"records": [AS_TEXT, {name: "NA" for name in AS_TEXT}, {**GOOD, "smoker": 0}]},
    {"records": [{**AS_TEXT, "bill length (mm)": "", "smoker": "false", "note": 5}]},
]
REFUSED_BODIES = [
    *({"records": [GOOD, {**GOOD, name: value}]} for name, value in [
        ("bill length (mm)", True), ("bill length (mm)", "39.1 mm"), ("bill length (mm)", 1e12),
        ("bill length (mm)", "1e12"), ("bill length (mm)", 10**400), ("island", "Mars"),
        ("island", ["Dream"]), ("smoker", 2), ("smoker", "maybe"), ("seen_at", "yesterday"),
        ("seen_at", "now"), ("note", True), ("unknown", 1.0),
    ]),
    b'{"records": [{"bill length (mm)": NaN}]}',
    b'{"records": [{"bill length (mm)": Infinity}]}',
    {"records": []}, {"records": [GOOD] * 11}, {"records": {}}, {"records": [1]},
    {"columns": {"island": ["Dream"]}}, {"records": [GOOD], "columns": {"island": ["Dream"]}},
    {}, [GOOD], b"not json",
]


def exact_rows(bodies: RequestBodies, raw: bytes, names: list[str]) -> Rows | None:
    try:
        exact = bodies.batch.validate_json(raw)
    except ValidationError:
        return None
    if "records" in exact:
        return Rows.of(exact["records"], names)
    return Rows(exact["columns"], len(next(iter(exact["columns"].values()))))


@pytest.mark.parametrize("body", SCREENED_BODIES + REFUSED_BODIES)
def test_the_batch_screen_accepts_only_what_the_validator_accepts(body):
    """The fast way through a batch says yes only to bodies the exact validator takes, with
    the same values; anything else goes to the validator, which words the error."""
    bodies = RequestBodies(SCREENED_FEATURES, max_batch_size=10)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    names = [feature["name"] for feature in SCREENED_FEATURES]
    screened = bodies.screen(raw)
    expected = exact_rows(bodies, raw, names)
    if body in SCREENED_BODIES:
        assert screened is not None, "a well-formed batch of records takes the fast way"
    else:
        assert screened is None
    if screened is None:
        return
    rows = Rows(*screened)
    assert expected is not None and len(rows) == len(expected)
    for name in names:
        assert rows.column(name) == expected.column(name)
        assert [type(v) for v in rows.column(name)] == [type(v) for v in expected.column(name)]


def test_a_model_with_numbered_categories_is_not_screened():
    # Python-mode validation would take true for the category 1; JSON mode decides alone.
    grade = {"name": "grade", "type": "categorical", "categories": [1, 2, 3]}
    bodies = RequestBodies([*SCREENED_FEATURES, grade], max_batch_size=10)
    assert bodies.screen(json.dumps({"records": [{**GOOD, "grade": 1}]}).encode()) is None


def test_the_screen_and_the_validator_drop_the_datas_other_columns():
    """A row of the data file carries its target and id: both ways through a batch take them
    and drop them; the record and columns forms too. Other unknown keys stay refused."""
    bodies = RequestBodies(
        SCREENED_FEATURES, max_batch_size=10, ignored=["species", "rownames"], target="species"
    )
    names = [feature["name"] for feature in SCREENED_FEATURES]
    raw = json.dumps({"records": [{**GOOD, "species": "Adelie", "rownames": 3}, GOOD]}).encode()
    screened, exact = bodies.screen(raw), exact_rows(bodies, raw, names)
    assert screened is not None and exact is not None
    assert set(screened[0]) == set(names)
    assert all("species" not in record for record in exact.records)
    for name in names:
        assert Rows(*screened).column(name) == exact.column(name)
    record = bodies.record.validate_json(json.dumps({**GOOD, "species": None, "rownames": "7"}))
    assert record == bodies.record.validate_json(json.dumps(GOOD))
    columns = {"island": ["Dream", "Biscoe"], "species": ["Adelie", "Gentoo"]}
    batch = bodies.batch.validate_json(json.dumps({"columns": columns}))
    assert batch == {"columns": {"island": ["Dream", "Biscoe"]}}
    with pytest.raises(ValidationError, match="colour"):
        bodies.record.validate_json(json.dumps({**GOOD, "colour": "red"}))
