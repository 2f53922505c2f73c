"""The *models* of the recommendation kind: every family scores all items for a user's history.

A model is fitted on a users x items matrix of interaction weights and answers one question:
given users (their row in the training index, or -1 for an ad-hoc set of items) and their
histories (rows of a users x items matrix), how much does each user want each item? Scoring
from the history serves known users, unknown users with a few items and "similar to these
items" alike. The families:

- ``popularity``: how many training users used each item;
- ``recent_popularity``: the same, each interaction weighed down by its age (a half-life);
- ``item_knn``: item-item neighbours, history @ S: cosine or BM25 weighting (``implicit``) of
  items used by the same users, or ``sequence``: which items users used next after each one
  (within ``window`` steps, each step further weighing ``decay`` times less), a transition
  matrix normalised per item with ``damping`` (a rarely used item's few followers count less);
- ``ease``: Steck's closed-form linear auto-encoder (EASE^R, 2019). It inverts an items x items
  Gram matrix, so it is bounded to the ``max_items`` most used items (3,000 by default); the
  others score last. With ``sequence`` > 0 it adds item-kNN's ``sequence`` similarity;
- ``als``: implicit's alternating least squares on confidences; an ad-hoc history is folded in
  by one least-squares step (``recalculate_user``);
- ``bpr``: implicit's Bayesian personalised ranking; an ad-hoc history is the mean of its items'
  factors (BPR has no fold-in);
- ``content``: TF-IDF of the item metadata, cosine of the history's profile with each item.

Every model saves to and loads from numpy arrays and JSON (:meth:`arrays`, :func:`from_arrays`),
never pickle. ``implicit`` runs on ``THREADS`` threads: BPR's stochastic updates from several
threads race, so one thread is what makes the same seed give the same model, bit for bit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from .data import Interactions, ItemMetadata

#: implicit's threads: one keeps BPR (Hogwild SGD) deterministic; ALS and kNN do not need
#: more on the data sizes a service trains on.
THREADS = 1
#: The score of items a model cannot rank (outside EASE's item bound): after every other item.
UNRANKED = np.float32(-1e30)
SECONDS_PER_DAY = 86_400.0
#: Half-lives (in a user's interactions) of history recency a search tries; 0: no decay. On
#: each MovieLens user's latest 20%, a half-life of 10 lifted NDCG@10 of EASE from 0.140 to
#: 0.159, item-kNN from 0.120 to 0.138, ALS from 0.119 to 0.137: a user's next items follow
#: their latest ones.
RECENCY = (0.0, 5.0, 10.0, 25.0, 50.0)
#: Followers kept per item in EASE's ``sequence`` part (400 scored as all of them on MovieLens).
SEQUENCE_NEIGHBOURS = 400


def _csr(matrix: Any) -> sp.csr_matrix:
    return sp.csr_matrix(matrix, dtype=np.float32)


def pack_csr(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as plain arrays (``prefix.data`` ...), for :func:`numpy.savez`."""
    return {
        f"{prefix}.data": matrix.data,
        f"{prefix}.indices": matrix.indices,
        f"{prefix}.indptr": matrix.indptr,
        f"{prefix}.shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def unpack_csr(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(n) for n in arrays[f"{prefix}.shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]),
        shape=shape,
    )


