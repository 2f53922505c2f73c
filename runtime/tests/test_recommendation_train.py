"""Training a recommendation service on real MovieLens interactions, with a real MLflow store
in a temporary folder: the run, the registered version, the gate against popularity and the
champion, the exported bundle serving the evaluated model, reproducibility bit for bit, the
``recommend-all`` command and the errors a user sees on the command line."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlgen_runtime.cli import main
from mlgen_runtime.fallback import CHAMPION_DIR, fallback_dir
from mlgen_runtime.kinds import kind_of
from mlgen_runtime.kinds.recommendation.data import split
from mlgen_runtime.kinds.recommendation.recommender import load_recommender
from mlgen_runtime.kinds.recommendation.train import load_version, prepare, search, train
from mlgen_runtime.registry import use_store
from recommendation_support import movielens, write_service

SETTINGS = {
    "recommendation": {
        "split": "user_last",
        "candidates": ["popularity", "item_knn", "als", "bpr"],
        "trials": 2,
        # Never the limit here: a budget that cut a busy machine's search would change it.
        "time_budget_seconds": 3600,
        "bootstrap_samples": 100,
    }
}


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return movielens(users=120)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ratings):
    config = write_service(tmp_path_factory.mktemp("movie-recs"), ratings, SETTINGS)
    return config, kind_of(config).train(config)


def test_the_model_beats_popularity_significantly_and_becomes_champion(trained):
    config, result = trained
    assert result.decision.promote and result.decision.beats_baseline
    assert "popularity" in result.decision.reason and "paired t-test" in result.decision.reason
    assert result.metrics["ndcg"] > result.baseline_metrics["ndcg"]
    assert result.baseline_comparison.p_value < config.promotion.alpha
    assert result.metrics["ndcg_ci_low"] < result.metrics["ndcg"] < result.metrics["ndcg_ci_high"]
    board = {row["family"]: row for row in result.metadata["leaderboard"]}
    assert set(board) == {"popularity", "item_knn", "als", "bpr"}
    assert board[result.metadata["model_family"]]["chosen"]
    assert board["als"]["trials"] == 2 and board["popularity"]["trials"] == 1


def test_the_run_and_version_are_in_mlflow_with_the_champion_alias(trained):
    config, result = trained
    use_store(config)
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.metrics["test_ndcg"] == result.metrics["ndcg"]
    assert run.data.metrics["baseline_ndcg"] == result.baseline_metrics["ndcg"]
    assert run.data.params["family"] == result.metadata["model_family"]
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert len(children) == len(result.metadata["leaderboard"]) * 2 - 1  # a run per trial
    champion = client.get_model_version_by_alias(config.tracking.registered_model, "champion")
    assert str(champion.version) == result.version
    registered = load_version(config, "champion")
    assert registered.metadata["model_version"] == result.version


def test_the_exported_champion_answers_as_the_evaluated_model(trained):
    config, result = trained
    exported = load_recommender(fallback_dir(config, CHAMPION_DIR))
    assert exported.metadata["model_version"] == result.version
    users = np.flatnonzero(np.diff(exported.history.indptr))
    np.testing.assert_array_equal(
        exported.top_codes(users, 10)[0], result.recommender.top_codes(users, 10)[0]
    )
    card = config.resolve(config.paths.model_card).read_text()
    assert f"version {result.version}" in card and "ndcg@10" in card


def test_the_same_seed_and_data_give_the_same_metrics_and_no_promotion(trained):
    config, first = trained
    again = train(config)
    assert again.metrics == first.metrics  # bit for bit, intervals included
    assert untimed(again.metadata["leaderboard"]) == untimed(first.metadata["leaderboard"])
    # The champion re-scored on the same users is the same model: nothing to promote.
    assert again.comparison is not None and again.comparison.p_value == 1.0
    assert not again.decision.promote and again.decision.beats_baseline
    assert "does not beat champion" in again.decision.reason


def test_promote_gates_a_version_by_the_paired_test_and_force_needs_a_reason(trained, capsys):
    config, first = trained
    root = ["--root", str(config.root)]
    challenger = train(config, promote=False).version
    capsys.readouterr()
    # The same model as the champion: re-scored on the same test users, it is no better.
    assert main([*root, "promote", "--version", challenger]) == 1
    out = capsys.readouterr().out
    assert "one-sided paired t-test over users" in out and "not promoted" in out
    assert main([*root, "promote", "--version", challenger, "--force"]) == 2
    assert main([*root, "promote", "--version", challenger, "--force", "--reason", "drill"]) == 0
    assert load_version(config, "champion").metadata["model_version"] == challenger
    exported = load_recommender(fallback_dir(config, CHAMPION_DIR))
    assert exported.metadata["model_version"] == challenger
    previous = load_recommender(fallback_dir(config, "previous"))
    assert previous.metadata["model_version"] != challenger


def untimed(board: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "fit_seconds"} for row in board]


def test_recommend_all_writes_k_items_for_every_known_user(trained, tmp_path, capsys):
    config, result = trained
    out = tmp_path / "recs.parquet"
    assert main(["--root", str(config.root), "recommend-all", "--k", "5", "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == ["userId", "rank", "movieId", "score"]
    assert table.groupby("userId").size().eq(5).all()
    assert table["userId"].nunique() == result.metadata["users"]
    user = int(table["userId"].iloc[0])
    mine = table[table["userId"] == user].sort_values("rank")
    assert mine["movieId"].tolist() == result.recommender.recommend(user, 5).items
    assert "Wrote" in capsys.readouterr().out


def test_recommend_all_refuses_a_k_above_max_k(trained, tmp_path, capsys):
    config, _ = trained
    out = tmp_path / "recs.parquet"
    assert main(["--root", str(config.root), "recommend-all", "--k", "51", "--out", str(out)]) == 2
    assert "max_k (50)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "retrain", "compare"])
def test_tabular_only_commands_say_what_to_use_instead(trained, command, capsys):
    config, _ = trained
    assert main(["--root", str(config.root), command]) == 2
    error = capsys.readouterr().err
    assert f"`{command}` is not a command of recommendation services" in error
    assert "promote --version" in error or "train --data" in error


def test_bad_data_stops_training_with_a_message_naming_the_column(tmp_path, ratings, capsys):
    config = write_service(
        tmp_path, ratings, {"recommendation": {**SETTINGS["recommendation"], "user_column": "user"}}
    )
    before = sorted(config.root.rglob("*"))
    assert main(["--root", str(config.root), "train"]) == 2
    error = capsys.readouterr().err
    assert "recommendation.user_column 'user' is not a column" in error
    # Nothing is written for a run that could not start: no tracking store, no artifacts.
    assert sorted(config.root.rglob("*")) == before


def test_a_spent_budget_skips_the_families_not_reached_and_keeps_the_first(trained, ratings):
    config, _ = trained
    _, data, items = prepare(config)
    parts = split(data, config)
    train_part, held_out = data.subset(parts.train), data.subset(parts.validation)
    trials = search(config, train_part, held_out, items, deadline=time.monotonic())
    assert [trial.family for trial in trials] == ["popularity"]
    unbounded = search(config, train_part, held_out, items, deadline=time.monotonic() + 3600)
    assert {trial.family for trial in unbounded} == {"popularity", "item_knn", "als", "bpr"}


@pytest.mark.parametrize(
    ("candidates", "served"),
    [
        # Popularity chosen on validation: the run's own version serves.
        (["popularity"], "1"),
        # A model not significantly better than popularity: it stays a challenger (v1) and
        # popularity is registered (v2) and served.
        (["bpr"], "2"),
    ],
)
def test_popularity_serves_when_no_model_beats_it(tmp_path, ratings, capsys, candidates, served):
    # A new service must answer from its first day; popularity is a real recommender, and a
    # model that does not beat it significantly must not be promoted on noise.
    settings = {"recommendation": {**SETTINGS["recommendation"], "candidates": candidates,
                                   "trials": 1}}
    config = write_service(tmp_path, ratings, settings)
    assert main(["--root", str(config.root), "train"]) == 0
    told = capsys.readouterr().out
    assert f"popularity (v{served}) serves, and `train` exits 0" in told, told
    assert "promoted to champion: first model: popularity serves" in told, told
    champion = load_recommender(fallback_dir(config, CHAMPION_DIR))
    assert champion.metadata["model_family"] == "popularity"
    assert champion.metadata["model_version"] == served
    card = config.resolve("MODEL_CARD.md").read_text()
    assert ("Popularity serves as the first champion" in card) == (served == "2")
