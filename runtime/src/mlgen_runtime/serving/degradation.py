"""*Degradation*: whether the fallback model answers instead of the champion, and why.

Two ways in: the champion could not be loaded at start-up (degraded until a restart loads
it), or it raised at prediction time (degraded until it answers again; it is tried on every
request because a fix, such as a repaired file system, needs no restart to be noticed).
While degraded, ``/ready`` answers 200 with ``status: degraded``: Kubernetes keeps the pod in
rotation, because a fallback answer beats none, and the alert ``ModelServingFallback`` on the
gauge ``model_fallback_active`` tells a person.
"""

from __future__ import annotations

import threading

from ..monitoring.metrics import ServiceMetrics

LOAD_FAILED = "champion_load_failed"
PREDICT_FAILED = "champion_prediction_failed"


class Degradation:
    """The service's degraded state, mirrored in ``model_fallback_active``."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self.reason = ""
        self._load_failed = False
        self._lock = threading.Lock()
        metrics.fallback_active.set(0)

    @property
    def active(self) -> bool:
        return bool(self.reason)

    def champion_unavailable(self, why: str) -> None:
        """The champion could not be loaded: the fallback serves every request."""
        with self._lock:
            self._load_failed = True
            self.reason = f"The champion could not be loaded; the fallback model answers ({why})."
            self.metrics.fallback_active.set(1)

    def fallback_answered(self, records: int, why: str = "") -> None:
        """The fallback scored ``records`` records (after the champion raised ``why``)."""
        with self._lock:
            if not self._load_failed:
                self.reason = (
                    "The champion failed on the latest request; the fallback model answered "
                    f"({why})."
                )
            self.metrics.fallback_active.set(1)
        self.metrics.fallback_predictions.labels(
            LOAD_FAILED if self._load_failed else PREDICT_FAILED
        ).inc(records)

    def champion_answered(self) -> None:
        """The champion scored a request: a prediction-time degradation is over."""
        if not self.reason:
            return
        with self._lock:
            if not self._load_failed:
                self.reason = ""
                self.metrics.fallback_active.set(0)
