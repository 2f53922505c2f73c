"""Champion/challenger: shadow and split serving, per-variant metrics, the circuit breaker."""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import closing

import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.errors import ConfigError
from mlgen_runtime.registry import champion_dir
from mlgen_runtime.serving import rollout
from mlgen_runtime.serving.app import create_app
from rollout_support import (
    as_requests,
    baseline_bundle,
    break_model,
    copy_bundle,
    outcome,
    rollout_config,
    save,
    settle,
    splits_of,
)
from serving_support import sample_value


@pytest.fixture(scope="module")
def challenger_folder(trained_service, tmp_path_factory):
    """The trained service's Dummy baseline saved as a bundle folder: a real, different model."""
    return save(baseline_bundle(trained_service), tmp_path_factory.mktemp("challenger") / "dummy")


@pytest.fixture(scope="module")
def records(trained_service):
    """Real rows of the test split, as request bodies (missing values as null)."""
    test = splits_of(trained_service).test.head(40)
    return as_requests(trained_service.bundle.features, test)


def log_rows(config):
    """Every row of the rollout prediction log, labelled or not."""
    path = config.resolve(rollout.RolloutSettings.of(config).log_path)
    with closing(sqlite3.connect(path)) as db:
        query = "SELECT request_id, variant, model_version, served FROM predictions"
        return db.execute(query).fetchall()


def test_shadow_mode_answers_with_the_champion_and_records_the_challenger(
    trained_service, challenger_folder, records, tmp_path
):
    config = rollout_config(tmp_path, challenger_folder, mode="shadow")
    champion = trained_service.bundle
    with TestClient(create_app(config, champion)) as client:
        bodies = [client.post("/predict", json=record).json() for record in records]
        settle(client)
        scrape = client.get("/metrics").text
        # The champion's own serving path (sklearn or a compiled fast path).
        champion_says = [
            s.prediction for s in client.app.state.service.model.predictor.predict(records)
        ]
    assert {body["model_version"] for body in bodies} == {champion.model_version}
    answered = [body["prediction"] for body in bodies]
    if champion.task == "regression":
        # ONNX scores in float32: one row alone and rows in a batch may differ in the last digits.
        assert answered == pytest.approx(champion_says, rel=1e-5)
    else:
        assert answered == champion_says
    rows = log_rows(config)
    first = bodies[0]["request_id"]
    assert sorted((r[1], r[2], r[3]) for r in rows if r[0] == first) == [
        ("challenger", "dummy", 0),
        ("champion", champion.model_version, 1),
    ]
    assert len(rows) == 2 * len(records)
    shadow = {"variant": "challenger", "model_version": "dummy", "served": "false"}
    assert sample_value(scrape, "model_variant_predictions_total", shadow) == len(records)
    assert sample_value(scrape, "model_challenger_active", {}) == 1
    assert sample_value(scrape, "model_challenger_failures_total", {}) == 0


def test_split_mode_is_sticky_per_key_and_takes_the_configured_share(
    trained_service, challenger_folder, records, tmp_path
):
    config = rollout_config(
        tmp_path, challenger_folder, mode="split", split_share=0.3, sticky_key="header:X-User-Id"
    )
    users = [f"user-{n}" for n in range(200)]
    record = records[0]
    with TestClient(create_app(config, trained_service.bundle)) as client:
        answered = {}
        for _ in range(2):
            for user in users:
                response = client.post("/predict", json=record, headers={"X-User-Id": user})
                answered.setdefault(user, set()).add(response.json()["model_version"])
        without_key = client.post("/predict", json=record).json()["model_version"]
        scrape = client.get("/metrics").text
    # Sticky: each user saw one model on both requests.
    assert all(len(versions) == 1 for versions in answered.values())
    on_challenger = [user for user, versions in answered.items() if versions == {"dummy"}]
    # 200 users at 30%: three standard deviations either side is 0.20-0.40.
    assert 0.2 <= len(on_challenger) / len(users) <= 0.4
    assert on_challenger == [user for user in users if rollout.share_of(user) < 0.3]
    assert without_key == trained_service.bundle.model_version
    served = {"variant": "challenger", "served": "true"}
    assert sample_value(scrape, "model_variant_predictions_total", served) == 2 * len(
        on_challenger
    )


def test_a_challenger_with_broken_model_files_is_not_loaded_and_the_champion_serves(
    trained_service, records, tmp_path
):
    folder = copy_bundle(champion_dir(trained_service.config), tmp_path / "broken", "9")
    for model_file in (folder / "model").glob("*.pkl"):
        model_file.write_bytes(b"not a pickle")
    config = rollout_config(tmp_path / "service", folder, mode="split", split_share=1.0)
    with TestClient(create_app(config, trained_service.bundle)) as client:
        response = client.post("/predict", json=records[0])
        scrape = client.get("/metrics").text
    assert response.status_code == 200
    assert response.json()["model_version"] == trained_service.bundle.model_version
    assert sample_value(scrape, "model_challenger_active", {}) == 0


