"""`compare`: is the challenger better, by a stated test, with enough labelled rows?"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.compare import (
    BETTER,
    INSUFFICIENT,
    NOT_BETTER,
    chance_test,
    compare_predictions,
    statistical_test,
)
from mlgen_runtime.data import load_data
from mlgen_runtime.errors import CompareError
from mlgen_runtime.live_comparison import compare_log
from mlgen_runtime.registry import champion_dir
from mlgen_runtime.scoring import METRICS, Prediction, predict
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


@pytest.fixture(scope="module")
def holdout(trained_service):
    """What the trained model and its Dummy baseline predict for the test split."""
    x, y = features_and_target(trained_service, splits_of(trained_service).test)
    task = trained_service.config.task
    return {
        name: predict(model, x, y, task)
        for name, model in (
            ("model", trained_service.bundle.pipeline),
            ("dummy", baseline_bundle(trained_service).pipeline),
        )
    }


def primary_of(trained_service) -> str:
    return trained_service.config.metric.primary


def test_the_trained_model_beats_its_baseline_on_the_same_holdout(trained_service, holdout):
    primary = primary_of(trained_service)
    result = compare_predictions(
        primary, holdout["dummy"], holdout["model"], True, 0.05, 30, ("1", "2")
    )
    # The primary metric's own test: with rare positives a constant "no" is as accurate as
    # any model, so a test on accuracy could not tell them apart.
    assert result.metric == primary
    assert result.test == statistical_test(primary, paired=True)
    assert result.n_champion == result.n_challenger == len(holdout["model"].y_true)
    assert result.p_value < 0.05
    assert result.verdict == BETTER
    summary = result.summary()
    assert result.test in summary and primary in summary and "p-value" in summary
    assert BETTER in summary


def test_a_worse_challenger_is_not_better(trained_service, holdout):
    primary = primary_of(trained_service)
    result = compare_predictions(primary, holdout["model"], holdout["dummy"], True, 0.05, 30)
    assert result.p_value > 0.5
    assert result.verdict == NOT_BETTER


def test_too_few_rows_are_insufficient_whatever_the_p_value(trained_service, holdout):
    n = len(holdout["model"].y_true)
    result = compare_predictions(
        primary_of(trained_service), holdout["dummy"], holdout["model"], True, 0.05, n + 1
    )
    assert result.p_value < 0.05
    assert result.verdict == INSUFFICIENT
    assert not result.better


def test_unpaired_rows_use_the_independent_samples_test(trained_service, holdout):
    primary = primary_of(trained_service)
    model, dummy = holdout["model"], holdout["dummy"]
    n = len(model.y_true)
    # Interleaved halves: each keeps the class mix of the test split.
    first, second = slice(0, n, 2), slice(1, n, 2)
    result = compare_predictions(
        primary, _rows(dummy, first), _rows(model, second), False, 0.05, 10
    )
    # (A perfect ranking against the Dummy's constant one leaves DeLong no variance: the test
    # then says it resampled instead.)
    assert result.test.startswith(statistical_test(primary, paired=False))
    assert (result.n_champion, result.n_challenger) == ((n + 1) // 2, n // 2)
    # Half the rows each, unpaired: the one-sided test leans to the model over the Dummy;
    # whether it is significant depends on how many rows the service's data leaves (a small
    # regression set's squared errors are heavy-tailed).
    assert result.p_value < 0.5
    if n >= 200:
        assert result.verdict == BETTER


def _rows(prediction, rows: slice):
    """The rows ``rows`` of a prediction."""
    return type(prediction)(
        prediction.y_true[rows],
        prediction.predicted[rows],
        None if prediction.proba is None else prediction.proba[rows],
        prediction.classes,
    )


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
    assert result.metric == config.metric.primary
    assert result.test == statistical_test(config.metric.primary, paired=True)
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
    assert result.test == statistical_test(config.metric.primary, paired=False)
    assert result.n_champion + result.n_challenger == rows
    assert min(result.n_champion, result.n_challenger) > rows / 4
    assert result.verdict == BETTER


def test_compare_without_a_rollout_log_says_how_to_get_one(trained_service, tmp_path):
    config = rollout_config(tmp_path, champion_dir(trained_service.config), mode="shadow")
    with pytest.raises(CompareError, match="POST /feedback"):
        compare_log(config)


def test_compare_judges_a_probability_metric_on_every_class_probability(
    trained_service, tmp_path
):
    """log_loss needs each class's probability, not only the predicted one's: the rollout log
    keeps them all, so the live comparison decides on log_loss itself (multiclass too)."""
    if not trained_service.config.is_classification:
        pytest.skip("log_loss is a classifier's metric")
    challenger = champion_dir(trained_service.config)
    config = rollout_config(tmp_path, challenger, mode="shadow")
    config = config.model_copy(
        update={"metric": config.metric.model_copy(update={"primary": "log_loss"})}
    )
    rows = serve_and_feed_back(trained_service, config)
    result = compare_log(config)
    assert result.metric == "log_loss" and not result.note
    assert result.test == "paired t-test on per-row log loss"
    assert result.n_challenger == rows and result.verdict == BETTER
    # The logged probabilities are the model's: its log loss on the data, recomputed.
    data = load_data(trained_service.config.resolve(trained_service.config.data.path))
    target = trained_service.config.data.target
    names = [feature["name"] for feature in trained_service.bundle.features]
    served = predict(trained_service.bundle.pipeline, data[names], data[target], config.task)
    assert result.challenger_value == pytest.approx(METRICS["log_loss"].value(served), rel=1e-5)


def test_guessing_classes_at_random_beats_a_constant_but_not_chance(holdout, trained_service):
    """A user's complaint turned into a test: a model trained on shuffled labels was promoted
    because, on macro-F1 or F1, guessing classes at random scores above a constant prediction.
    The permutation test measures the predictions against their own chance level."""
    model, dummy = holdout["model"], holdout["dummy"]
    task = trained_service.config.task
    metric = {"multiclass_classification": "f1_macro",
              "binary_classification": "f1"}.get(task, "rmse")
    rng = np.random.default_rng(0)

    def guess() -> Prediction:
        """The model's own answers handed to random rows: they know nothing of the labels."""
        order = rng.permutation(len(model.y_true))
        if model.proba is None:
            return Prediction(model.y_true, model.predicted[order])
        return Prediction(model.y_true, model.predicted[order], model.proba[order],
                          model.classes)

    # Under the null the p-value is uniform: of 20 know-nothing guesses about one in 20 falls
    # below 0.05 by chance, and 5 or more would happen with probability 0.003.
    guesses = [guess() for _ in range(20)]
    p_values = [chance_test(metric, g, permutations=200, seed=1).p_value for g in guesses]
    assert sum(p < 0.05 for p in p_values) < 5, p_values
    if metric != "rmse":
        # ... while on these metrics random guessing beats the constant more often than not.
        values = [METRICS[metric].value(g) for g in guesses]
        assert np.median(values) > METRICS[metric].value(dummy), values
    informed = chance_test(metric, model, seed=1)
    assert informed.p_value < 0.01
    assert informed.value == pytest.approx(METRICS[metric].value(model))
    # Same seed, same verdict, bit for bit.
    assert chance_test(metric, model, seed=1) == informed
