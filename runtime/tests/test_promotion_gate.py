"""The promotion gate judges the primary metric, by a paired test on the same holdout.

On ISLR's Default data (10,000 card holders, 3.3% of whom default) accuracy cannot tell models
apart: a constant "No" is right 96.7% of the time. A model that ranks the defaulters first is
worth promoting on PR AUC although it is exactly as accurate, and a model whose PR AUC is
higher by chance alone is not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlgen_runtime.compare import Comparison, compare_predictions
from mlgen_runtime.config import FeatureSpec, PromotionConfig
from mlgen_runtime.data import load_data, split
from mlgen_runtime.features import describe
from mlgen_runtime.registry import decide, promote
from mlgen_runtime.scoring import METRICS, is_better, predict
from mlgen_runtime.train import build_pipeline, summary, train
from service_fixture import islr_default_config


def champion_of(config) -> str:
    client = MlflowClient(tracking_uri=config.tracking_uri)
    name = config.tracking.registered_model
    return str(client.get_model_version_by_alias(name, "champion").version)


def holdout(config, data):
    """The test split every model of ``config`` is judged on: features, target."""
    test = split(load_data(data), config).test
    return test.drop(columns=[config.data.target]), test[config.data.target]


def test_a_better_ranking_model_with_equal_accuracy_is_promoted_on_pr_auc(
    tmp_path, islr_default_csv
):
    config = islr_default_config(tmp_path, islr_default_csv, [{"name": "income"}])
    weak = train(config)
    if not weak.decision.promote:
        # Income says next to nothing about default: it may not even beat the Dummy baseline.
        promote(config, weak.version, reason="test: a weak champion", force=True)
    # Heavily regularised, its probabilities stay near the 3% base rate: it says "No" to
    # everyone, as the weak model does, but it ranks people by their balance.
    ranking_config = config.model_copy(
        update={
            "features": [
                FeatureSpec(name="student", type="boolean"),
                FeatureSpec(name="balance"),
                FeatureSpec(name="income"),
            ],
            "model": config.model.model_copy(update={"params": {"C": 1e-4}}),
        }
    )
    ranking = train(ranking_config)

    assert ranking.metrics["accuracy"] == weak.metrics["accuracy"]
    comparison = ranking.comparison
    assert comparison.metric == "pr_auc" and comparison.test == "paired bootstrap"
    assert comparison.challenger_value > comparison.champion_value + 0.2
    assert comparison.p_value < 0.01
    assert ranking.decision.promote and "paired bootstrap" in ranking.decision.reason
    assert champion_of(config) == ranking.version
    assert "paired bootstrap" in summary(ranking) and "pr_auc" in summary(ranking)
    # Accuracy, the old judge, sees no difference: not one row is classified differently.
    x, y = holdout(config, islr_default_csv)
    by_accuracy = compare_predictions(
        "accuracy",
        predict(weak.pipeline, x, y, config.task),
        predict(ranking.pipeline, x, y, config.task),
        paired=True,
        alpha=0.05,
    )
    assert by_accuracy.test == "exact McNemar test" and by_accuracy.p_value == 1.0


def test_a_model_only_noise_better_is_kept_as_challenger(default_service, islr_default_csv):
    config, champion = default_service.config, default_service.result
    splits = split(load_data(islr_default_csv), config)
    target = config.data.target
    features = champion.metadata["features"]
    names = [feature["name"] for feature in features]
    held = predict(champion.pipeline, splits.test[names], splits.test[target], config.task)
    pr_auc = METRICS["pr_auc"]
    # The champion's features plus a column of pure noise: whatever it gains is luck. The
    # first noise column whose model happens to score a higher PR AUC on the holdout:
    # Fitted as training fits the champion: on the training and validation rows.
    fitted = pd.concat([splits.train, splits.validation])
    for seed in range(50):
        rng = np.random.default_rng(seed)
        train_rows, test_rows = (
            part.assign(noise=rng.normal(size=len(part))) for part in (fitted, splits.test)
        )
        with_noise = [*features, describe(train_rows["noise"], "numeric", "auto", "linear")]
        columns = [*names, "noise"]
        lucky = build_pipeline(config, with_noise, []).fit(train_rows[columns], train_rows[target])
        noisy = predict(lucky, test_rows[columns], test_rows[target], config.task)
        if pr_auc.value(noisy) > pr_auc.value(held):
            break
    comparison = compare_predictions(
        "pr_auc",
        held,
        noisy,
        paired=True,
        alpha=config.promotion.alpha,
        samples=config.promotion.bootstrap_samples,
        seed=config.seed,
    )
    decision = decide(
        "pr_auc",
        comparison.challenger_value,
        champion.baseline_metrics["pr_auc"],
        comparison.champion_value,
        "v1",
        config.promotion,
        comparison,
    )
    # A strictly better point estimate: the gate of old would have promoted it.
    assert is_better("pr_auc", comparison.challenger_value, comparison.champion_value)
    assert comparison.p_value > 0.1
    assert not decision.promote and "not significantly better" in decision.reason


def test_the_gate_asks_for_the_minimum_changes_of_its_policy():
    # pr_auc 0.52 against a champion at 0.50: 0.02 better, 4% of the champion's value.
    gain = ("pr_auc", 0.52, 0.03, 0.50, "v1")
    assert decide(*gain).promote
    absolute = decide(*gain, PromotionConfig(min_absolute_change=0.05))
    assert not absolute.promote and "promotion.min_absolute_change 0.05" in absolute.reason
    relative = decide(*gain, PromotionConfig(min_relative_change=0.1))
    assert not relative.promote and "promotion.min_relative_change 0.1" in relative.reason
    # Lower is better for rmse: 1.7 against 2.0 is a gain of 0.3, 15%.
    assert decide("rmse", 1.7, 3.0, 2.0, "v1", PromotionConfig(min_relative_change=0.1)).promote


def test_a_model_not_significantly_better_than_its_baseline_is_not_promoted():
    def against_baseline(p_value: float) -> Comparison:
        return Comparison(
            test="paired bootstrap",
            metric="pr_auc",
            paired=True,
            champion_version="baseline",
            challenger_version="new",
            n_champion=60,
            n_challenger=60,
            champion_value=0.05,
            challenger_value=0.09,
            statistic=0.04,
            p_value=p_value,
            alpha=0.05,
            min_samples=1,
        )

    lucky = decide("pr_auc", 0.09, 0.05, None, "", PromotionConfig(), None, against_baseline(0.3))
    assert not lucky.promote and not lucky.beats_baseline
    assert "not significantly better than the Dummy baseline" in lucky.reason
    assert "paired bootstrap on 60 paired test rows: p=0.3" in lucky.reason
    real = decide("pr_auc", 0.09, 0.05, None, "", PromotionConfig(), None, against_baseline(0.01))
    assert real.promote and real.beats_baseline and "significantly" in real.reason
    # Behind a better champion a model still beats its baseline: kept, not a failed training.
    behind = decide(
        "pr_auc", 0.09, 0.05, 0.2, "v1", PromotionConfig(), None, against_baseline(0.01)
    )
    assert not behind.promote and behind.beats_baseline
