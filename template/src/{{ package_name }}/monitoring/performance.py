"""Live *performance*: the served model's quality measured on ground truth sent back later.

Every prediction is remembered by request id in a :class:`PredictionLog`; when the observed
outcome arrives (``POST /feedback``) it is joined to its prediction as an :class:`Outcome`, and
the most recent outcomes form the window of :class:`LivePerformance`: accuracy and ROC AUC
(binary), accuracy (multiclass), or MAE and RMSE (regression). Memory is bounded twice: the log
forgets the oldest requests once it holds more than ``capacity`` records, the window keeps
the last ``window`` outcomes.

Both live in the serving process. With several workers, feedback must reach the worker that
made the prediction; otherwise it is answered 404 like an expired request id.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

# Metric names exported in model_live_performance{metric=...}, per task; evaluate.py computes
# the same metrics on the test split, which model_test_performance exports for comparison.
LIVE_METRICS = {
    "binary_classification": ("accuracy", "roc_auc"),
    "multiclass_classification": ("accuracy",),
    "regression": ("mae", "rmse"),
}


@dataclass(frozen=True)
class LoggedPrediction:
    """What is kept of one served prediction until its outcome is known."""

    model_version: str
    prediction: Any
    # Positive-class probability (binary), winning-class probability, or the predicted value.
    score: float


@dataclass(frozen=True)
class Outcome:
    """A prediction joined with the outcome observed for it."""

    request_id: str
    index: int
    model_version: str
    prediction: Any
    score: float
    truth: Any


class FeedbackError(Exception):
    """Feedback that cannot be joined; ``kind`` is ``unknown`` or ``duplicate``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class PredictionLog:
    """Recent requests' predictions by request id, at most ``capacity`` records in all.

    A batch is one request; the newest request is kept even when it alone exceeds ``capacity``.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the prediction log needs a capacity of at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, list[LoggedPrediction | None]] = OrderedDict()
        self._records = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, request_id: str, predictions: list[LoggedPrediction]) -> None:
        with self._lock:
            replaced = self._entries.pop(request_id, None)
            self._records -= len(replaced) if replaced is not None else 0
            self._entries[request_id] = list(predictions)
            self._records += len(predictions)
            while self._records > self.capacity and len(self._entries) > 1:
                _, forgotten = self._entries.popitem(last=False)
                self._records -= len(forgotten)

    def claim(self, request_id: str, index: int) -> LoggedPrediction:
        """The prediction at ``index`` of ``request_id``, which then takes no more feedback."""
        with self._lock:
            entry = self._entries.get(request_id)
            if entry is None or not 0 <= index < len(entry):
                where = f"record {index} of request" if entry is not None else "request"
                raise FeedbackError(
                    "unknown",
                    f"No prediction for {where} {request_id!r}: the id is wrong, or the "
                    f"prediction is older than the last {self.capacity} records this process "
                    "remembers (serving.feedback_log_size).",
                )
            logged = entry[index]
            if logged is None:
                raise FeedbackError(
                    "duplicate",
                    f"Feedback for record {index} of request {request_id!r} was already "
                    "received; each prediction takes one outcome.",
                )
            entry[index] = None
            if all(item is None for item in entry):
                del self._entries[request_id]
                self._records -= len(entry)
            return logged


class LivePerformance:
    """Rolling quality metrics over the last ``window`` outcomes of one task."""

    def __init__(
        self, task: str, classes: list[Any] | None, window: int, min_rows: int
    ) -> None:
        if task not in LIVE_METRICS:
            raise ValueError(f"unknown task {task!r}: expected one of {', '.join(LIVE_METRICS)}")
        self.task = task
        self.classes = classes
        self.min_rows = min_rows
        self._outcomes: deque[Outcome] = deque(maxlen=window)
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        return LIVE_METRICS[self.task]

    @property
    def rows(self) -> int:
        return len(self._outcomes)

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def metrics(self) -> dict[str, float]:
        """The live metrics; empty below ``min_rows`` outcomes (too few to mean anything)."""
        outcomes = self.outcomes()
        if len(outcomes) < max(self.min_rows, 1):
            return {}
        if self.task == "regression":
            errors = np.array([o.truth - o.prediction for o in outcomes], dtype=float)
            return {
                "mae": float(np.mean(np.abs(errors))),
                "rmse": float(math.sqrt(np.mean(errors**2))),
            }
        # Labels compare as strings: JSON feedback may send 1 for a class the model calls "1".
        hits = np.array([str(o.truth) == str(o.prediction) for o in outcomes])
        result = {"accuracy": float(hits.mean())}
        if self.task == "binary_classification":
            positive = str(self.classes[1]) if self.classes else None
            truths = np.array([str(o.truth) == positive for o in outcomes])
            auc = roc_auc(truths, np.array([o.score for o in outcomes], dtype=float))
            if auc is not None:
                result["roc_auc"] = auc
        return result


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC by ranks (ties averaged); None while the window holds only one class."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=float)
    sorted_scores = scores[order]
    # Average ranks over runs of equal scores, so ties count one half.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
