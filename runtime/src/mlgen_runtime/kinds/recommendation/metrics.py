"""The *metrics* of a recommender: ranking quality at k per user, their bootstrap intervals over
users, what share of the catalogue is recommended, how popular the recommended items are, and
the paired test over users that the promotion gate runs.

Definitions (binary relevance; R is the user's set of relevant held-out items, hit_i is 1 when
the item at rank i is in R), as in RecBole and microsoft/recommenders:

- precision@k = hits / k;
- recall@k = hits / |R|;
- NDCG@k = sum_i hit_i / log2(i + 1), divided by the same sum for min(|R|, k) hits at the top;
- MAP@k: the mean over users of AP@k = sum_i precision@i * hit_i / min(|R|, k);
- hit rate@k: the share of users with at least one hit (what live feedback measures).

Each is a mean over the evaluated users, so a model's per-user values are what the paired test
compares: the one-sided paired t-test of "the challenger's mean is higher" on the per-user
values of the primary metric (the users are the independent units, not the items).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import stats

from ...compare import Comparison

#: The ranking metrics a service may choose as primary, each at the service's k.
RANKING = ("ndcg", "recall", "map", "precision")
#: Every per-user metric reported.
REPORTED = (*RANKING, "hit_rate")
TEST = "one-sided paired t-test over users"


def discounts(k: int) -> np.ndarray:
    """1 / log2(rank + 1) for ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def hits(ranked: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """users x k booleans: is the item at each rank relevant (codes -1 never are)?"""
    n_items = truth.shape[1]
    truth_rows = np.repeat(np.arange(truth.shape[0], dtype=np.int64), np.diff(truth.indptr))
    relevant = truth_rows * n_items + truth.indices
    rows = np.arange(ranked.shape[0], dtype=np.int64)[:, None]
    return np.isin(rows * n_items + ranked, relevant) & (ranked >= 0)


def per_user(ranked: np.ndarray, truth: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Each ranking metric at k = ``ranked.shape[1]`` for each user (row of ``truth``)."""
    k = ranked.shape[1]
    hit = hits(ranked, truth).astype(np.float64)
    relevant = np.diff(truth.indptr).astype(np.float64)
    if np.any(relevant == 0):
        raise ValueError("every evaluated user needs at least one relevant item")
    ideal_hits = np.minimum(relevant, k).astype(int)
    discount = discounts(k)
    ideal = np.cumsum(discount)[ideal_hits - 1]
    found = hit.sum(axis=1)
    precision_at = np.cumsum(hit, axis=1) / np.arange(1, k + 1)
    return {
        "ndcg": (hit * discount).sum(axis=1) / ideal,
        "recall": found / relevant,
        "map": (precision_at * hit).sum(axis=1) / ideal_hits,
        "precision": found / k,
        "hit_rate": (found > 0).astype(np.float64),
    }


def summarise(values: dict[str, np.ndarray], samples: int, seed: int) -> dict[str, float]:
    """Each metric's mean over users and its 95% percentile-bootstrap interval (``name``,
    ``name_ci_low``, ``name_ci_high``); every metric is resampled on the same users."""
    n = len(next(iter(values.values())))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(samples, n)) if n else np.zeros((samples, 0), int)
    out: dict[str, float] = {}
    for name, per in values.items():
        means = per[draws].mean(axis=1) if n else np.full(samples, np.nan)
        out[name] = float(per.mean()) if n else float("nan")
        out[f"{name}_ci_low"] = float(np.percentile(means, 2.5))
        out[f"{name}_ci_high"] = float(np.percentile(means, 97.5))
    return out


def coverage(ranked: np.ndarray, catalogue: int) -> float:
    """The share of the catalogue's items recommended to at least one user."""
    shown = np.unique(ranked[ranked >= 0])
    return len(shown) / catalogue if catalogue else 0.0


def popularity_bias(ranked: np.ndarray, popularity: np.ndarray) -> float:
    """The mean popularity percentile of the recommended items among the items used in
    training: 1.0 recommends only the most popular item, about 0.5 is blind to popularity."""
    used = np.sort(popularity[popularity > 0])
    shown = ranked[ranked >= 0]
    if not len(used) or not len(shown):
        return float("nan")
    return float(np.mean(np.searchsorted(used, popularity[shown], side="right") / len(used)))


def paired_test(
    metric: str,
    champion: np.ndarray,
    challenger: np.ndarray,
    alpha: float,
    versions: tuple[str, str],
    note: str = "",
) -> Comparison:
    """Is ``challenger`` better on ``metric``? Both arrays hold one value per user, the same
    users in the same order (the per-user values of :func:`per_user`)."""
    if len(champion) != len(challenger):
        raise ValueError("a paired test needs both models' values for the same users")
    difference = challenger - champion
    if len(difference) < 2 or not np.any(difference):
        statistic, p_value = 0.0, 1.0
    else:
        result: Any = stats.ttest_rel(challenger, champion, alternative="greater")
        statistic, p_value = float(result.statistic), float(result.pvalue)
        if not np.isfinite(p_value):
            statistic, p_value = 0.0, 1.0
    return Comparison(
        test=TEST,
        metric=metric,
        paired=True,
        champion_version=versions[0],
        challenger_version=versions[1],
        n_champion=len(champion),
        n_challenger=len(challenger),
        champion_value=float(champion.mean()) if len(champion) else float("nan"),
        challenger_value=float(challenger.mean()) if len(challenger) else float("nan"),
        statistic=statistic,
        p_value=p_value,
        alpha=alpha,
        min_samples=1,
        note=note,
    )
