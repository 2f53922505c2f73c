"""The recommendation kind on real shopping baskets: items used together, as patch sheets are.

Weka's supermarket baskets (Debian's ``weka`` package, read by
``examples/supermarket/make_data.py``): each basket is a "user" whose items are the departments
it bought from, with no time and no user across baskets. A service trained with the kind's own
``train`` (real MLflow store in a temporary folder) on all 4,627 baskets, a random 20% of the
rows held out, is served by uvicorn on 127.0.0.1 and asked to complete a new basket.

Popularity is hard to beat here: a few departments (bread, fruit, vegetables, milk) are in
most baskets. On the first 1,500 baskets nothing beat it on validation; on all of them EASE is
1.04x popularity's NDCG@10 (docs/benchmarks.md), significantly over 4,387 test baskets.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import httpx
import pytest
from mlgen_runtime.kinds import kind_of
from mlgen_runtime.kinds.recommendation.serving import create_app
from recommendation_support import write_service
from serving_support import live_server

MAKE_DATA = Path(__file__).resolve().parents[2] / "examples" / "supermarket" / "make_data.py"
TRAINING = {
    "candidates": ["popularity", "ease"],
    "trials": 1,
    "time_budget_seconds": 3600,
    "bootstrap_samples": 100,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("supermarket_make_data", MAKE_DATA)
    assert spec is not None and spec.loader is not None
    supermarket = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(supermarket)
    if not supermarket.INSTALLED.is_file() and shutil.which("apt-get") is None:
        pytest.skip("needs Debian's weka package or apt-get to fetch it")
    frame = supermarket.baskets()
    settings = {"recommendation": {**supermarket.RECOMMENDATION, **TRAINING}}
    config = write_service(tmp_path_factory.mktemp("baskets"), frame, settings)
    return config, frame, kind_of(config).train(config)


def test_a_basket_model_beats_popularity_on_held_out_items_of_each_basket(trained):
    config, _, result = trained
    board = {row["family"]: row for row in result.metadata["leaderboard"]}
    assert set(board) == {"popularity", "ease"} and board["ease"]["chosen"]
    assert result.decision.promote and result.decision.beats_baseline
    assert result.metrics["ndcg"] > result.baseline_metrics["ndcg"]
    assert result.baseline_comparison.p_value < config.promotion.alpha


def test_the_served_basket_model_completes_a_new_basket_and_names_its_strategy(trained):
    config, frame, _ = trained
    basket = ["bread and cake", "milk-cream", "tea"]
    with live_server(create_app(config)) as url, httpx.Client(base_url=url) as http:
        similar = http.post("/recommend/similar", json={"items": basket, "k": 5})
        known = http.post("/recommend", json={"user_id": int(frame["basket"].iloc[0]), "k": 5})
        new = http.post("/recommend", json={"user_id": 10**9, "k": 5})
        unknown = http.post("/recommend/similar", json={"items": ["no such department"]})
    assert similar.status_code == 200, similar.text
    items = [row["item_id"] for row in similar.json()["items"]]
    assert len(items) == 5 and not set(items) & set(basket)
    assert set(items) <= set(frame["department"]) and similar.json()["strategy"] == "similar_items"
    assert known.json()["strategy"] == "personalised" and len(known.json()["items"]) == 5
    assert new.json()["strategy"] == "popularity"
    # No metadata and no known item: the most bought departments, said so.
    assert unknown.status_code == 200 and unknown.json()["strategy"] == "popularity"