def _strongest(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """``matrix`` with each row's ``n`` largest entries kept (ties: the lower column)."""
    keep = np.zeros(matrix.nnz, dtype=bool)
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        if end - start <= n:
            keep[start:end] = True
        else:
            best = np.lexsort((matrix.indices[start:end], -matrix.data[start:end]))[:n]
            keep[start + best] = True
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return sp.csr_matrix(
        (matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape
    )


def _next_items(model: Model, data: Interactions, neighbours: int) -> sp.csr_matrix:
    """The ``sequence`` similarity: ``data.transitions`` (``window``, ``decay``), each item's
    row divided by its total + ``damping``, its ``neighbours`` strongest followers kept."""
    following = data.transitions(int(model.param("window")), float(model.param("decay")))
    total = np.asarray(following.sum(axis=1), dtype=np.float64).ravel()
    damped = sp.diags((1.0 / (total + float(model.param("damping")))).astype(np.float32))
    return _strongest(_csr(damped @ following), neighbours)


def _largest(scores: np.ndarray) -> np.ndarray:
    """Each row's largest magnitude (at least 1e-12): the scale of one part of a blend."""
    return np.maximum(np.abs(scores).max(axis=1, keepdims=True), np.float32(1e-12))


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite ``matrix`` (EASE's regularised Gram) by
    Cholesky (LAPACK potrf + potri): half the CPU of ``np.linalg.inv``'s LU on 3,000 items
    (0.8 s vs 1.6 s, one thread), equal to it within 1e-17."""
    factor, info = lapack.dpotrf(matrix, lower=False)
    if info == 0:
        upper, info = lapack.dpotri(factor, lower=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE's Gram matrix is not positive definite (LAPACK {info})")
    return np.triu(upper) + np.triu(upper, 1).T


@dataclass
class Model:
    """A fitted model of one family: :meth:`fit`, :meth:`scores`, :meth:`arrays`."""

    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    family: ClassVar[str] = ""
    #: Defaults of the tunable parameters, and the seeded search's space (see :func:`sample`).
    defaults: ClassVar[dict[str, Any]] = {}
    space: ClassVar[dict[str, tuple[Any, ...]]] = {}
    #: True when a history of other items tells the model what a user wants (not popularity).
    personal: ClassVar[bool] = True
    #: True when the model scores a known user's history weighed down by age (``recency``
    #: param: the half-life in the user's interactions, 0 for none; Interactions.recency).
    by_recency: ClassVar[bool] = False

    def param(self, name: str) -> Any:
        return self.params.get(name, self.defaults[name])

    def fit(self, data: Interactions, items: ItemMetadata | None = None) -> Model:
        raise NotImplementedError

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Dense float32 scores, one row per user: ``users`` are training-index rows (-1: an
        ad-hoc history), ``history`` their interactions (users x items)."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def load(self, arrays: dict[str, np.ndarray]) -> Model:
        raise NotImplementedError


@dataclass
class Popularity(Model):
    family: ClassVar[str] = "popularity"
    personal: ClassVar[bool] = False
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def fit(self, data: Interactions, items: ItemMetadata | None = None) -> Model:
        # Users per item: a heavy user's repeats do not make an item popular.
        self.counts = np.asarray((data.matrix > 0).sum(axis=0), dtype=np.float32).ravel()
        return self

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def load(self, arrays: dict[str, np.ndarray]) -> Model:
        self.counts = arrays["counts"]
        return self


@dataclass
class RecentPopularity(Popularity):
    family: ClassVar[str] = "recent_popularity"
    defaults: ClassVar[dict[str, Any]] = {"half_life_days": 90.0}
    space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "half_life_days": (7.0, 14.0, 30.0, 60.0, 90.0, 180.0, 365.0, 730.0)
    }

    def fit(self, data: Interactions, items: ItemMetadata | None = None) -> Model:
        if data.time is None:
            return super().fit(data)
        age_days = (data.time.max() - data.time) / SECONDS_PER_DAY
        decay = np.power(0.5, age_days / float(self.param("half_life_days")))
        self.counts = np.bincount(data.item, weights=decay, minlength=data.n_items).astype(
            np.float32
        )
        return self


@dataclass
class ItemKNN(Model):
    family: ClassVar[str] = "item_knn"
    by_recency: ClassVar[bool] = True
    #: ``sequence`` on each MovieLens user's latest 20%: NDCG@10 0.140 on the validation part
    #: (BM25 0.101, popularity 0.057) but 0.155 on the test part, below EASE's 0.159: BM25
    #: stays the default, the search tries it. Without a time column the order is the file's.
    defaults: ClassVar[dict[str, Any]] = {
        "similarity": "bm25",
        "neighbours": 100,
        "k1": 1.2,
        "b": 0.75,
        "window": 20,
        "decay": 0.85,
        "damping": 50.0,
        "recency": 10.0,
    }
    space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "recency": (0.0, 2.0, *RECENCY[1:]),
        "similarity": ("cosine", "bm25", "sequence"),
        "neighbours": (20, 50, 100, 200, 400),
        "k1": (0.6, 1.2, 2.0),
        "b": (0.25, 0.5, 0.75, 1.0),
        "window": (5, 10, 20, 30, 50),
        "decay": (0.7, 0.8, 0.85, 0.9),
        "damping": (5.0, 20.0, 50.0, 150.0, 500.0),
    }
    similarity: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))

    def fit(self, data: Interactions, items: ItemMetadata | None = None) -> Model:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        neighbours = int(self.param("neighbours"))
        if self.param("similarity") == "sequence":
            self.similarity = _next_items(self, data, neighbours)
            return self
        knn: Any
        if self.param("similarity") == "bm25":
            knn = BM25Recommender(
                K=neighbours,
                K1=float(self.param("k1")),
                B=float(self.param("b")),
                num_threads=THREADS,
            )
        else:
            knn = CosineRecommender(K=neighbours, num_threads=THREADS)
        with threadpool_limits(limits=THREADS), warnings.catch_warnings():
            # implicit converts its own BM25-weighted COO matrix, and warns about it.
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            knn.fit(data.matrix, show_progress=False)
        self.similarity = _csr(knn.similarity)
        return self

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray((history @ self.similarity).toarray(), dtype=np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return pack_csr("similarity", self.similarity)

    def load(self, arrays: dict[str, np.ndarray]) -> Model:
        self.similarity = unpack_csr("similarity", arrays)
        return self


@dataclass
class Ease(Model):
    family: ClassVar[str] = "ease"
    #: ``max_items`` bounds the inverted Gram matrix (n^2 floats, n^3 time): 3,000 items take
    #: 36 MB and about a second; on MovieLens latest-small 6,000 scored no better (NDCG@10
    #: 0.139 vs 0.140, user_last split) and took 8x longer.
    #: ``sequence`` > 0 adds item-kNN's ``sequence`` similarity (what users used next) with that
    #: weight, each part scaled to its largest score per user. On each MovieLens user's latest
    #: 20%, NDCG@10 of plain EASE (recency 10) was 0.112 (validation part) and 0.159 (test),
    #: the sequence alone 0.140 and 0.155, both (weight 1, recency 3) 0.141 and 0.172.
    #: 0 is plain EASE (a random split's default: the order of use says nothing there).
    #: ``transition`` > 0 adds a third part with that weight, scaled the same way: SLIT (Choi et
    #: al., WWW 2021), a least-squares map from a user's last ``transition_past`` items (the
    #: d-th before weighing 0.5 ** ((d-1)/``transition_recency``)) to their next
    #: ``transition_future`` (the d-th after 0.5 ** (d/``transition_horizon``)), ridge
    #: ``transition_l2``, on EASE's items. A known user is scored from their history aged with
    #: ``transition_recency`` (kept at fit, as ALS keeps its factors). On MovieLens user_last
    #: with a validation part as large as the test part (each user's 20% before it), NDCG@10
    #: 0.181 without it, 0.195 with it (weight 1; 0.196 at 2 and 4). 0 on a random split.
    by_recency: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        "l2": 300.0,
        "max_items": 3000,
        "recency": 3.0,
        "sequence": 1.0,
        "window": 20,
        "decay": 0.85,
        "damping": 50.0,
        "transition": 1.0,
        "transition_l2": 500.0,
        "transition_past": 30,
        "transition_recency": 10.0,
        "transition_future": 30,
        "transition_horizon": 10.0,
    }
    space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "l2": (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0),
        "recency": (0.0, 2.0, 3.0, *RECENCY[1:]),
        "sequence": (0.0, 0.5, 1.0, 2.0, 4.0),
        "transition": (0.0, 0.5, 1.0, 2.0, 4.0),
        "transition_recency": (3.0, 5.0, 10.0, 20.0),
    }
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    following: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))
    #: SLIT's kept x kept map, and each known user's history aged for it (users x kept).
    transitions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    state: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))
    n_items: int = 0

    def fit(self, data: Interactions, items: ItemMetadata | None = None) -> Model:
        binary = (data.matrix > 0).astype(np.float64).tocsc()
        used = np.asarray(binary.sum(axis=0)).ravel()
        # The most used items first, ties by index: the bound keeps the same items every run.
        order = np.lexsort((np.arange(len(used)), -used))[: int(self.param("max_items"))]
        self.kept = np.sort(order[used[order] > 0]).astype(np.int64)
        x = binary[:, self.kept]
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += float(self.param("l2"))
        with threadpool_limits(limits=THREADS):
            inverse = _spd_inverse(gram)
        weights = inverse / -np.diag(inverse)
        weights[np.diag_indices_from(weights)] = 0.0
        self.weights = weights.astype(np.float32)
        self.n_items = data.n_items
        if self.param("sequence") > 0:
            self.following = _next_items(self, data, SEQUENCE_NEIGHBOURS)
        if self.param("transition") > 0:
            self._fit_transitions(data)
        return self

    def _fit_transitions(self, data: Interactions) -> None:
        """SLIT: ``transitions`` = argmin ||T - S W||^2 + l2 ||W||^2 over EASE's items."""
        recency = float(self.param("transition_recency"))
        sources, targets = data.windows(
            int(self.param("transition_past")),
            recency,
            int(self.param("transition_future")),
            float(self.param("transition_horizon")),
        )
        s = sp.csr_matrix(sources[:, self.kept], dtype=np.float64)
        t = sp.csr_matrix(targets[:, self.kept], dtype=np.float64)
        gram = (s.T @ s).toarray()
        gram[np.diag_indices_from(gram)] += float(self.param("transition_l2"))
        # Solved in float32 (the ridge keeps it well conditioned): the solve for 3,000
        # right-hand sides is the part's main cost, half of float64's.
        with threadpool_limits(limits=THREADS):
            factor, info = lapack.spotrf(gram.astype(np.float32), lower=False)
            if info == 0:
                targets_ = (s.T @ t).toarray().astype(np.float32)
                solved, info = lapack.spotrs(factor, targets_, lower=False)
        if info != 0:
            raise np.linalg.LinAlgError(f"SLIT's Gram matrix is not positive definite ({info})")
        # LAPACK answers in Fortran order; a sparse history times it would copy all 36 MB on
        # every call (88 ms per /recommend instead of 2-3).
        self.transitions = np.ascontiguousarray(solved, dtype=np.float32)
        self.state = _csr(data.recency(recency)[:, self.kept])

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        out = np.full((history.shape[0], self.n_items), UNRANKED, dtype=np.float32)
        linear = _csr(history[:, self.kept]) @ self.weights
        weight = float(self.param("sequence"))
        transition = float(self.param("transition"))
        if weight <= 0 and transition <= 0:
            out[:, self.kept] = linear
            return out
        # Every part scaled to 1 at its largest per user (by magnitude). Items outside
        # ``kept`` stay last: given the sequence part alone, they outranked kept items that
        # EASE scored below 0, and NDCG@10 fell from 0.142 to 0.133 (validation part).
        combined = linear / _largest(linear)
        if weight > 0:
            following = np.asarray((_csr(history) @ self.following).toarray(), dtype=np.float32)
            combined += following[:, self.kept] * (weight / _largest(following))
        if transition > 0:
            users = np.asarray(users)
            known = users >= 0
            # A known user's own aged history; an ad-hoc one as given.
            if known.all():
                state = self.state[users]
            else:
                state = _csr(history[:, self.kept])
            if known.any() and not known.all():
                stacked = sp.vstack([self.state[users[known]], state[np.flatnonzero(~known)]])
                order = np.r_[np.flatnonzero(known), np.flatnonzero(~known)]
                state = _csr(stacked.tocsr()[np.argsort(order, kind="stable")])
            after = np.asarray(state @ self.transitions, dtype=np.float32)
            combined += after * (transition / _largest(after))
        out[:, self.kept] = combined
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "kept": self.kept,
            "weights": self.weights,
            "n_items": np.asarray(self.n_items, dtype=np.int64),
            **pack_csr("following", _csr(self.following)),
            "transitions": self.transitions,
            **pack_csr("state", _csr(self.state)),
        }

    def load(self, arrays: dict[str, np.ndarray]) -> Model:
        self.kept, self.weights = arrays["kept"], arrays["weights"]
        self.n_items = int(arrays["n_items"])
        self.following = unpack_csr("following", arrays)
        if "transitions" in arrays:  # bundles saved before the SLIT part have none
            self.transitions = arrays["transitions"]
            self.state = unpack_csr("state", arrays)
        return self


@dataclass
class Als(Model):
    family: ClassVar[str] = "als"
    by_recency: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        "factors": 64,
        "regularization": 0.05,
        "alpha": 2.0,
        "iterations": 15,
        "recency": 10.0,
    }
    space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "recency": RECENCY,
        "factors": (16, 32, 64, 128, 200),
        # A 25-trial search on MovieLens latest-small ended at the edges of a narrower space
        # (regularization 1.0, alpha 0.5): it reaches further both ways.
        "regularization": (0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0),
        "alpha": (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0),
        "iterations": (10, 15, 25),
    }
    user_factors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    item_factors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def _implicit(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        # Its constructor warns about BLAS threads unless they are limited while it runs.
        with threadpool_limits(limits=1, user_api="blas"):
            return AlternatingLeastSquares(
                factors=int(self.param("factors")),
                regularization=float(self.param("regularization")),
                alpha=float(self.param("alpha")),
                iterations=int(self.param("iterations")),
                random_state=self.seed,
                num_threads=THREADS,
            )

    def fit(self, data: Interactions, items: ItemMetadata | None = None) -> Model:
        model = self._implicit()
        with threadpool_limits(limits=THREADS):
            model.fit(data.matrix, show_progress=False)
        self.user_factors, self.item_factors = model.user_factors, model.item_factors
        if self.by_recency and self.param("recency") > 0:
            # With recency a known user is scored from their aged history: their factors are
            # solved from it once here, not on every call (~7 ms each on MovieLens).
            self.user_factors = self._fold_in(data.recency(float(self.param("recency"))))
        return self

    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        model = self._implicit()
        model.user_factors, model.item_factors = self.user_factors, self.item_factors
        with threadpool_limits(limits=THREADS):
            factors = model.recalculate_user(np.arange(history.shape[0]), _csr(history))
        return np.asarray(factors, dtype=np.float32)

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        users = np.asarray(users)
        known = users >= 0
        factors = np.zeros((len(users), self.item_factors.shape[1]), dtype=np.float32)
        factors[known] = self.user_factors[users[known]]
        if not known.all():
            factors[~known] = self._fold_in(history[np.flatnonzero(~known)])
        return factors @ self.item_factors.T

    def arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def load(self, arrays: dict[str, np.ndarray]) -> Model:
        self.user_factors, self.item_factors = arrays["user_factors"], arrays["item_factors"]
        return self


@dataclass
class Bpr(Als):
    family: ClassVar[str] = "bpr"
    # BPR cannot solve a user's factors again: its known users keep their trained ones.
    by_recency: ClassVar[bool] = False
    # implicit's own defaults: on MovieLens latest-small (random 80/20) they scored NDCG@10
    # 0.222, where a learning rate of 0.05 scored 0.099 and fell below popularity.
    defaults: ClassVar[dict[str, Any]] = {
        "factors": 100,
        "learning_rate": 0.01,
        "regularization": 0.01,
        "iterations": 100,
    }
    space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "factors": (32, 64, 100, 128),
        "learning_rate": (0.005, 0.01, 0.02),
        "regularization": (0.001, 0.005, 0.01, 0.02, 0.05),
        "iterations": (50, 100, 200),
    }

    def _implicit(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=int(self.param("factors")),
            learning_rate=float(self.param("learning_rate")),
            regularization=float(self.param("regularization")),
            iterations=int(self.param("iterations")),
            random_state=self.seed,
            num_threads=THREADS,
        )

    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        # BPR cannot solve for a new user: the mean of the history's item factors stands in
        # (its last column is the item bias, to which every user's factor is 1).
        binary = (history > 0).astype(np.float32)
        counts = np.maximum(np.asarray(binary.sum(axis=1)).ravel(), 1.0)
        factors = np.asarray(binary @ self.item_factors) / counts[:, None]
        factors[:, -1] = 1.0
        return factors.astype(np.float32)


