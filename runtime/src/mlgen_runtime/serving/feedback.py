"""Ground-truth *feedback*: ``POST /feedback`` joins an observed outcome to its prediction.

A client that later learns the true label (or value) of a prediction sends it with the
prediction's ``request_id`` (the ``X-Request-ID`` header or the ``request_id`` of the response;
``index`` picks a record of a batch). The pair feeds the live performance gauges
(``model_live_performance``) that the alert ``ModelLivePerformanceDegraded`` compares with
the model's test-split quality (``model_test_performance``). During a rollout the outcomes
fed back to the rollout log also measure each variant (``model_variant_live_performance``).

Whoever may send feedback steers those gauges and alerts: with ``serving.auth_enabled`` the
route needs the API key; without it, anyone who can reach the API can feed wrong outcomes for
the predictions they asked for (the ids are the server's, so not for anyone else's).

With several workers (``serve --workers N``) every worker uses the one store named by
``MLSERVICE_FEEDBACK_DB`` (set by ``serve``): feedback joins whichever worker made the
prediction, and the gauges, computed at scrape time from the shared outcomes, agree. Several
pods share one store the same way when ``MLSERVICE_FEEDBACK_DB`` (or ``serving.feedback_db``)
is a PostgreSQL URL, and one rollout log when ``MLSERVICE_ROLLOUT_LOG`` is (the same database
can hold both).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from ..bundle import Bundle
from ..config import Config
from ..errors import FeedbackError
from ..monitoring.database import DatabaseError, is_url, located
from ..monitoring.metrics import ServiceMetrics
from ..monitoring.performance import (
    FEEDBACK_DB_ENV,
    MEMORY,
    FeedbackStore,
    LivePerformance,
)
from ..targets import NO, YES, TargetRule
from .errors import ApiError
from .predictor import Scores
from .rollout import PredictionLog, RolloutSettings, rollout_log_target

log = logging.getLogger(__name__)


class FeedbackRequest(BaseModel):
    """The observed outcome of one prediction: ``label`` for classifiers, ``value`` else."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1, max_length=128, description="The request_id of the prediction's answer."
    )
    index: int = Field(0, ge=0, description="Position of the record in a batch (0 otherwise).")
    label: str | int | bool | None = Field(None, description="The true class (classifiers).")
    value: FiniteFloat | None = Field(None, description="The true value (regression).")


class FeedbackReceipt(BaseModel):
    request_id: str
    index: int
    model_version: str
    prediction: Any
    correct: bool | None = Field(description="Whether the predicted class was right.")
    error: float | None = Field(description="Observed minus predicted value (regression).")


