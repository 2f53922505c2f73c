"""The *rollout*: a challenger model served beside the champion, in shadow or split mode.

Configured under ``serving.rollout`` (see configs/config.yaml):

- ``shadow``: the champion answers every request; the challenger scores the same records and
  its predictions are recorded (prediction log, per-variant metrics), never returned.
- ``split``: a share of requests (``split_share``) is answered by the challenger. The choice is a
  hash of a sticky key (a header such as ``X-User-Id``, or a feature), so one user keeps seeing
  one model and every worker process routes a key the same way.

A failing challenger never affects responses: its exceptions are caught, the champion answers
instead, and after ``max_failures`` consecutive failures a circuit breaker switches it off until
the service restarts (``model_challenger_active`` drops to 0). In shadow mode the challenger
scores on a thread of its own, off the request path, from a bounded queue (``shadow_queue``);
requests that find it full are not shadow-scored and are counted. Every prediction made during
a rollout goes to the :class:`PredictionLog` (written in batches by a background thread), where
fed-back labels join it by request id, ``compare`` reads both, and the live performance of each
variant is measured (``model_variant_live_performance``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..bundle import Bundle, load_bundle_dir
from ..config import CHALLENGER, CHAMPION, Config, RolloutSettings
from ..monitoring.database import DatabaseError, describe, located
from ..monitoring.performance import Outcome, SpooledDatabase, outcomes_of
from .predictor import Predictor, Scores

if TYPE_CHECKING:
    from ..monitoring.metrics import ServiceMetrics

log = logging.getLogger(__name__)

# Scores and the bundle of the model that made them.
Answered = tuple[Scores, Bundle]
# The rollout log's database when several pods share one (a PostgreSQL URL; it wins over
# serving.rollout.log_path, so the password need not be written in a config file).
ROLLOUT_LOG_ENV = "MLSERVICE_ROLLOUT_LOG"


class Shadow(NamedTuple):
    """A served request waiting for the challenger's shadow prediction."""

    request_id: str
    records: Sequence[Mapping[str, Any]]
    at: float


def share_of(key: str) -> float:
    """A stable position in [0, 1) for ``key``, the same in every process and Python run."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class CircuitBreaker:
    """Counts consecutive failures; opens (for good) after ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failures = 0
        self.open = False
        self._lock = threading.Lock()

    def succeeded(self) -> None:
        with self._lock:
            self.failures = 0

    def failed(self) -> bool:
        """Count one failure; True when this one opened the circuit."""
        with self._lock:
            self.failures += 1
            if not self.open and self.failures >= self.limit:
                self.open = True
                return True
            return False


def rollout_log_target(config: Config) -> str:
    """Where the rollout log lives: ``$MLSERVICE_ROLLOUT_LOG``, else ``serving.rollout.log_path``
    (a SQLite file relative to the service's root, or a PostgreSQL URL)."""
    return os.environ.get(ROLLOUT_LOG_ENV) or located(RolloutSettings.of(config).log_path, config)