def test_a_challenger_failing_at_prediction_time_is_switched_off_after_n_failures(
    trained_service, records, tmp_path
):
    folder = copy_bundle(champion_dir(trained_service.config), tmp_path / "failing", "9")
    break_model(folder, trained_service)
    config = rollout_config(
        tmp_path / "service", folder, mode="split", split_share=1.0, max_failures=3
    )
    champion = trained_service.bundle
    with TestClient(create_app(config, champion)) as client:
        responses = [client.post("/predict", json=record) for record in records[:6]]
        scrape = client.get("/metrics").text
    # Every request was meant for the challenger; the champion answered all of them.
    assert [r.status_code for r in responses] == [200] * 6
    assert {r.json()["model_version"] for r in responses} == {champion.model_version}
    assert sample_value(scrape, "model_challenger_failures_total", {}) == 3
    assert sample_value(scrape, "model_challenger_active", {}) == 0


def test_shadow_failures_never_change_the_answer(trained_service, records, tmp_path):
    folder = copy_bundle(champion_dir(trained_service.config), tmp_path / "failing", "9")
    break_model(folder, trained_service)
    plain = rollout_config(tmp_path / "plain", folder, mode="off")
    shadow = rollout_config(tmp_path / "shadow", folder, mode="shadow")
    answers = []
    for config in (plain, shadow):
        with TestClient(create_app(config, trained_service.bundle)) as client:
            answers.append([client.post("/predict", json=r).json()["prediction"] for r in records])
            settle(client)
            scrape = client.get("/metrics").text
    assert answers[0] == answers[1]
    # The breaker counts shadow failures too: after max_failures (5) the challenger is off.
    assert sample_value(scrape, "model_challenger_failures_total", {}) == 5
    assert sample_value(scrape, "model_challenger_active", {}) == 0


class GatedChallenger:
    """Holds the challenger's predictions until released, and says when one is waiting."""

    def __init__(self, predict):
        self.predict_now = predict
        self.waiting = threading.Event()
        self.release = threading.Event()

    def predict(self, records):
        self.waiting.set()
        assert self.release.wait(timeout=60), "the test never released the challenger"
        return self.predict_now(records)


def test_shadow_scoring_happens_off_the_request_path_and_drops_what_overflows_its_queue(
    trained_service, challenger_folder, records, tmp_path
):
    config = rollout_config(tmp_path, challenger_folder, mode="shadow", shadow_queue=2)
    with TestClient(create_app(config, trained_service.bundle)) as client:
        rollout_of = client.app.state.service.model.rollout
        gate = GatedChallenger(rollout_of.predictor.predict)
        rollout_of.predictor.predict = gate.predict
        first = client.post("/predict", json=records[0])
        # The challenger is stuck on the first, yet it was answered and the next ones are too.
        assert gate.waiting.wait(timeout=60)
        later = [client.post("/predict", json=record) for record in records[1:6]]
        gate.release.set()
        settle(client)
        scrape = client.get("/metrics").text
    assert [r.status_code for r in [first, *later]] == [200] * 6
    # The first was being scored, the next two waited in the queue of 2, three found it full.
    assert sample_value(scrape, "model_shadow_dropped_total", {}) == 3
    shadowed = sorted(r[0] for r in log_rows(config) if r[1] == "challenger")
    assert shadowed == sorted(r.json()["request_id"] for r in [first, *later[:2]])
    assert len([r for r in log_rows(config) if r[1] == "champion"]) == 6
    assert sample_value(
        scrape, "model_variant_prediction_duration_seconds_count", {"variant": "challenger"}
    ) == 3


def test_live_performance_is_measured_per_variant_from_the_outcomes(
    trained_service, challenger_folder, tmp_path
):
    test = splits_of(trained_service).test
    config = rollout_config(tmp_path, challenger_folder, mode="shadow")
    task, target = config.task, config.data.target
    bodies = as_requests(trained_service.bundle.features, test)
    with TestClient(create_app(config, trained_service.bundle)) as client:
        truths = {}
        for record, truth in zip(bodies, test[target], strict=True):
            request_id = client.post("/predict", json=record).json()["request_id"]
            client.post("/feedback", json={"request_id": request_id, **outcome(task, truth)})
            truths[request_id] = truth
        settle(client)
        scrape = client.get("/metrics").text
    with closing(sqlite3.connect(config.resolve("rollout/predictions.sqlite"))) as db:
        logged = db.execute("SELECT variant, request_id, prediction FROM predictions").fetchall()
    metric = "mae" if task == "regression" else "accuracy"
    for variant in ("champion", "challenger"):
        pairs = [(json.loads(p), truths[rid]) for v, rid, p in logged if v == variant]
        assert len(pairs) == len(truths)
        if task == "regression":
            expected = sum(abs(float(p) - float(t)) for p, t in pairs) / len(pairs)
        else:
            expected = sum(str(p) == str(t) for p, t in pairs) / len(pairs)
        live = sample_value(
            scrape, "model_variant_live_performance", {"variant": variant, "metric": metric}
        )
        assert live == pytest.approx(expected), variant


def test_rollout_settings_are_checked_with_a_useful_message(tmp_path, challenger_folder):
    # Checked when the config loads, like every other section: a typo never waits for traffic.
    with pytest.raises(ConfigError, match="serving.rollout.sticky_key.*header:<name>"):
        rollout_config(tmp_path, challenger_folder, sticky_key="cookie:id")
    # YAML reads an unquoted `off` as false.
    assert rollout.RolloutSettings(mode=False).mode == "off"
