"""Ground truth: POST /feedback joins outcomes to predictions; live performance reaches /metrics."""

from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.clusters import create_database
from mlgen_runtime.data import load_data
from mlgen_runtime.errors import ConfigError, FeedbackError
from mlgen_runtime.monitoring.database import MEMORY, Database
from mlgen_runtime.monitoring.performance import (
    SPOOL_MAX_PENDING,
    FeedbackStore,
    Spool,
    roc_auc,
)
from mlgen_runtime.serving.app import create_app
from mlgen_runtime.serving.predictor import Scored, Scores
from prometheus_client.parser import text_string_to_metric_families
from serving_support import sample_value, valid_record
from sklearn.metrics import roc_auc_score

# More than the default serving.feedback_min_rows (30), so the live metrics are exported.
ROWS = 60


def app_with(trained_service, **serving):
    config = trained_service.config
    if serving:
        config = config.model_copy(
            update={"serving": config.serving.model_copy(update=serving)}
        )
    return create_app(config, trained_service.bundle)


@pytest.fixture
def client(trained_service):
    with TestClient(app_with(trained_service)) as client:
        yield client


def as_record(row: pd.Series, features: list[dict]) -> dict:
    """A request record from a data row, in the JSON types the API's schema takes."""
    record = {}
    for feature in features:
        value = row.get(feature["name"])
        kind = feature["type"]
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            record[feature["name"]] = None
        elif kind == "numeric":
            record[feature["name"]] = float(value)
        elif kind == "boolean":
            record[feature["name"]] = bool(value)
        elif kind == "categorical" and feature.get("categories"):
            known = {str(c): c for c in feature["categories"]}
            record[feature["name"]] = known.get(str(value))
        else:
            record[feature["name"]] = str(value)
    return record


def outcome_field(trained_service, truth):
    if trained_service.bundle.task == "regression":
        return {"value": float(truth)}
    return {"label": truth if isinstance(truth, str | bool) else int(truth)}


def real_rows(trained_service, n: int) -> pd.DataFrame:
    config = trained_service.config
    frame = load_data(config.resolve(config.data.path))
    frame = frame[frame[config.data.target].notna()]
    return frame.sample(n=min(n, len(frame)), random_state=config.seed)


def test_feedback_and_fallback_metrics_are_exposed_from_the_first_scrape(client):
    # The alert rules and the dashboard query them before any feedback or failure happened.
    names = {family.name for family in text_string_to_metric_families(client.get("/metrics").text)}
    assert {
        "model_feedback",
        "model_live_performance",
        "model_live_performance_rows",
        "model_test_performance",
        "model_fallback_active",
        "model_fallback_predictions",
    } <= names


def test_feedback_is_joined_to_its_prediction_by_request_id(client, trained_service):
    bundle = trained_service.bundle
    record = valid_record(bundle.features)
    answer = client.post("/predict", json=record).json()
    if bundle.task == "regression":
        outcome = {"value": answer["prediction"] + 1.5}
    else:
        outcome = {"label": answer["prediction"]}

    receipt = client.post("/feedback", json={"request_id": answer["request_id"], **outcome})

    assert receipt.status_code == 200, receipt.text
    body = receipt.json()
    assert body["model_version"] == bundle.model_version
    assert body["prediction"] == answer["prediction"]
    if bundle.task == "regression":
        assert body["error"] == pytest.approx(1.5)
    else:
        assert body["correct"] is True
    metrics = client.get("/metrics").text
    assert sample_value(metrics, "model_feedback_total", {"result": "joined"}) == 1


def test_unknown_ids_records_and_repeated_feedback_are_refused(client, trained_service):
    bundle = trained_service.bundle
    record = valid_record(bundle.features)
    answer = client.post("/predict/batch", json={"records": [record, record]}).json()
    truth = answer["predictions"][0]["prediction"]
    outcome = outcome_field(trained_service, truth)
    rid = answer["request_id"]

    assert client.post("/feedback", json={"request_id": "never-seen", **outcome}).status_code == 404
    beyond = client.post("/feedback", json={"request_id": rid, "index": 2, **outcome})
    assert beyond.status_code == 404
    assert "record 2" in beyond.json()["message"]
    first = client.post("/feedback", json={"request_id": rid, "index": 1, **outcome})
    assert first.status_code == 200
    again = client.post("/feedback", json={"request_id": rid, "index": 1, **outcome})
    assert again.status_code == 409
    assert again.json()["error"] == "duplicate"
    metrics = client.get("/metrics").text
    assert sample_value(metrics, "model_feedback_total", {"result": "unknown"}) == 2
    assert sample_value(metrics, "model_feedback_total", {"result": "duplicate"}) == 1