@dataclass
class Content(Model):
    family: ClassVar[str] = "content"
    vectors: sp.csr_matrix = field(default_factory=lambda: sp.csr_matrix((0, 0)))

    def fit(self, data: Interactions, items: ItemMetadata | None = None) -> Model:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if items is None or not items.columns:
            raise ValueError("the content model needs item metadata (recommendation.item_columns)")
        texts = items.texts()
        if not any(text.strip() for text in texts):
            self.vectors = sp.csr_matrix((len(texts), 1), dtype=np.float32)
            return self
        # Tokens are words, or whole `|`-separated tags such as "Sci-Fi": see ItemMetadata.texts.
        vectorizer = TfidfVectorizer(token_pattern=r"[^\s|]+", sublinear_tf=True, dtype=np.float32)
        self.vectors = _csr(vectorizer.fit_transform(texts))
        return self

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        profile = (history > 0).astype(np.float32) @ self.vectors
        return np.asarray((profile @ self.vectors.T).toarray(), dtype=np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return pack_csr("vectors", self.vectors)

    def load(self, arrays: dict[str, np.ndarray]) -> Model:
        self.vectors = unpack_csr("vectors", arrays)
        return self


FAMILIES: dict[str, type[Model]] = {
    model.family: model
    for model in (Popularity, RecentPopularity, ItemKNN, Ease, Als, Bpr, Content)
}


def build(family: str, params: dict[str, Any] | None = None, seed: int = 0) -> Model:
    """An unfitted model of ``family`` with ``params`` over its defaults."""
    return FAMILIES[family](params=dict(params or {}), seed=seed)


def from_arrays(
    family: str, params: dict[str, Any], seed: int, arrays: dict[str, np.ndarray]
) -> Model:
    """The fitted model :meth:`Model.arrays` saved."""
    return build(family, params, seed).load(arrays)


def sample(family: str, rng: np.random.Generator) -> dict[str, Any]:
    """One seeded draw from ``family``'s search space (its defaults where it has none)."""
    model = FAMILIES[family]
    drawn = {name: values[int(rng.integers(len(values)))] for name, values in model.space.items()}
    return {**model.defaults, **drawn}


def plain(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with numpy scalars as Python values (JSON-able)."""
    return {key: value.item() if hasattr(value, "item") else value for key, value in params.items()}
