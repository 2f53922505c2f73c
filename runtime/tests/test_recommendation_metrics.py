"""The ranking metrics agree with independent computations of their standard definitions:
scikit-learn's ndcg_score for NDCG@k, and direct per-user loops (as RecBole and
microsoft/recommenders define them) for recall, precision, MAP and hit rate; the paired test
over users is scipy's paired t-test, and it decides as a gate should."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from mlgen_runtime.kinds.recommendation.metrics import (
    coverage,
    paired_test,
    per_user,
    popularity_bias,
    summarise,
)
from scipy import stats
from sklearn.metrics import ndcg_score

N_USERS, N_ITEMS, K = 300, 60, 10


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    """Random relevant sets (1-15 items per user) and random scores ranking all items."""
    rng = np.random.default_rng(3)
    truth = np.zeros((N_USERS, N_ITEMS))
    for user in range(N_USERS):
        truth[user, rng.choice(N_ITEMS, rng.integers(1, 16), replace=False)] = 1
    scores = rng.random((N_USERS, N_ITEMS)) + truth * rng.random((N_USERS, 1))
    ranked = np.argsort(-scores, axis=1)[:, :K]
    return ranked, sp.csr_matrix(truth), scores


def test_ndcg_at_k_is_scikit_learns(case):
    ranked, truth, scores = case
    ours = per_user(ranked, truth)["ndcg"]
    theirs = [ndcg_score(truth[[u]].toarray(), scores[[u]], k=K) for u in range(N_USERS)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_recall_precision_map_and_hit_rate_follow_their_definitions(case):
    ranked, truth, _ = case
    ours = per_user(ranked, truth)
    for user in range(N_USERS):
        relevant = set(truth[user].indices)
        hits = [item in relevant for item in ranked[user]]
        precision_at = [sum(hits[: i + 1]) / (i + 1) for i in range(K)]
        assert ours["recall"][user] == pytest.approx(sum(hits) / len(relevant))
        assert ours["precision"][user] == pytest.approx(sum(hits) / K)
        assert ours["hit_rate"][user] == float(any(hits))
        ap = sum(p for p, hit in zip(precision_at, hits, strict=True) if hit)
        assert ours["map"][user] == pytest.approx(ap / min(len(relevant), K))


def test_a_perfect_ranking_scores_one_and_padding_never_hits():
    truth = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 0]]))
    perfect = per_user(np.array([[0, 1, 2], [2, -1, -1]]), truth)
    assert perfect["ndcg"].tolist() == [1.0, 1.0]
    assert perfect["recall"].tolist() == [1.0, 1.0]
    # -1 pads a user with fewer recommendable items; code 0 is relevant for user 0 only.
    padded = per_user(np.array([[-1, -1, -1], [-1, -1, -1]]), truth)
    assert padded["ndcg"].tolist() == [0.0, 0.0]
    # One hit at rank 2 of 3 with 2 relevant: DCG 1/log2(3), ideal 1 + 1/log2(3).
    second = per_user(np.array([[3, 1, 2]]), truth[[0]])["ndcg"][0]
    assert second == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_intervals_are_bootstrapped_over_users_and_seeded(case):
    ranked, truth, _ = case
    values = per_user(ranked, truth)
    summary = summarise(values, samples=300, seed=1)
    assert summary == summarise(values, samples=300, seed=1)
    for name in values:
        assert summary[f"{name}_ci_low"] < summary[name] < summary[f"{name}_ci_high"]
    width = summary["ndcg_ci_high"] - summary["ndcg_ci_low"]
    standard_error = values["ndcg"].std() / math.sqrt(N_USERS)
    assert width == pytest.approx(2 * 1.96 * standard_error, rel=0.25)


def test_coverage_and_popularity_bias():
    ranked = np.array([[0, 1], [0, 2], [-1, -1]])
    assert coverage(ranked, catalogue=10) == pytest.approx(0.3)
    popularity = np.array([100.0, 50.0, 1.0, 0.0, 10.0])
    # Percentiles among the 4 used items: item 0 -> 4/4, 1 -> 3/4, 2 -> 1/4.
    assert popularity_bias(ranked, popularity) == pytest.approx((1 + 1 + 0.75 + 0.25) / 4)


def test_the_paired_test_is_scipys_one_sided_paired_t_test():
    rng = np.random.default_rng(5)
    champion = rng.random(400)
    challenger = champion + rng.normal(0.02, 0.1, 400)
    result = paired_test("ndcg", champion, challenger, 0.05, ("1", "2"))
    expected = stats.ttest_rel(challenger, champion, alternative="greater")
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.better and result.n_challenger == 400
    assert result.challenger_value == pytest.approx(challenger.mean())
    worse = paired_test("ndcg", challenger, champion, 0.05, ("2", "1"))
    assert not worse.better and worse.p_value > 0.5


def test_identical_models_are_not_better_and_a_mismatch_is_refused():
    values = np.linspace(0, 1, 50)
    same = paired_test("ndcg", values, values.copy(), 0.05, ("1", "2"))
    assert same.p_value == 1.0 and not same.better
    with pytest.raises(ValueError, match="same users"):
        paired_test("ndcg", values, values[:10], 0.05, ("1", "2"))