class PredictionLog(SpooledDatabase):
    """Rollout predictions and the labels fed back for them, in one SQLite file or, shared by
    several pods, one PostgreSQL database (see :func:`rollout_log_target`).

    SQLite in WAL mode lets several worker processes append while ``compare`` reads. A record
    is ``(request_id, row)``: ``row`` is its position in a batch (0 for ``/predict``).
    Predictions are written by a :class:`Spool` thread in batches, off the request path;
    :meth:`flush` writes what is still pending in this process.
    """

    def __init__(self, target: str | Path) -> None:
        self.path = describe(target)
        super().__init__(
            target,
            """
            CREATE TABLE IF NOT EXISTS predictions (
                request_id TEXT NOT NULL, row INTEGER NOT NULL, variant TEXT NOT NULL,
                model_version TEXT NOT NULL, served INTEGER NOT NULL, prediction TEXT NOT NULL,
                at REAL NOT NULL, score REAL, probabilities TEXT);
            CREATE INDEX IF NOT EXISTS predictions_key ON predictions (request_id, row);
            CREATE INDEX IF NOT EXISTS predictions_variant ON predictions (variant, at);
            CREATE TABLE IF NOT EXISTS feedback (
                request_id TEXT NOT NULL, row INTEGER NOT NULL, label TEXT NOT NULL,
                at REAL NOT NULL, PRIMARY KEY (request_id, row));
            CREATE INDEX IF NOT EXISTS feedback_at ON feedback (at);
            """,
            "INSERT INTO predictions (request_id, row, variant, model_version, served, "
            "prediction, at, score, probabilities) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _log_rows,
        )
        columns = self._db.columns("predictions")
        if "score" not in columns:
            # A log written before scores were kept: its old rows have none.
            self._db.execute("ALTER TABLE predictions ADD COLUMN score REAL")
        if "probabilities" not in columns:
            # Nor every class's probability (a multiclass log_loss or roc_auc_ovr needs them).
            self._db.execute("ALTER TABLE predictions ADD COLUMN probabilities TEXT")

    def record(
        self,
        request_id: str,
        variant: str,
        version: str,
        served: bool,
        scored: Scores,
        at: float,
    ) -> None:
        """Queue the predictions a variant made for the request served at ``at`` (epoch s)."""
        self._spool.put((request_id, variant, version, served, scored, at))

    def record_feedback(self, request_id: str, label: Any, row: int = 0) -> None:
        """The observed outcome of one record; the first one stays, as in the feedback store
        (``POST /feedback`` answers 409 to a second)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO feedback VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (request_id, row, json.dumps(label), time.time()),
            )

    def labelled(self) -> Iterator[dict[str, Any]]:
        """Every logged prediction that has a label and a score, oldest first (rows logged
        before scores were kept have none)."""
        query = """
            SELECT p.request_id, p.row, p.variant, p.model_version, p.served, p.prediction,
                   p.score, p.probabilities, f.label
            FROM predictions p JOIN feedback f USING (request_id, row)
            WHERE p.score IS NOT NULL
            ORDER BY p.at, p.request_id, p.row"""
        with self._lock:
            rows = self._db.execute(query).fetchall()
        for request_id, row, variant, version, served, prediction, score, chances, label in rows:
            yield {
                "request_id": request_id,
                "row": row,
                "variant": variant,
                "model_version": version,
                "served": bool(served),
                "prediction": json.loads(prediction),
                "score": score,
                # Every class's probability (classifiers; None in rows logged before 0.2.0).
                "probabilities": None if chances is None else json.loads(chances),
                "label": json.loads(label),
            }

    def recent_outcomes(self, window: int) -> dict[str, list[Outcome]]:
        """Per variant, the last ``window`` labelled predictions of its latest model version."""
        # Newest labels first, through the feedback_at index; a variant's latest version is
        # the one of its newest prediction.
        query = """
            SELECT p.request_id, p.row, p.model_version, p.prediction, p.score, f.label
            FROM feedback f JOIN predictions p USING (request_id, row)
            WHERE p.variant = ? AND p.score IS NOT NULL AND p.model_version = (
                SELECT model_version FROM predictions WHERE variant = ?
                ORDER BY at DESC LIMIT 1)
            ORDER BY f.at DESC LIMIT ?"""
        result = {}
        with self._lock:
            for variant in (CHAMPION, CHALLENGER):
                rows = self._db.execute(query, (variant, variant, window)).fetchall()
                result[variant] = outcomes_of(rows)
        return result


def _log_rows(item: tuple[str, str, str, bool, Scores, float]) -> list[tuple]:
    request_id, variant, version, served, scored, at = item
    chances: Sequence[dict[str, float] | None] = scored.probabilities or [None] * len(scored)
    return [
        (
            request_id,
            row,
            variant,
            version,
            int(served),
            json.dumps(prediction),
            at,
            score,
            None if probabilities is None else json.dumps(probabilities),
        )
        for row, (prediction, score, probabilities) in enumerate(
            zip(scored.predictions, scored.scores, chances, strict=True)
        )
    ]


class Rollout:
    """Routes requests between the champion and (when one is active) the challenger.

    In shadow mode the challenger scores on its own thread: requests wait in a queue of
    ``shadow_queue`` requests, and one arriving when it is full is not scored by the
    challenger (``model_shadow_dropped_total``), so a slow challenger never slows responses.
    """

    def __init__(
        self,
        settings: RolloutSettings,
        champion_version: str,
        metrics: ServiceMetrics,
        challenger: Bundle | None = None,
        log_file: str | Path | None = None,
    ) -> None:
        self.settings = settings
        self.champion_version = champion_version
        self.metrics = metrics
        self.challenger = challenger
        self.predictor = Predictor(challenger) if challenger is not None else None
        self.breaker = CircuitBreaker(settings.max_failures)
        self.log = PredictionLog(log_file) if log_file is not None and self.active else None
        self._shadows: queue.Queue[Shadow] | None = None
        if self.active and settings.mode == "shadow":
            self._shadows = queue.Queue(maxsize=settings.shadow_queue)
            threading.Thread(
                target=self._score_shadows,
                args=(self._shadows,),
                name="shadow-challenger",
                daemon=True,
            ).start()
        metrics.challenger_active.set(1 if self.active else 0)

    @property
    def active(self) -> bool:
        return self.settings.mode != "off" and self.predictor is not None and not self.breaker.open

    @property
    def challenger_version(self) -> str:
        return self.challenger.model_version if self.challenger is not None else ""

    def routes_to_challenger(
        self, request_id: str, headers: Mapping[str, str], records: Sequence[Mapping[str, Any]]
    ) -> bool:
        """Split mode: whether this request falls in the challenger's share of traffic."""
        if self.settings.mode != "split" or not self.active:
            return False
        kind, _, name = self.settings.sticky_key.partition(":")
        if kind == "header":
            key = headers.get(name)
        elif kind == "feature":
            # A batch goes to one variant: its first record's value decides.
            key = records[0].get(name) if records else None
        else:
            key = request_id
        # A request without the key is not assigned by chance: the champion answers it.
        return key is not None and share_of(str(key)) < self.settings.split_share

    def serve(
        self,
        records: Sequence[Mapping[str, Any]],
        request_id: str,
        headers: Mapping[str, str],
        champion: Callable[[], Answered],
    ) -> Answered:
        """Scores for ``records`` and the bundle that made them.

        ``champion()`` is how the service scores without a rollout (it may use a fallback).
        """
        if not self.active:
            return champion()
        at = time.time()
        if self.routes_to_challenger(request_id, headers, records):
            answer = self._challenger_answer(records)
            if answer is not None:
                scored, challenger = answer
                self._record(request_id, CHALLENGER, challenger.model_version, True, scored, at)
                return answer
        start = time.perf_counter()
        scored, answered_by = champion()
        self.metrics.observe_variant_duration(CHAMPION, time.perf_counter() - start)
        self._record(request_id, CHAMPION, answered_by.model_version, True, scored, at)
        if self._shadows is not None:
            try:
                self._shadows.put_nowait(Shadow(request_id, records, at))
            except queue.Full:
                self.metrics.shadow_dropped.inc()
        return scored, answered_by

    def record_feedback(self, request_id: str, index: int, outcome: Any) -> None:
        """Keep an observed outcome beside the logged predictions, for ``compare``."""
        if self.log is None:
            return
        try:
            self.log.record_feedback(request_id, outcome, index)
        except DatabaseError:
            log.exception("Could not write feedback to the rollout log at %s", self.log.path)

    def flush(self) -> None:
        """Wait until the challenger scored every queued shadow request, then write the log."""
        if self._shadows is not None:
            self._shadows.join()
        if self.log is not None:
            self.log.flush()

    def _score_shadows(self, shadows: queue.Queue[Shadow]) -> None:
        while True:
            shadow = shadows.get()
            try:
                # The breaker may have opened while this request waited.
                if self.active:
                    answer = self._challenger_answer(shadow.records)
                    if answer is not None:
                        scored, challenger = answer
                        self._record(
                            shadow.request_id,
                            CHALLENGER,
                            challenger.model_version,
                            False,
                            scored,
                            shadow.at,
                        )
            except Exception:
                log.exception("Recording a shadow prediction failed")
            finally:
                shadows.task_done()

    def _challenger_answer(self, records: Sequence[Mapping[str, Any]]) -> Answered | None:
        """The challenger's scores and bundle; None when it has none or fails (the breaker
        counts the failure)."""
        predictor = self.predictor
        if predictor is None:
            return None
        start = time.perf_counter()
        try:
            scored = predictor.predict(records)
        except Exception as exc:
            self.metrics.challenger_failures.inc()
            if self.breaker.failed():
                self.metrics.challenger_active.set(0)
                log.error(
                    "Challenger v%s failed %d times in a row (last: %s: %s); it is switched "
                    "off until the service restarts.",
                    self.challenger_version,
                    self.breaker.failures,
                    type(exc).__name__,
                    exc,
                )
            else:
                log.warning("Challenger v%s failed: %s", self.challenger_version, exc)
            return None
        self.metrics.observe_variant_duration(CHALLENGER, time.perf_counter() - start)
        self.breaker.succeeded()
        return scored, predictor.bundle

    def _record(
        self,
        request_id: str,
        variant: str,
        version: str,
        served: bool,
        scored: Scores,
        at: float,
    ) -> None:
        self.metrics.observe_variant(variant, version, served, scored.scores)
        if self.log is not None:
            self.log.record(request_id, variant, version, served, scored, at)


