"""`promote` needs live evidence from `compare`; `retrain` promotes only through the gate.

The champion here is a real model trained on the same rows with their labels shuffled: it has
learnt nothing, so a model trained on the real labels must beat it, significantly, on any data.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from mlflow import MlflowClient
from mlgen_runtime.cli import main
from mlgen_runtime.compare import statistical_test
from mlgen_runtime.data import load_data
from mlgen_runtime.registry import (
    load_champion,
    promote,
)
from mlgen_runtime.retrain import retrain
from mlgen_runtime.serving.app import create_app
from mlgen_runtime.train import summary, train
from rollout_support import as_requests, outcome, settle
from service_fixture import isolated_config


def champion_of(config) -> str:
    client = MlflowClient(tracking_uri=config.tracking_uri)
    name = config.tracking.registered_model
    return str(client.get_model_version_by_alias(name, "champion").version)


def service_with_a_clueless_champion(folder: Path, sample_data: Path, promotion=None, **rollout):
    """A service whose champion (v1, forced) was trained on shuffled labels."""
    overrides = {
        "data": {"path": str(sample_data)},
        "tuning": {"trials": 0},
        "promotion": promotion or {},
        "serving": {"rollout": {"min_samples": 30, **rollout}},
    }
    config = isolated_config(folder, overrides)
    data = load_data(sample_data)
    target = config.data.target
    shuffled = data.assign(**{target: data[target].sample(frac=1, random_state=1).to_numpy()})
    shuffled_path = folder / "shuffled.csv"
    shuffled.to_csv(shuffled_path, index=False)
    version = train(config, data_path=shuffled_path).version
    if not promote(config, version).promote:
        promote(config, version, reason="test: a clueless champion", force=True)
    assert champion_of(config) == version
    return config


def test_retrain_promotes_a_significantly_better_model(tmp_path, sample_data):
    config = service_with_a_clueless_champion(tmp_path, sample_data)
    result = retrain(config, data_path=sample_data)
    comparison = result.comparison
    assert comparison is not None and comparison.paired
    # Decided on the primary metric, by its test, on the rows of the new test split.
    assert comparison.metric == config.metric.primary
    assert comparison.test == statistical_test(config.metric.primary, paired=True)
    assert comparison.p_value < config.promotion.alpha and comparison.better
    assert result.decision.promote and comparison.test in result.decision.reason
    assert champion_of(config) == result.version
    assert comparison.test in summary(result)


def test_retrain_keeps_the_champion_when_the_gain_is_under_the_minimum(
    tmp_path, sample_data, capsys
):
    # A relative minimum no real gain reaches (an absolute one is in the metric's units: 10 is
    # out of reach for a probability metric, not for an RMSE in the target's units).
    config = service_with_a_clueless_champion(
        tmp_path, sample_data, promotion={"min_relative_change": 100.0}
    )
    before = champion_of(config)
    capsys.readouterr()
    status = main(["--root", str(config.root), "retrain", "--data", str(sample_data)])
    out = capsys.readouterr().out
    assert status == 1
    assert "kept as challenger" in out and "less than promotion.min_relative_change 100.0" in out
    # The test is printed with the metric it judged.
    assert f"metric:     {config.metric.primary}" in out
    assert statistical_test(config.metric.primary, paired=True) in out
    assert champion_of(config) == before


def test_promote_needs_a_significant_live_comparison(tmp_path, sample_data, capsys):
    config = service_with_a_clueless_champion(
        tmp_path, sample_data, mode="shadow", challenger="challenger"
    )
    root = ["--root", str(config.root)]
    challenger = train(config, promote=False).version
    assert main([*root, "promote", "--version", challenger]) == 2
    assert "No rollout log" in capsys.readouterr().err

    data = load_data(sample_data)
    records = as_requests(load_champion(config).features, data)
    with TestClient(create_app(config)) as client:
        for record, truth in zip(records, data[config.data.target], strict=True):
            response = client.post("/predict", json=record)
            assert response.status_code == 200
            feedback = {"request_id": response.json()["request_id"], **outcome(config.task, truth)}
            assert client.post("/feedback", json=feedback).status_code == 200
        settle(client)

    assert main([*root, "compare"]) == 0
    out = capsys.readouterr().out
    assert f"metric:     {config.metric.primary}" in out
    assert statistical_test(config.metric.primary, paired=True) in out
    assert main([*root, "promote", "--version", challenger, "--force"]) == 2
    assert "--reason" in capsys.readouterr().err
    assert main([*root, "promote", "--version", challenger]) == 0
    assert champion_of(config) == challenger


def test_promote_without_a_rollout_tests_both_models_on_the_same_test_rows(
    tmp_path, sample_data, capsys
):
    config = service_with_a_clueless_champion(tmp_path, sample_data)
    root = ["--root", str(config.root)]
    challenger = train(config, promote=False).version
    capsys.readouterr()
    assert main([*root, "promote", "--version", challenger]) == 0
    out = capsys.readouterr().out
    # The paired test of the primary metric on the configured data's test split, printed.
    assert f"metric:     {config.metric.primary}" in out
    assert statistical_test(config.metric.primary, paired=True) in out
    assert "significantly better" in out and "no paired test" not in out
    assert champion_of(config) == challenger
