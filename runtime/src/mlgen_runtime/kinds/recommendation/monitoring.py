"""*Monitoring* of a recommendation service: what it is asked and what it serves, against
training, and whether what it serves gets used.

Signals, over the last ``drift.window`` requests of each worker (scored at scrape time):

* **item-popularity drift** of the items *requested* (the items of ``/recommend/similar``
  and the items fed back to ``/feedback``) against the training interactions, and of the items
  *served* against the model's own answers for a seeded sample of training users (computed at
  load). Items are placed in :data:`POPULARITY_BINS` bins of equal training interaction mass,
  head first, plus one bin for items the model never saw; the bins' shares are compared by
  the Jensen-Shannon distance and flagged as a categorical feature's are
  (:func:`~mlgen_runtime.monitoring.drift.bucket_drift`: above ``drift.categorical_threshold``
  and beyond sampling noise). Per-item shares would be noise at a window's size: 1,000
  requests over a 9,000-item catalogue leave most items at zero either way.
* **new-user rate**: the share of ``/recommend`` requests for users unknown to the model
  (answered by cold start);
* **new-item rate**: the share of requested items unknown to the model;
* **catalogue coverage**: the share of the catalogue among the items served in the window,
  next to the coverage the model's answers for as many sampled training users reach (the
  expected value at this many requests);
* **live hit-rate@k** from ``POST /feedback``: the share of fed-back items (clicked, used) that
  were among the items served to that request, over the last ``serving.feedback_window``
  outcomes; next to the test split's ``hit_rate`` when training recorded it.

The request path only appends to a buffer (:class:`SignalFeed`); the buffer is folded into the
windows every :data:`FOLD_EVERY` requests or at a scrape, so the hot path stays a list append.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from ...config import Config
from ...monitoring.drift import FeatureDrift, bucket_drift
from ...monitoring.metrics import CommonMetrics
from ...monitoring.performance import Outcome

log = logging.getLogger(__name__)

POPULARITY_BINS = 10
# Training users whose recommendations are the served-items reference (seeded sample).
REFERENCE_USERS = 1000
# Requests buffered on the hot path before they are folded into the windows.
FOLD_EVERY = 256
REQUESTED = "requested"
SERVED = "served"
LIVE_METRICS = ("hit_rate",)
# Test-split metrics shown next to the live ones, when training recorded them.
TEST_METRICS = ("hit_rate", "recall", "ndcg", "precision", "map", "coverage")
DRIFT_SIGNALS = [
    "item-popularity distribution of requested items (/recommend/similar inputs, /feedback "
    "items) vs the training interactions, Jensen-Shannon over popularity bins",
    "item-popularity distribution of served items vs the model's answers for training users",
    "new-user rate (cold starts among /recommend requests)",
    "new-item rate (requested items the model does not know)",
    "catalogue coverage of what is served, vs the coverage expected at as many requests",
    "live hit-rate@k from POST /feedback",
]


class RecommendationMetrics(CommonMetrics):
    """The shared serving metrics plus the recommendation kind's (see docs/internals.md)."""

    def __init__(self) -> None:
        super().__init__()
        registry = self.registry
        self.recommendations = Counter(
            "model_recommendations_total",
            "Recommendation requests answered, by model version and strategy (personalised, "
            "similar_items, content, popularity).",
            ["model_version", "strategy"],
            registry=registry,
        )
        self.item_drift = Gauge(
            "model_item_popularity_drift",
            "Jensen-Shannon distance between the popularity bins of recent items and the "
            "reference (requested: training interactions; served: the model's answers for "
            "training users).",
            ["items"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.item_drift_alert = Gauge(
            "model_item_popularity_drift_alert",
            "1 when the item-popularity drift is above drift.categorical_threshold and beyond "
            "sampling noise.",
            ["items"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.new_user_rate = Gauge(
            "model_new_user_rate",
            "Share of recent /recommend requests for users the model does not know.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.new_item_rate = Gauge(
            "model_new_item_rate",
            "Share of recently requested items the model does not know.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.coverage = Gauge(
            "model_catalogue_coverage",
            "Share of the catalogue among the items served to recent requests.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.expected_coverage = Gauge(
            "model_catalogue_coverage_expected",
            "The coverage the model's answers for as many sampled training users reach.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.window_requests = Gauge(
            "model_recommendation_window_requests",
            "Requests in the recommendation monitoring window.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )

    def observe_recommendation(self, model_version: str, strategy: str) -> None:
        self._child(self.recommendations, model_version, strategy).inc()


class PopularityBins:
    """Catalogue index -> popularity bin: :data:`POPULARITY_BINS` bins of equal training
    interaction mass, most used items first; bin ``bins`` holds items the model never saw."""

    def __init__(self, popularity: np.ndarray, bins: int = POPULARITY_BINS) -> None:
        counts = np.asarray(popularity, dtype=float)
        order = np.argsort(-counts, kind="stable")
        mass = counts[order]
        total = mass.sum()
        share_before = (np.cumsum(mass) - mass) / total if total > 0 else np.zeros(len(mass))
        of = np.empty(len(counts) + 1, dtype=np.intp)
        of[order] = np.minimum((share_before * bins).astype(np.intp), bins - 1)
        # The last index stands for an unknown item.
        of[-1] = bins
        self.of = of
        self.bins = bins
        self.unknown = len(counts)
        self.training_counts = np.bincount(of[:-1], weights=counts, minlength=bins + 1)

    @property
    def names(self) -> list[str]:
        step = 100 // self.bins
        return [f"{step * b}-{step * (b + 1)}% of training use" for b in range(self.bins)]

    def counts(self, indexes: np.ndarray) -> np.ndarray:
        """Items per bin (the unknown bin last) of catalogue ``indexes``."""
        return np.bincount(self.of[indexes], minlength=self.bins + 1).astype(float)


class ItemIndex:
    """Original item ids -> catalogue codes; an item without training interactions is
    ``unknown``, as for cold start.

    The ids the model serves are found by one dict lookup; an id a client sends in another
    form (``"318"`` for item 318) goes through the recommender's own lookup.
    """

    def __init__(self, recommender: Any) -> None:
        self._lookup = recommender.item_code
        self._codes = {item: code for code, item in enumerate(recommender.items.tolist())}
        used = np.asarray(recommender.popularity) > 0
        self.unknown = len(used)
        # The catalogue coverage counts: the items with training interactions.
        self.catalogue = int(used.sum())
        self._kept = np.append(used, False)

    def __call__(self, items: Sequence[Any]) -> np.ndarray:
        get, lookup = self._codes.get, self._lookup
        codes = []
        for item in items:
            code = get(item)
            if code is None:
                code = lookup(item)
            codes.append(-1 if code is None else code)
        return self.known(np.asarray(codes, dtype=np.intp))

    def known(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` with -1 (no item) and items never used in training made ``unknown``."""
        codes = np.where(codes >= 0, codes, self.unknown)
        return np.where(self._kept[codes], codes, self.unknown)


@dataclass(frozen=True)
class ServedReference:
    """The model's answers for sampled training users: the served-items reference."""

    bin_counts: np.ndarray
    # coverage[n]: the catalogue share among the first n sampled answers.
    coverage: np.ndarray

    @classmethod
    def of(
        cls, recommender: Any, index: ItemIndex, bins: PopularityBins, k: int, seed: int
    ) -> ServedReference:
        active = np.flatnonzero(np.diff(recommender.history.indptr) > 0)
        rng = np.random.default_rng(seed)
        chosen = rng.choice(active, size=min(REFERENCE_USERS, len(active)), replace=False)
        # The batch path of recommend(user, k) for known users: the same ranking.
        codes, _ = recommender.top_codes(chosen, k)
        seen = np.zeros(index.unknown + 1, dtype=bool)
        coverage = [0.0]
        counts = np.zeros(bins.bins + 1)
        for row in codes:
            served = index.known(row[row >= 0])
            counts += bins.counts(served)
            seen[served] = True
            coverage.append(float(seen[:-1].sum()) / max(index.catalogue, 1))
        return cls(counts, np.asarray(coverage))

    def expected_coverage(self, requests: int) -> float:
        return float(self.coverage[min(requests, len(self.coverage) - 1)])


Signal = tuple[bool | None, Sequence[Any], Sequence[Any] | None]


class SignalFeed:
    """What requests tell the monitor, buffered on the hot path and folded in chunks."""

    def __init__(self, monitor: RecommendationMonitor) -> None:
        self.monitor = monitor
        self._pending: list[Signal] = []
        self._lock = threading.Lock()

    def add(
        self, new_user: bool | None, requested: Sequence[Any], served: Sequence[Any] | None
    ) -> None:
        """One request: its user new or not (None: no user), the items it names, the items
        served to it (None: nothing was recommended, as for feedback)."""
        self._pending.append((new_user, requested, served))
        if len(self._pending) >= FOLD_EVERY:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            if pending:
                self.monitor.fold(pending)


class RecommendationMonitor:
    """Windows of recent requests and the scores of the signals in the module docstring."""

    def __init__(self, recommender: Any, config: Config, metrics: RecommendationMetrics) -> None:
        self.metrics = metrics
        self.drift = config.drift
        self.window = config.drift.window
        self.bins = PopularityBins(recommender.popularity)
        self.index = ItemIndex(recommender)
        k = config.recommendation.k if config.recommendation is not None else 10
        self.reference = ServedReference.of(recommender, self.index, self.bins, k, config.seed)
        self.feed = SignalFeed(self)
        # Windows: a bin per requested item, a flag per /recommend user, the served indexes
        # of each request with their running counts (coverage and served bins).
        self.requested: deque[int] = deque(maxlen=self.window)
        self.new_users: deque[bool] = deque(maxlen=self.window)
        self.served: deque[np.ndarray] = deque(maxlen=self.window)
        self.served_counts = np.zeros(self.bins.unknown + 1, dtype=np.int64)
        self._lock = threading.Lock()

    def fold(self, pending: list[Signal]) -> None:
        """Add a chunk of requests to the windows: one lookup pass and a few numpy calls for
        the whole chunk, not per request."""
        new_users = [new for new, _, _ in pending if new is not None]
        requested = [item for _, asked, _ in pending for item in asked]
        answers = [served for _, _, served in pending if served is not None]
        served = self.index([item for answer in answers for item in answer])
        added = np.split(served, np.cumsum([len(answer) for answer in answers])[:-1])
        kept = added[-self.window :] if answers else []
        with self._lock:
            self.new_users.extend(new_users)
            if requested:
                self.requested.extend(self.index(requested).tolist())
            overflow = len(self.served) + len(kept) - self.window
            if overflow > 0:
                gone = [self.served.popleft() for _ in range(overflow)]
                np.subtract.at(self.served_counts, np.concatenate(gone), 1)
            if kept:
                self.served.extend(kept)
                np.add.at(self.served_counts, np.concatenate(kept), 1)

    def scores(self) -> dict[str, Any]:
        """Every signal of the window (None where too few requests to say)."""
        self.feed.flush()
        with self._lock:
            requested = np.asarray(self.requested, dtype=np.intp)
            new_users = list(self.new_users)
            served_counts = self.served_counts.copy()
            requests = len(self.served)
        bins, unknown = self.bins, self.bins.unknown
        enough = self.drift.min_rows
        drift: dict[str, FeatureDrift | None] = {REQUESTED: None, SERVED: None}
        if len(requested) >= enough:
            drift[REQUESTED] = self._drift(REQUESTED, bins.training_counts, bins.counts(requested))
        if requests >= enough:
            current = np.bincount(bins.of, weights=served_counts, minlength=bins.bins + 1)
            drift[SERVED] = self._drift(SERVED, self.reference.bin_counts, current)
        return {
            "drift": drift,
            "new_user_rate": float(np.mean(new_users)) if len(new_users) >= enough else None,
            "new_item_rate": float(np.mean(requested == unknown))
            if len(requested) >= enough
            else None,
            "coverage": float(np.count_nonzero(served_counts[:unknown]))
            / max(self.index.catalogue, 1)
            if requests
            else None,
            "expected_coverage": self.reference.expected_coverage(requests) if requests else None,
            "requests": requests,
        }

    def _drift(self, items: str, reference: np.ndarray, current: np.ndarray) -> FeatureDrift:
        return bucket_drift(
            f"{items}_item_popularity",
            self.bins.names,
            reference,
            current,
            threshold=self.drift.categorical_threshold,
        )

    def refresh_gauges(self) -> None:
        """Score the window into the gauges (at scrape time); a failure keeps the last values."""
        try:
            scores = self.scores()
        except Exception:
            log.exception("Recommendation monitoring failed; its gauges keep their last values")
            return
        metrics = self.metrics
        metrics.window_requests.set(scores["requests"])
        for items, drift in scores["drift"].items():
            score = None if drift is None else drift.score
            metrics.item_drift.labels(items).set(math.nan if score is None else score)
            metrics.item_drift_alert.labels(items).set(1 if drift and drift.drifted else 0)
        for gauge, name in (
            (metrics.new_user_rate, "new_user_rate"),
            (metrics.new_item_rate, "new_item_rate"),
            (metrics.coverage, "coverage"),
            (metrics.expected_coverage, "expected_coverage"),
        ):
            gauge.set(math.nan if scores[name] is None else scores[name])


def hit_rate(outcomes: list[Outcome], min_rows: int) -> dict[str, float]:
    """Live hit-rate@k: the share of fed-back items that were among those served to their
    request; empty below ``min_rows`` outcomes."""
    if len(outcomes) < max(min_rows, 1):
        return {}
    hits = [str(o.truth) in {str(item) for item in o.prediction} for o in outcomes]
    return {"hit_rate": float(np.mean(hits))}


def test_metrics(metadata: dict[str, Any]) -> dict[str, float]:
    """The test-split values of :data:`TEST_METRICS` training recorded (``metrics``), as
    numbers; a metric with a bootstrap interval may be stored as ``{"value": ...}``."""
    found = {}
    for name, value in (metadata.get("metrics") or {}).items():
        base = name.split("@", 1)[0]
        if isinstance(value, dict):
            value = value.get("value", value.get("mean"))
        if base in TEST_METRICS and isinstance(value, int | float) and math.isfinite(value):
            found[base] = float(value)
    return found