def load_challenger(config: Config, champion: Bundle) -> Bundle | None:
    """The challenger named by ``serving.rollout.challenger``, or None (and why, in the log).

    A challenger that cannot load, or that is the champion itself, leaves the champion alone.
    """
    settings = RolloutSettings.of(config)
    if settings.mode == "off":
        return None
    reference = settings.challenger
    folder = config.resolve(reference)
    try:
        if folder.is_dir():
            bundle = load_bundle_dir(folder, source="file")
        else:
            # Imported here: the registry pulls in MLflow, which a bundle folder does not need.
            from ..registry import load_registered

            bundle = load_registered(config, reference)
    except Exception as exc:
        log.error(
            "No challenger for the %s rollout: %r could not be loaded (%s: %s). The champion "
            "serves alone.",
            settings.mode,
            reference,
            type(exc).__name__,
            str(exc).splitlines()[0][:300] if str(exc) else "",
        )
        return None
    if _identity(bundle) == _identity(champion):
        log.warning(
            "The challenger %r is the champion (v%s): nothing to roll out.",
            reference,
            bundle.model_version,
        )
        return None
    return bundle


def _identity(bundle: Bundle) -> str:
    return str(bundle.metadata.get("run_id") or bundle.model_version)


def build_rollout(
    config: Config, champion: Bundle, metrics: ServiceMetrics, challenger: Bundle | None = None
) -> Rollout:
    """The rollout the config asks for (inactive when mode is off or no challenger loads)."""
    settings = RolloutSettings.of(config)
    if challenger is None:
        challenger = load_challenger(config, champion)
    return Rollout(
        settings,
        champion.model_version,
        metrics,
        challenger=challenger,
        log_file=rollout_log_target(config),
    )