def test_an_outcome_the_model_cannot_have_is_a_422_naming_the_problem(client, trained_service):
    bundle = trained_service.bundle
    rid = client.post("/predict", json=valid_record(bundle.features)).json()["request_id"]
    if bundle.task == "regression":
        wrong = {"label": "high"}
        expected = "`value`"
    else:
        wrong = {"label": "surely-not-a-class"}
        expected = "not a class of this model"
    response = client.post("/feedback", json={"request_id": rid, **wrong})
    assert response.status_code == 422
    assert expected in response.json()["message"]
    assert client.post("/feedback", json={"request_id": rid}).status_code == 422
    # A refused outcome does not use up the prediction: the right one is still accepted.
    prediction = client.post("/predict", json={}).json()
    right = outcome_field(trained_service, prediction["prediction"])
    assert client.post(
        "/feedback", json={"request_id": prediction["request_id"], **right}
    ).status_code == 200
    assert client.post("/feedback", json={"request_id": rid, **right}).status_code == 200


def test_live_performance_on_real_outcomes_matches_the_metric_computed_by_hand(
    client, trained_service
):
    bundle, config = trained_service.bundle, trained_service.config
    rows = real_rows(trained_service, ROWS)
    records = [as_record(row, bundle.features) for _, row in rows.iterrows()]
    answer = client.post("/predict/batch", json={"records": records}).json()
    truths = rows[config.data.target].tolist()
    for index, truth in enumerate(truths):
        response = client.post(
            "/feedback",
            json={"request_id": answer["request_id"], "index": index,
                  **outcome_field(trained_service, truth)},
        )
        assert response.status_code == 200, response.text

    metrics = client.get("/metrics").text
    live = {
        name: sample_value(metrics, "model_live_performance", {"metric": name})
        for name in ("accuracy", "roc_auc", "mae", "rmse")
    }
    assert sample_value(metrics, "model_live_performance_rows", {}) == len(truths)
    predicted = [p["prediction"] for p in answer["predictions"]]
    if bundle.task == "regression":
        errors = np.array(truths, dtype=float) - np.array(predicted, dtype=float)
        assert live["mae"] == pytest.approx(np.mean(np.abs(errors)))
        assert live["rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)))
        tested = {"mae": bundle.metadata["metrics"]["mae"]}
    else:
        hits = [str(t) == str(p) for t, p in zip(truths, predicted, strict=True)]
        assert live["accuracy"] == pytest.approx(np.mean(hits))
        tested = {"accuracy": bundle.metadata["metrics"]["accuracy"]}
        if bundle.task == "binary_classification":
            positive = str(bundle.classes[1])
            scores = [p["probabilities"][positive] for p in answer["predictions"]]
            labels = [str(t) == positive for t in truths]
            if len(set(labels)) == 2:
                assert live["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    for name, value in tested.items():
        assert sample_value(metrics, "model_test_performance", {"metric": name}) == pytest.approx(
            value
        )


def test_no_live_metric_is_exported_from_too_few_outcomes(trained_service):
    with TestClient(app_with(trained_service, feedback_min_rows=10)) as client:
        record = valid_record(trained_service.bundle.features)
        for _ in range(3):
            answer = client.post("/predict", json=record).json()
            outcome = outcome_field(trained_service, answer["prediction"])
            client.post("/feedback", json={"request_id": answer["request_id"], **outcome})
        metrics = client.get("/metrics").text
    assert sample_value(metrics, "model_live_performance_rows", {}) == 3
    assert "model_live_performance{" not in metrics


def test_the_prediction_log_forgets_the_oldest_requests_beyond_its_size(trained_service):
    with TestClient(app_with(trained_service, feedback_log_size=3)) as client:
        record = valid_record(trained_service.bundle.features)
        answers = [client.post("/predict", json=record).json() for _ in range(5)]
        outcome = outcome_field(trained_service, answers[0]["prediction"])
        statuses = [
            client.post("/feedback", json={"request_id": a["request_id"], **outcome}).status_code
            for a in answers
        ]
    assert statuses == [404, 404, 200, 200, 200]


def scored(*predictions: tuple[str, float]) -> Scores:
    return Scores.of(Scored(label, None, label, score) for label, score in predictions)


def test_the_store_claims_each_prediction_once():
    store = FeedbackStore(MEMORY, capacity=10, window=10)
    store.record("a", "1", scored(("yes", 0.9), ("no", 0.2)))
    joined = store.claim("a", 1, "yes")
    assert (joined.model_version, joined.prediction, joined.score, joined.truth) == (
        "1", "no", 0.2, "yes"
    )
    with pytest.raises(FeedbackError) as duplicate:
        store.claim("a", 1, "no")
    assert duplicate.value.kind == "duplicate"
    assert store.claim("a", 0, "yes").prediction == "yes"
    assert [(o.index, o.truth) for o in store.outcomes()] == [(1, "yes"), (0, "yes")]


def test_the_store_bounds_records_and_outcomes():
    store = FeedbackStore(MEMORY, capacity=3, window=2)
    store.record("a", "1", scored(("yes", 0.9), ("no", 0.2)))
    store.record("b", "1", scored(("yes", 0.9), ("no", 0.2)))
    with pytest.raises(FeedbackError) as forgotten:
        store.claim("a", 0, "yes")
    assert forgotten.value.kind == "unknown"
    assert "last 3 records" in str(forgotten.value)
    for request_id, index in (("a", 1), ("b", 0), ("b", 1)):
        store.claim(request_id, index, "no")
    assert [(o.request_id, o.index) for o in store.outcomes()] == [("b", 0), ("b", 1)]


def test_a_batch_larger_than_the_store_keeps_its_newest_records():
    store = FeedbackStore(MEMORY, capacity=500, window=10)
    batch = scored(*((f"label-{i}", i / 1000) for i in range(1000)))
    store.record("batch", "3", batch)
    for index in (0, 499):
        with pytest.raises(FeedbackError) as forgotten:
            store.claim("batch", index, "x")
        assert forgotten.value.kind == "unknown"
        assert f"record {index} of request 'batch'" in str(forgotten.value)
    for index in (500, 999):
        joined = store.claim("batch", index, "x")
        assert (joined.prediction, joined.score, joined.model_version) == (
            f"label-{index}", index / 1000, "3"
        )
    with pytest.raises(FeedbackError) as beyond:
        store.claim("batch", 1000, "x")
    assert beyond.value.kind == "unknown"


@pytest.mark.parametrize("shared", ["sqlite", "postgresql"])
def test_stores_of_two_workers_on_one_database_join_each_others_predictions(
    shared, tmp_path, request
):
    """Worker processes share a SQLite file; pods a PostgreSQL database, by its URL."""
    if shared == "postgresql":
        path = create_database(request.getfixturevalue("database"), "two_stores")
    else:
        path = str(tmp_path / "feedback.sqlite")
    first, second = (FeedbackStore(path, capacity=100, window=100) for _ in range(2))
    first.record("r1", "1", scored(("yes", 0.8)))
    # Not flushed by `first`: `second` waits for the other worker's spool thread to write it.
    assert second.claim("r1", 0, "no").prediction == "yes"
    with pytest.raises(FeedbackError) as duplicate:
        first.claim("r1", 0, "no")
    assert duplicate.value.kind == "duplicate"
    assert [o.truth for o in first.outcomes()] == ["no"] == [o.truth for o in second.outcomes()]
    with pytest.raises(FeedbackError) as unknown:
        second.claim("never-made", 0, "no")
    assert unknown.value.kind == "unknown"
    for store in (first, second):
        store.close()


def test_an_unreachable_shared_store_names_the_setting_and_hides_the_password():
    from mlgen_runtime.clusters import free_port

    url = f"postgresql+psycopg2://mlgen:s3cret@127.0.0.1:{free_port()}/service_logs"
    with pytest.raises(ConfigError) as failed:
        FeedbackStore(url, capacity=10, window=10)
    message = str(failed.value)
    assert "mlgen:***@127.0.0.1" in message and "MLSERVICE_FEEDBACK_DB" in message
    assert "s3cret" not in message and "s3cret" not in repr(failed.value.__cause__)


@pytest.mark.parametrize("shared", ["sqlite", "postgresql"])
def test_stores_writing_at_once_number_every_request_apart(shared, tmp_path, request):
    """A store numbers records by the largest number written so far: two writers computing it
    at once would collide and one request be dropped, unless the table is locked."""
    if shared == "postgresql":
        path = create_database(request.getfixturevalue("database"), "racing_stores")
    else:
        path = str(tmp_path / "feedback.sqlite")
    stores = [FeedbackStore(path, capacity=10_000, window=1000) for _ in range(2)]

    def serve(which: int) -> None:
        for n in range(150):
            stores[which].record(f"{which}-{n}", "1", scored(("yes", 0.5), ("no", 0.4)))
            if n % 10 == 0:
                stores[which].flush()
        stores[which].flush()

    writers = [threading.Thread(target=serve, args=(which,)) for which in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    for which in range(2):
        for n in range(150):
            assert stores[1 - which].claim(f"{which}-{n}", 1, "no").prediction == "no"
    assert len(stores[0].outcomes()) == 300
    for store in stores:
        store.close()


def test_a_spool_whose_thread_cannot_keep_up_stays_bounded():
    """Under load the background thread may not get to run (it waits for the GIL on every
    row): the thread adding to a full spool writes it, so memory cannot grow without bound."""
    db = Database(MEMORY)
    db.execute("CREATE TABLE items (value INTEGER)")
    # A background thread that never wakes in time: only put() can write.
    spool = Spool(db, threading.Lock(), "INSERT INTO items VALUES (?)",
                  lambda item: [(item,)], delay=3600)
    for value in range(3 * SPOOL_MAX_PENDING + 10):
        spool.put(value)
        assert len(spool._items) < SPOOL_MAX_PENDING
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 3 * SPOOL_MAX_PENDING
    spool.flush()
    assert db.execute("SELECT MAX(value) FROM items").fetchone()[0] == 3 * SPOOL_MAX_PENDING + 9


@pytest.mark.parametrize("seed", range(5))
def test_rank_auc_equals_scikit_learns_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(200) < 0.3
    # Rounded scores: many ties, the case where a naive rank AUC goes wrong.
    scores = np.round(rng.random(200) * 0.5 + labels * 0.3, 1)
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert roc_auc(np.zeros(5, dtype=bool), np.arange(5.0)) is None
