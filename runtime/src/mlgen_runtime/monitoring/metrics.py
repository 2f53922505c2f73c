"""The service's Prometheus metrics: one :class:`ServiceMetrics` per app, exposed at ``/metrics``.

The names and labels are a contract with ``deploy/`` (alert rules, Grafana dashboard); see
``docs/internals.md`` in mlgen. Each app registers its metrics in its own
``CollectorRegistry`` so that tests can build many apps in one process.

With several worker processes (gunicorn), set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder
before the service starts: every worker then writes its values to files there and a scrape of
any worker reports the sum over all of them.
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Probabilities live in [0, 1]. Regression outputs have no known scale: decades, with every
# value <= 0 in the first bucket, because prometheus_client drops the histogram's _sum (the
# mean prediction on dashboards) as soon as one bucket bound is negative.
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
VALUE_BUCKETS = (0.0, *(10.0**power for power in range(-2, 7)))
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def observe_many(histogram: Histogram, values: list[float]) -> None:
    """``histogram.observe(value)`` for every value, as one increment per bucket.

    Uses the child's ``_upper_bounds``/``_buckets``/``_sum``, the same fields ``observe``
    updates (prometheus-client 0.21-0.26), so single and multiprocess values stay exact.
    """
    if len(values) <= 1:
        for value in values:
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose upper bound is >= the value.
    slots = np.searchsorted(histogram._upper_bounds, values, side="left")
    counts = np.bincount(slots, minlength=len(histogram._upper_bounds))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)
    # Rounding aside, the same _sum as one observe() per value.
    histogram._sum.inc(sum(values))


def multiprocess_dir() -> str | None:
    """The multiprocess folder when several workers share metrics, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


