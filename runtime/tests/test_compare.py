"""`compare`: is the challenger better, by a stated test, with enough labelled rows?"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.compare import (
    BETTER,
    INSUFFICIENT,
    NOT_BETTER,
    compare_log,
    compare_losses,
    losses,
)
from mlgen_runtime.data import load_data
from mlgen_runtime.errors import CompareError
from mlgen_runtime.registry import champion_dir
from mlgen_runtime.scoring import predict
from mlgen_runtime.serving.app import create_app
from rollout_support import (
    as_requests,
    baseline_bundle,
    features_and_target,
    outcome,
    rollout_config,
    settle,
    splits_of,
)

PAIRED_TEST = {"regression": "Wilcoxon signed-rank test"}
UNPAIRED_TEST = {"regression": "Mann-Whitney U test"}


@pytest.fixture(scope="module")
def holdout_losses(trained_service):
    """Per test-split row: the losses of the trained model and of its Dummy baseline."""
    x, y = features_and_target(trained_service, splits_of(trained_service).test)
    task = trained_service.config.task
    result = {}
    for name, model in (
        ("model", trained_service.bundle.pipeline),
        ("dummy", baseline_bundle(trained_service).pipeline),
    ):
        result[name] = losses(task, predict(model, x, y, task).predicted, y)
    return result


def paired_test(task: str) -> str:
    return PAIRED_TEST.get(task, "exact McNemar test")


def test_the_trained_model_beats_its_baseline_on_the_same_holdout(
    trained_service, holdout_losses
):
    task = trained_service.config.task
    result = compare_losses(
        task, holdout_losses["dummy"], holdout_losses["model"], True, 0.05, 30, ("1", "2")
    )
    assert result.test == paired_test(task)
    assert result.n_champion == result.n_challenger == len(holdout_losses["model"])
    assert result.p_value < 0.05
    assert result.verdict == BETTER
    summary = result.summary()
    assert paired_test(task) in summary and "p-value" in summary and BETTER in summary


def test_a_worse_challenger_is_not_better(trained_service, holdout_losses):
    task = trained_service.config.task
    result = compare_losses(
        task, holdout_losses["model"], holdout_losses["dummy"], True, 0.05, 30
    )
    assert result.p_value > 0.5
    assert result.verdict == NOT_BETTER


def test_too_few_rows_are_insufficient_whatever_the_p_value(trained_service, holdout_losses):
    n = len(holdout_losses["model"])
    result = compare_losses(
        trained_service.config.task,
        holdout_losses["dummy"],
        holdout_losses["model"],
        True,
        0.05,
        n + 1,
    )
    assert result.p_value < 0.05
    assert result.verdict == INSUFFICIENT
    assert not result.better


def test_unpaired_rows_use_the_independent_samples_test(trained_service, holdout_losses):
    task = trained_service.config.task
    half = len(holdout_losses["model"]) // 2
    result = compare_losses(
        task, holdout_losses["dummy"][:half], holdout_losses["model"][half:], False, 0.05, 10
    )
    assert result.test == UNPAIRED_TEST.get(task, "two-proportion z-test")
    assert (result.n_champion, result.n_challenger) == (half, len(holdout_losses["model"]) - half)
    assert result.verdict == BETTER


def serve_and_feed_back(trained_service, config) -> int:
    """Serve every row of the data with the Dummy champion, then send each row's outcome."""
    data = load_data(trained_service.config.resolve(trained_service.config.data.path))
    target = data[trained_service.config.data.target]
    with TestClient(create_app(config, baseline_bundle(trained_service))) as client:
        for i, (record, truth) in enumerate(
            zip(as_requests(trained_service.bundle.features, data), target, strict=True)
        ):
            # A user per row: the key of a sticky split (request ids are random).
            response = client.post("/predict", json=record, headers={"X-User-Id": f"row-{i}"})
            assert response.status_code == 200
            feedback = client.post(
                "/feedback",
                json={"request_id": response.json()["request_id"], **outcome(config.task, truth)},
            )
            assert feedback.status_code == 200, feedback.text
        settle(client)
    return len(data)


def test_compare_reads_shadow_predictions_and_feedback_as_pairs(trained_service, tmp_path):
    challenger = champion_dir(trained_service.config)
    config = rollout_config(tmp_path, challenger, mode="shadow")
    rows = serve_and_feed_back(trained_service, config)
    result = compare_log(config)
    assert result.paired
    assert result.test == paired_test(config.task)
    assert result.n_champion == result.n_challenger == rows
    assert result.champion_version == "dummy"
    assert result.challenger_version == trained_service.bundle.model_version
    assert result.verdict == BETTER


def test_compare_reads_a_split_as_independent_samples(trained_service, tmp_path):
    challenger = champion_dir(trained_service.config)
    config = rollout_config(
        tmp_path, challenger, mode="split", split_share=0.5, sticky_key="header:X-User-Id"
    )
    rows = serve_and_feed_back(trained_service, config)
    result = compare_log(config)
    assert not result.paired
    assert result.test == UNPAIRED_TEST.get(config.task, "two-proportion z-test")
    assert result.n_champion + result.n_challenger == rows
    assert min(result.n_champion, result.n_challenger) > rows / 4
    assert result.verdict == BETTER


def test_compare_without_a_rollout_log_says_how_to_get_one(trained_service, tmp_path):
    config = rollout_config(tmp_path, champion_dir(trained_service.config), mode="shadow")
    with pytest.raises(CompareError, match="POST /feedback"):
        compare_log(config)