class FeedbackLoop:
    """Remembers served predictions and turns feedback into live performance metrics."""

    def __init__(self, bundle: Bundle, config: Config, metrics: ServiceMetrics) -> None:
        serving = config.serving
        self.metrics = metrics
        self.regression = bundle.task == "regression"
        self.classes = bundle.classes
        # A yes/no target derived from a number ("> 0"): the observed number may be sent as
        # `value`, and the rule turns it into the class as training did.
        rule = bundle.metadata.get("positive_when")
        self.rule = TargetRule.parse(rule) if rule else None
        self.window = serving.feedback_window
        # `investigate --since` reads a store kept in a file or a database (serving.feedback_db).
        configured = serving.feedback_db and located(serving.feedback_db, config)
        self.store = FeedbackStore(
            os.environ.get(FEEDBACK_DB_ENV) or configured or MEMORY,
            capacity=serving.feedback_log_size,
            window=self.window,
        )
        self.performance = LivePerformance(
            bundle.task,
            bundle.classes,
            min_rows=serving.feedback_min_rows,
        )
        self.tested = _tested(bundle.metadata.get("metrics") or {}, self.performance.names)
        rollout = RolloutSettings.of(config)
        # Read when the rollout has written it (never created here: `compare` tells a missing
        # log file from an empty one).
        self.rollout_log_path = (
            rollout_log_target(config) if rollout.mode != "off" else None
        )
        self._rollout_log: PredictionLog | None = None

    def remember(
        self,
        request_id: str,
        model_version: str,
        scored: Scores,
        inputs: Mapping[str, list[Any]] | None = None,
    ) -> None:
        self.store.record(request_id, model_version, scored, inputs)

    def receive(self, feedback: FeedbackRequest) -> FeedbackReceipt:
        """Join ``feedback`` to its prediction; 422 for a wrong outcome, 404/409 for the id."""
        try:
            truth = self._truth(feedback)
            joined = self.store.claim(feedback.request_id, feedback.index, truth)
        except ApiError:
            self.metrics.feedback.labels("invalid").inc()
            raise
        except FeedbackError as exc:
            self.metrics.feedback.labels(exc.kind).inc()
            raise ApiError(404 if exc.kind == "unknown" else 409, exc.kind, str(exc)) from exc
        except DatabaseError as exc:
            # A shared store that is down or unreachable: the client may send it again later.
            log.error("The feedback store %s failed: %s", self.store.shown, exc)
            raise ApiError(
                503,
                "feedback_unavailable",
                "The feedback store cannot be reached; nothing was recorded. Send the outcome "
                "again later.",
            ) from exc
        self.metrics.feedback.labels("joined").inc()
        return FeedbackReceipt(
            request_id=feedback.request_id,
            index=feedback.index,
            model_version=joined.model_version,
            prediction=joined.prediction,
            correct=None if self.regression else str(truth) == str(joined.prediction),
            error=float(truth - joined.prediction) if self.regression else None,
        )

    def refresh_gauges(self) -> None:
        """Score the shared outcomes into the gauges (at scrape time, by the scraped worker);
        a store that cannot be read leaves them as they were (the scrape still answers)."""
        try:
            self._refresh_gauges()
        except DatabaseError as exc:
            log.error("Live performance not refreshed: the feedback store failed: %s", exc)

    def _refresh_gauges(self) -> None:
        outcomes = self.store.outcomes()
        self.metrics.set_performance(
            self.performance.metrics(outcomes), len(outcomes), self.tested
        )
        rollout_log = self._open_rollout_log()
        if rollout_log is None:
            return
        for variant, outcomes in rollout_log.recent_outcomes(self.window).items():
            self.metrics.set_variant_performance(variant, self.performance.metrics(outcomes))

    def _open_rollout_log(self) -> PredictionLog | None:
        path = self.rollout_log_path
        if (
            self._rollout_log is None
            and path is not None
            and (is_url(path) or Path(path).is_file())
        ):
            self._rollout_log = PredictionLog(path)
        return self._rollout_log

    def outcome(self, feedback: FeedbackRequest) -> Any:
        """The outcome as sent (the class, or the number), or as the rule of a derived yes/no
        target reads it: what the rollout log keeps beside its predictions."""
        if self.rule is not None:
            return self._truth(feedback)
        return feedback.value if feedback.label is None else feedback.label

    def _truth(self, feedback: FeedbackRequest) -> Any:
        if self.regression:
            if feedback.value is None or feedback.label is not None:
                raise _invalid("send the observed number as `value` (this model predicts values)")
            return feedback.value
        if self.rule is not None and feedback.label is None and feedback.value is not None:
            return self.rule.label(feedback.value)
        if self.rule is not None and isinstance(feedback.label, bool):
            return YES if feedback.label else NO
        if feedback.label is None or feedback.value is not None:
            raise _invalid(
                "send the observed class as `label` (this model predicts classes)"
                + (
                    f", or the observed number as `value` (the class is yes where it is "
                    f"{self.rule})"
                    if self.rule is not None
                    else ""
                )
            )
        # The class as the model knows it, whether the client sent 1 or "1".
        known = {str(c): c for c in self.classes or []}
        if str(feedback.label) not in known:
            raise _invalid(
                f"label {feedback.label!r} is not a class of this model "
                f"({', '.join(known)})"
            )
        return known[str(feedback.label)]


def _invalid(problem: str) -> ApiError:
    return ApiError(422, "invalid_feedback", f"The feedback cannot be used: {problem}.")


def _tested(metrics: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, float]:
    """The test-split values of the live metrics, as logged at training time."""
    return {
        name: float(metrics[name])
        for name in names
        if isinstance(metrics.get(name), int | float)
    }