class CommonMetrics:
    """The metrics every kind's serving app exports: HTTP traffic, rejected requests, the
    model served, and its quality from feedback (live) and at training (test).

    Each kind adds its own (:class:`ServiceMetrics` for tabular models); the names are one
    contract with ``deploy/`` whatever the kind.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple, Any] = {}
        registry = self.registry
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the end of the response, by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.validation_errors = Counter(
            "model_validation_errors_total",
            "Requests rejected because their body did not match the model's input schema.",
            ["route"],
            registry=registry,
        )
        # Gauges describe the live state of each worker: with several workers a scrape reports
        # the highest (flags) or the most recent (drift) value among the live ones.
        self.model_info = Gauge(
            "model_info",
            "The model being served (value is always 1).",
            ["name", "version", "source", "serving_path"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.feedback = Counter(
            "model_feedback_total",
            "Ground-truth feedback received, by result (joined, unknown, duplicate, invalid).",
            ["result"],
            registry=registry,
        )
        self.live_performance = Gauge(
            "model_live_performance",
            "Model quality over the recent predictions whose outcome was fed back.",
            ["metric"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.live_performance_rows = Gauge(
            "model_live_performance_rows",
            "Predictions with feedback in the live performance window.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.test_performance = Gauge(
            "model_test_performance",
            "The served model's quality on its test split at training time, per metric.",
            ["metric"],
            multiprocess_mode="livemax",
            registry=registry,
        )

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: on the request path a lookup costs ~0.1 us,
        ``labels()`` (lock, validation) ~2 us. Label sets are few (routes, versions, classes)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._child(self.http_requests, route, method, str(status)).inc()
        self._child(self.http_duration, route, method).observe(seconds)

    def set_model(self, name: str, version: str, source: str, serving_path: str) -> None:
        self.model_info.labels(name, version, source, serving_path).set(1)

    def set_performance(
        self, live: Mapping[str, float], rows: int, tested: Mapping[str, float]
    ) -> None:
        """Copy live and test-split quality into their gauges (metrics absent stay absent)."""
        self.live_performance_rows.set(rows)
        for metric, value in live.items():
            self.live_performance.labels(metric).set(value)
        for metric, value in tested.items():
            self.test_performance.labels(metric).set(value)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (of all workers in multiprocess mode)."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(merged, path=directory)
        return generate_latest(merged)


class ServiceMetrics(CommonMetrics):
    """The metrics of one tabular model's serving app.

    ``regression`` chooses the buckets of ``model_prediction_score`` (predicted values instead
    of probabilities).
    """

    def __init__(self, regression: bool = False) -> None:
        super().__init__()
        registry = self.registry
        self.predictions = Counter(
            "model_predictions_total",
            "Predictions served, by model version and predicted class ('value' for regression).",
            ["model_version", "outcome"],
            registry=registry,
        )
        self.prediction_score = Histogram(
            "model_prediction_score",
            "Positive-class probability (binary), winning-class probability (multiclass) "
            "or predicted value (regression).",
            ["model_version"],
            buckets=VALUE_BUCKETS if regression else PROBABILITY_BUCKETS,
            registry=registry,
        )
        self.out_of_range = Counter(
            "model_out_of_range_total",
            "Numeric feature values outside the training minimum/maximum (accepted, flagged).",
            ["feature"],
            registry=registry,
        )
        self.feature_drift = Gauge(
            "model_feature_drift",
            "Distance between recent requests and the training data, per feature.",
            ["feature", "measure"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.feature_drift_alert = Gauge(
            "model_feature_drift_alert",
            "1 when a feature's drift score exceeds its threshold.",
            ["feature"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.drift_window_rows = Gauge(
            "model_drift_window_rows",
            "Requests rows currently in the online drift window.",
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.fallback_active = Gauge(
            "model_fallback_active",
            "1 when the fallback model answers because the champion failed to load or to predict.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.fallback_predictions = Counter(
            "model_fallback_predictions_total",
            "Records answered by the fallback model, by why the champion did not answer.",
            ["reason"],
            registry=registry,
        )

        # Champion/challenger rollout (serving/rollout.py): `served` is "false" for shadow
        # predictions, which are recorded but never returned.
        self.variant_predictions = Counter(
            "model_variant_predictions_total",
            "Predictions per rollout variant (champion/challenger) and model version.",
            ["variant", "model_version", "served"],
            registry=registry,
        )
        self.variant_score = Histogram(
            "model_variant_prediction_score",
            "model_prediction_score per rollout variant, shadow predictions included.",
            ["variant"],
            buckets=VALUE_BUCKETS if regression else PROBABILITY_BUCKETS,
            registry=registry,
        )
        self.variant_duration = Histogram(
            "model_variant_prediction_duration_seconds",
            "Time one rollout variant takes to score a request's rows.",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.shadow_dropped = Counter(
            "model_shadow_dropped_total",
            "Shadow requests not scored by the challenger because its queue was full.",
            registry=registry,
        )
        self.variant_live_performance = Gauge(
            "model_variant_live_performance",
            "model_live_performance per rollout variant, from the rollout log's outcomes.",
            ["variant", "metric"],
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.challenger_failures = Counter(
            "model_challenger_failures_total",
            "Challenger predictions that raised (the champion answered instead).",
            registry=registry,
        )
        self.challenger_active = Gauge(
            "model_challenger_active",
            "1 while a challenger is loaded and its circuit breaker is closed.",
            multiprocess_mode="livemin",
            registry=registry,
        )

    def observe_predictions(
        self, model_version: str, outcomes: list[str], scores: list[float]
    ) -> None:
        if len(outcomes) == 1:
            self._child(self.predictions, model_version, outcomes[0]).inc()
            self._child(self.prediction_score, model_version).observe(scores[0])
            return
        # One increment per distinct outcome and per bucket: a 1,000-record batch costs the
        # same few microseconds as one record instead of 2 ms.
        for outcome, count in collections.Counter(outcomes).items():
            self._child(self.predictions, model_version, outcome).inc(count)
        observe_many(self._child(self.prediction_score, model_version), scores)

    def observe_variant(self, variant: str, version: str, served: bool, scores: list) -> None:
        """Count a rollout variant's predictions and observe their scores."""
        self.variant_predictions.labels(variant, version, str(served).lower()).inc(len(scores))
        observe_many(self.variant_score.labels(variant), scores)

    def observe_variant_duration(self, variant: str, seconds: float) -> None:
        self._child(self.variant_duration, variant).observe(seconds)

    def observe_out_of_range(self, features: list[str]) -> None:
        for feature in features:
            self.out_of_range.labels(feature).inc()

    def set_drift(self, scores: Mapping[str, Mapping[str, Any]], window_rows: int) -> None:
        """Copy the online drift monitor's latest scores into the drift gauges."""
        self.drift_window_rows.set(window_rows)
        for feature, score in scores.items():
            # A feature with no values in the window has no score: NaN, not a fake zero.
            value = math.nan if score["score"] is None else float(score["score"])
            self.feature_drift.labels(feature, str(score["measure"])).set(value)
            self.feature_drift_alert.labels(feature).set(1 if score["alert"] else 0)

    def set_variant_performance(self, variant: str, live: Mapping[str, float]) -> None:
        """Copy one rollout variant's live quality into its gauges (absent metrics stay absent)."""
        for metric, value in live.items():
            self.variant_live_performance.labels(variant, metric).set(value)

