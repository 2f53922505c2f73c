"""Reading interactions: what a user gets told when the file does not fit the config, and
splits that hold out what they say (later interactions, each user's latest, a seeded share)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from mlgen_runtime.errors import ConfigError, DataValidationError
from mlgen_runtime.kinds.recommendation.data import (
    Interactions,
    read_interactions,
    relevant,
    split,
)
from recommendation_support import movielens, write_service


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return movielens(users=60)


@pytest.fixture
def service(tmp_path, ratings):
    return lambda **rec: write_service(tmp_path, ratings, {"recommendation": rec})


def test_movielens_is_indexed_by_its_own_ids_with_titles_and_genres(service, ratings):
    data, items = read_interactions(ratings, service())
    assert len(data) == len(ratings)
    assert data.n_users == ratings["userId"].nunique()
    assert data.n_items == ratings["movieId"].nunique()
    assert data.items.dtype.kind == "i" and set(items.columns) == {"title", "genres"}
    toy_story = int(np.searchsorted(data.items, 1))
    if data.items[toy_story] == 1:
        assert "Comedy" in items.columns["genres"][toy_story]
    # Weights are the ratings, summed per (user, item): MovieLens has one rating per pair.
    assert data.matrix.sum() == pytest.approx(ratings["rating"].sum())


@pytest.mark.parametrize(
    ("change", "setting", "named"),
    [
        ({"user_column": "customer"}, "user_column", "customer"),
        ({"item_column": "sku"}, "item_column", "sku"),
        ({"time_column": "when"}, "time_column", "when"),
        ({"weight_column": "stars"}, "weight_column", "stars"),
        ({"item_columns": ["title", "brand"]}, "item_columns[1]", "brand"),
    ],
)
def test_a_missing_column_names_the_setting_and_the_column(
    service, ratings, change, setting, named
):
    message = rf"recommendation\.{re.escape(setting)} '{named}' is not a column"
    with pytest.raises(DataValidationError, match=message):
        read_interactions(ratings, service(**change))


def test_an_empty_file_says_what_it_needs(service, ratings):
    with pytest.raises(DataValidationError, match="no rows"):
        read_interactions(ratings.iloc[:0], service())


def test_an_id_column_without_any_id_points_at_the_setting(service, ratings):
    with pytest.raises(DataValidationError, match="'userId' is empty in every row"):
        read_interactions(ratings.assign(userId=np.nan), service())


def test_rows_without_an_id_are_dropped_and_the_rest_kept(service, ratings):
    holed = ratings.astype({"movieId": "float64"})
    holed.loc[:9, "movieId"] = np.nan
    data, _ = read_interactions(holed, service())
    assert len(data) == len(ratings) - 10
    assert data.items.dtype.kind == "i"  # whole-number floats are still integer ids


def test_text_in_a_weight_column_is_named_with_an_example(service, ratings):
    bad = ratings.astype({"rating": "object"})
    bad.loc[3, "rating"] = "five stars"
    with pytest.raises(DataValidationError, match="'rating'.*'five stars'"):
        read_interactions(bad, service())


def test_a_time_that_is_not_a_time_is_named_with_an_example(service, ratings):
    bad = ratings.assign(timestamp=pd.to_datetime(ratings["timestamp"], unit="s").astype(str))
    bad.loc[5, "timestamp"] = "last tuesday"
    with pytest.raises(DataValidationError, match="'timestamp'.*'last tuesday'"):
        read_interactions(bad, service())


def test_text_ids_and_iso_times_read_like_numbers_and_seconds(service, ratings):
    as_text = ratings.assign(
        userId="u" + ratings["userId"].astype(str),
        timestamp=pd.to_datetime(ratings["timestamp"], unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    data, _ = read_interactions(as_text, service())
    numbers, _ = read_interactions(ratings, service())
    assert data.users.dtype.kind == "U" and data.users[0].startswith("u")
    np.testing.assert_array_equal(data.time, numbers.time)


def test_min_weight_keeps_only_positive_interactions(service, ratings):
    data, _ = read_interactions(ratings, service(min_weight=4.0))
    assert len(data) == int((ratings["rating"] >= 4).sum())
    with pytest.raises(DataValidationError, match="min_weight 9"):
        read_interactions(ratings, service(min_weight=9.0))


def test_the_time_split_tests_on_the_latest_interactions(service, ratings):
    config = service(split="time", test_size=0.2, validation_size=0.1)
    data, _ = read_interactions(ratings, config)
    parts = split(data, config)
    assert data.time[parts.train].max() <= data.time[parts.validation].min()
    assert data.time[parts.validation].max() <= data.time[parts.test].min()
    assert len(parts.test) == pytest.approx(0.2 * len(data), abs=1)
    assert len(parts.train) + len(parts.validation) + len(parts.test) == len(data)


def test_the_user_last_split_holds_out_each_users_latest_interactions(service, ratings):
    config = service(split="user_last")
    data, _ = read_interactions(ratings, config)
    parts = split(data, config)
    for user in np.unique(data.user):
        mine = data.user == user
        fitted = np.intersect1d(np.flatnonzero(mine), parts.train)
        tested = np.intersect1d(np.flatnonzero(mine), parts.test)
        assert len(tested) >= 1
        assert data.time[fitted].max() <= data.time[tested].min()
    users, truth = relevant(data.subset(parts.train), data.subset(parts.test))
    assert len(users) == data.n_users  # every user is evaluated on their own latest items


def test_the_random_split_is_seeded(service, ratings, tmp_path):
    config = service(split="random")
    data, _ = read_interactions(ratings, config)
    first, again = split(data, config), split(data, config)
    np.testing.assert_array_equal(first.test, again.test)
    other = split(data, config.model_copy(update={"seed": config.seed + 1}))
    assert not np.array_equal(first.test, other.test)


def test_a_time_split_without_a_time_column_says_what_to_do(service, ratings):
    config = service(split="time", time_column=None)
    data, _ = read_interactions(ratings, config)
    with pytest.raises(ConfigError, match="time_column.*split: random"):
        split(data, config)


def test_recency_halves_a_users_weights_every_half_life_from_their_latest(service, ratings):
    config = service()
    data, _ = read_interactions(ratings, config)
    recent = data.recency(10.0)
    assert (recent != 0).sum() == (data.matrix != 0).sum()  # the same items, none lost
    user = int(np.argmax(np.bincount(data.user)))
    mine = np.flatnonzero(data.user == user)
    latest_first = data.item[mine[np.lexsort((mine, -data.time[mine]))]]
    aged = np.asarray(recent[user, latest_first].todense()).ravel()
    weights = np.asarray(data.matrix[user, latest_first].todense()).ravel()
    decay = aged / weights
    assert decay[0] == 1.0 and decay[10] == pytest.approx(0.5)
    assert decay[20] == pytest.approx(0.25) and np.all(np.diff(decay) <= 1e-7)
    assert data.recency(0.0) is data.matrix


def two_users_in_order() -> Interactions:
    """User 1 used a, b, c in that order, user 2 used b, then a (rows out of time order)."""
    return Interactions(
        users=np.array([1, 2]),
        items=np.array(["a", "b", "c"]),
        user=np.array([0, 1, 0, 0, 1]),
        item=np.array([2, 0, 0, 1, 1]),
        weight=np.ones(5, dtype=np.float32),
        time=np.array([30.0, 20.0, 10.0, 20.0, 10.0]),
    )


def test_transitions_count_what_each_user_used_next_by_time_nearer_steps_weighing_more():
    # Rows out of time order: user 1 used a, b, c in that order; user 2 used b, then a.
    data = two_users_in_order()
    following = data.transitions(window=2, decay=0.5).toarray()
    a, b, c = 0, 1, 2
    assert following[a, b] == 1.0  # user 1: b right after a
    assert following[b, c] == 1.0  # user 1: c right after b
    assert following[a, c] == 0.5  # user 1: c two steps after a
    assert following[b, a] == 1.0  # user 2: a right after b
    assert following.sum() == 3.5  # nothing across users, nothing backwards


def test_windows_pair_each_interaction_with_the_users_past_and_future_by_time():
    # User 1 used a, b, c in that order (rows out of time order); user 2 used b, then a.
    data = two_users_in_order()
    sources, targets = data.windows(past=2, past_half_life=1.0, future=2, future_half_life=1.0)
    # Columns a, b, c. Rows: user 1 at b (past a), user 1 at c (past b, a), user 2 at a
    # (past b); the first interaction of each user has no past and no row.
    np.testing.assert_allclose(
        sources.toarray(), [[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 1.0, 0.0]]
    )
    # The targets start at the row's own item; the next one weighs half as much.
    np.testing.assert_allclose(
        targets.toarray(), [[0.0, 1.0, 0.5], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    )
