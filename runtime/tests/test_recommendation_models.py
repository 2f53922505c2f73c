"""Every model family on real MovieLens interactions: fitted, saved as numpy arrays and JSON
only, loaded back to the same answers; the same seed gives the same model bit for bit; and the
recommender answers known users, unknown users, baskets and cold items with the strategy it
names, honouring filters and refusing bad requests by name."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from mlgen_runtime.bundle import save_bundle
from mlgen_runtime.errors import RequestError
from mlgen_runtime.kinds.recommendation.data import read_interactions, relevant, split
from mlgen_runtime.kinds.recommendation.models import FAMILIES
from mlgen_runtime.kinds.recommendation.recommender import (
    fit_recommender,
    load_recommender,
    save_model,
)
from mlgen_runtime.kinds.recommendation.train import score
from recommendation_support import movielens, write_service

# EASE inverts an items x items matrix: bounded here to keep the test quick.
PARAMS = {"ease": {"max_items": 1500}}


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    ratings = movielens(users=80)
    # The models fit on the training part only, tested on the latest 20% after a 10% gap (the
    # schema's 20% validation part leaves 80 users too little history: every model fell below
    # popularity, ALS and item-kNN too).
    config = write_service(
        tmp_path_factory.mktemp("models"),
        ratings,
        {"recommendation": {"split": "user_last", "validation_size": 0.1}},
    )
    data, items = read_interactions(ratings, config)
    parts = split(data, config)
    return config, data, items, data.subset(parts.train), data.subset(parts.test)


@pytest.fixture(scope="module")
def fitted(movies):
    config, _, items, train, _ = movies
    return {
        family: fit_recommender(
            family, PARAMS.get(family, {}), config.seed, train, items, {"max_k": 50}
        )
        for family in FAMILIES
    }


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_saved_model_is_numpy_arrays_and_json_and_answers_the_same(
    family, fitted, movies, tmp_path
):
    _, _, _, train, test = movies
    recommender = fitted[family]
    folder = save_bundle(tmp_path / "bundle", recommender, {"max_k": 50}, {}, save_model)
    files = sorted(path.name for path in (folder / "model").iterdir())
    assert files == ["arrays.npz", "items.json", "recommender.json"]
    with zipfile.ZipFile(folder / "model" / "arrays.npz") as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())
    loaded = load_recommender(folder)  # np.load(allow_pickle=False) inside
    users, _ = relevant(train, test)
    np.testing.assert_array_equal(
        loaded.top_codes(users, 10)[0], recommender.top_codes(users, 10)[0]
    )
    user = recommender.users[users[0]].item()
    assert loaded.recommend(user, 5) == recommender.recommend(user, 5)


@pytest.mark.parametrize("family", ["als", "bpr", "item_knn", "ease", "recent_popularity"])
def test_the_same_seed_and_data_give_the_same_model_bit_for_bit(family, fitted, movies):
    config, _, items, train, test = movies
    again = fit_recommender(family, PARAMS.get(family, {}), config.seed, train, items)
    for name, array in fitted[family].model.arrays().items():
        np.testing.assert_array_equal(again.model.arrays()[name], array, err_msg=name)
    users, truth = relevant(train, test)
    first, second = score(fitted[family], users, truth, 10), score(again, users, truth, 10)
    assert first.value("ndcg") == second.value("ndcg")


def test_the_latest_movies_and_what_users_watched_next_help_on_their_latest_movies(tmp_path):
    # All of MovieLens: on the 80-user subset the difference is within noise either way.
    ratings = movielens()
    config = write_service(tmp_path, ratings, {"recommendation": {"split": "user_last"}})
    data, items = read_interactions(ratings, config)
    parts = split(data, config)
    train = data.subset(np.concatenate([parts.train, parts.validation]))
    users, truth = relevant(train, data.subset(parts.test))
    tried = {
        "bm25": {"recency": 0.0},
        "bm25, latest weighed more": {"recency": 10.0},
        "what came next": {"similarity": "sequence", "recency": 3.0, "neighbours": 400},
    }
    ndcg = {
        name: score(
            fit_recommender("item_knn", params, config.seed, train, items), users, truth, 10
        ).value("ndcg")
        for name, params in tried.items()
    }
    # Measured: 0.120, 0.138 and 0.155.
    assert ndcg["bm25, latest weighed more"] > ndcg["bm25"] * 1.1
    assert ndcg["what came next"] > ndcg["bm25, latest weighed more"] * 1.05


def test_what_users_watched_next_by_least_squares_helps_ease_on_the_validation_part(tmp_path):
    # SLIT's part of EASE, judged where the kind chooses: on the validation part (each user's
    # 20% before their latest 20%), fitted on the rest, all of MovieLens.
    ratings = movielens()
    config = write_service(tmp_path, ratings, {"recommendation": {"split": "user_last"}})
    data, items = read_interactions(ratings, config)
    parts = split(data, config)
    train = data.subset(parts.train)
    users, truth = relevant(train, data.subset(parts.validation))
    ndcg = {
        weight: score(
            fit_recommender("ease", {"transition": weight}, config.seed, train, items),
            users,
            truth,
            10,
        ).value("ndcg")
        for weight in (0.0, 1.0)
    }
    # Measured: 0.181 and 0.195.
    assert ndcg[1.0] > ndcg[0.0] * 1.04


def test_ease_scores_known_and_ad_hoc_users_in_one_call_as_one_at_a_time(fitted):
    model = fitted["ease"].model
    history = fitted["ease"].recent
    users = np.array([3, -1, 5, -1])
    rows = history[[3, 7, 5, 9]]
    together = model.scores(users, rows)
    for row, user in enumerate(users):
        alone = model.scores(np.array([user]), rows[row])
        np.testing.assert_array_equal(together[row], alone[0])
    # An ad-hoc history is scored as given, a known user from their own aged history.
    assert not np.array_equal(together[1], model.scores(np.array([7]), rows[1])[0])


def test_personal_models_beat_popularity_on_the_users_latest_movies(fitted, movies):
    _, _, _, train, test = movies
    users, truth = relevant(train, test)
    ndcg = {family: score(fitted[family], users, truth, 10).value("ndcg") for family in fitted}
    assert max(ndcg["ease"], ndcg["als"], ndcg["item_knn"]) > ndcg["popularity"] > 0


def test_a_known_user_gets_personal_items_never_seen_before(fitted, movies):
    recommender = fitted["als"]
    code = int(np.argmax(np.diff(recommender.history.indptr)))
    user = recommender.users[code].item()
    answer = recommender.recommend(user, 10)
    seen = set(recommender.ids_of(recommender.history[code].indices))
    assert answer.strategy == "personalised" and len(answer.items) == 10
    assert not seen & set(answer.items)
    assert answer.scores == sorted(answer.scores, reverse=True)
    again = recommender.recommend(user, 10, exclude_seen=False)
    assert seen & set(again.items)  # a heavy user's favourites are what the model knows best
    assert recommender.recommend(str(user), 10) == answer  # an id sent as text


def test_an_unknown_user_gets_the_most_popular_items(fitted):
    recommender = fitted["ease"]
    answer = recommender.recommend("someone-new", 5)
    most_used = recommender.ids_of(np.argsort(-recommender.popularity, kind="stable")[:5])
    assert answer.strategy == "popularity" and answer.items == most_used


def test_similar_items_of_known_items_come_from_the_model_without_the_input(fitted):
    recommender = fitted["item_knn"]
    basket = recommender.ids_of(np.argsort(-recommender.popularity, kind="stable")[:3])
    answer = recommender.similar(basket, 10)
    assert answer.strategy == "similar_items" and len(answer.items) == 10
    assert not set(basket) & set(answer.items)


def test_items_without_interactions_but_with_metadata_are_answered_by_content(fitted, movies):
    _, data, items, train, _ = movies
    recommender = fitted["als"]
    cold = [
        item
        for code, item in enumerate(recommender.ids_of(np.arange(data.n_items)))
        if recommender.popularity[code] == 0 and items.columns["genres"][code]
    ]
    assert cold, "a user_last split leaves some movies seen only in the test part"
    assert not recommender.knows_item(cold[0])
    answer = recommender.similar([cold[0]], 5)
    assert answer.strategy == "content" and cold[0] not in answer.items
    genres = set(items.columns["genres"][recommender.item_code(cold[0])].split("|"))
    first = set(items.columns["genres"][recommender.item_code(answer.items[0])].split("|"))
    assert genres & first  # the most similar movie shares a genre


def test_nothing_known_falls_back_to_popularity(fitted):
    answer = fitted["bpr"].similar(["no-such-movie", -1], 5)
    assert answer.strategy == "popularity" and len(answer.items) == 5


def test_filters_keep_items_whose_metadata_holds_a_value(fitted, movies):
    _, _, items, _, _ = movies
    recommender = fitted["ease"]
    user = recommender.users[0].item()
    answer = recommender.recommend(user, 10, filters={"genres": ["comedy"]})
    assert answer.items
    for item in answer.items:
        assert "comedy" in items.columns["genres"][recommender.item_code(item)].lower()
    either = recommender.recommend(user, 10, filters={"genres": ["Horror", "Sci-Fi"]})
    for item in either.items:
        genres = items.columns["genres"][recommender.item_code(item)].split("|")
        assert {"Horror", "Sci-Fi"} & set(genres)
    assert recommender.recommend(user, 10, filters={"genres": ["no such genre"]}).items == []


def test_bad_requests_name_the_problem(fitted):
    recommender = fitted["als"]
    with pytest.raises(RequestError, match="Unknown filter column 'brand'.*title, genres"):
        recommender.recommend(1, 5, filters={"brand": ["x"]})
    with pytest.raises(RequestError, match="k must be a whole number from 1 to 50"):
        recommender.recommend(1, 0)
    with pytest.raises(RequestError, match="k must be"):
        recommender.recommend(1, 51)
    with pytest.raises(RequestError, match="items is empty"):
        recommender.similar([], 5)
