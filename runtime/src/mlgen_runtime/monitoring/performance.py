"""Live *performance*: the served model's quality measured on ground truth sent back later.

Every served prediction is kept by request id in a :class:`FeedbackStore`; when the observed
outcome arrives (``POST /feedback``) it is joined to its prediction as an :class:`Outcome`, and
the most recent outcomes are scored by :class:`LivePerformance`: accuracy and ROC AUC
(binary), accuracy (multiclass), or MAE and RMSE (regression). Memory is bounded twice: the
store forgets the oldest predictions beyond ``capacity`` records, and keeps the last ``window``
outcomes.

One store serves every worker process: ``serve --workers N`` points them all at one SQLite file
(WAL mode), so feedback joins whichever worker made the prediction, and every worker scores the
same outcomes. Several pods share one the same way when ``$MLSERVICE_FEEDBACK_DB`` names a
PostgreSQL database (see monitoring/database.py). A single process keeps its store in memory.
Predictions reach the database off the request path: the request thread only appends to a
:class:`Spool`, whose thread inserts them in batches.
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from pydantic_core import to_json

from ..errors import FeedbackError
from .database import MEMORY, Database, DatabaseError, describe, is_url

log = logging.getLogger(__name__)

# Metric names exported in model_live_performance{metric=...}, per task; scoring.py computes
# the same metrics on the test split, which model_test_performance exports for comparison.
LIVE_METRICS = {
    "binary_classification": ("accuracy", "roc_auc"),
    "multiclass_classification": ("accuracy",),
    "regression": ("mae", "rmse"),
}
# The SQLite file (set by ``serve --workers N``, see serving/__init__.py) or the PostgreSQL
# database (several pods) in which every worker keeps its predictions for POST /feedback;
# unset, each process keeps its own in memory.
FEEDBACK_DB_ENV = "MLSERVICE_FEEDBACK_DB"
# How long a spool's thread lets rows gather before one insert (a worker's predictions are
# visible to the other workers this much later; JOIN_GRACE_SECONDS covers it). Each insert is a
# transaction with fixed costs: at 5 ms, the thread held 12% of a single-client server's samples
# (py-spy), at 50 ms 3.6%, and the server answered 11% more requests.
SPOOL_DELAY_SECONDS = 0.05
# A spool holding this many items is written by the thread that adds the next one. The
# background thread alone fell behind without bound under load: sqlite3 releases the GIL
# around every row, and each time waited a switch interval (5 ms) for the busy event loop
# to give it back, so a loaded server's spool grew by ~65 MB a minute (benchmarks/serving.py).
SPOOL_MAX_PENDING = 256
# Feedback for an id no worker has written yet waits this long for the other workers' spools
# before it is answered 404: a client may send it right after the prediction's response.
JOIN_GRACE_SECONDS = 0.25
JOIN_POLL_SECONDS = 0.01


@dataclass(frozen=True)
class Outcome:
    """A prediction joined with the outcome observed for it."""

    request_id: str
    index: int
    model_version: str
    prediction: Any
    # Positive-class probability (binary), winning-class probability, or the predicted value.
    score: float
    truth: Any


class Spool:
    """Items appended on the request path, inserted into the database by a background thread.

    :meth:`put` costs a deque append. The thread wakes on the first item of a batch, waits
    ``delay`` for more, and inserts the rows of all of them (``rows_of(item)``) in one
    transaction (holding the table ``lock`` when one is named); ``after_write(db)`` runs in the
    same transaction. :meth:`flush` does the same
    in the caller's thread: items leave the deque only under the lock, so once it returns every
    item put before it is in the database. When ``max_pending`` items wait, :meth:`put`
    flushes them itself: the backlog (memory, and how late other workers see a prediction)
    stays bounded however busy the process is.
    """

    def __init__(
        self,
        db: Database,
        lock: threading.Lock,
        statement: str,
        rows_of: Callable[[Any], Iterable[tuple]],
        after_write: Callable[[Database], None] | None = None,
        delay: float = SPOOL_DELAY_SECONDS,
        max_pending: int = SPOOL_MAX_PENDING,
        table_lock: str | None = None,
    ) -> None:
        self._db = db
        self._lock = lock
        self._table_lock = table_lock
        self._statement = statement
        self._rows_of = rows_of
        self._after_write = after_write
        self._delay = delay
        self._max_pending = max_pending
        self._items: deque[Any] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sqlite-spool", daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        self._items.append(item)
        if len(self._items) >= self._max_pending:
            self.flush()
        elif not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        with self._lock:
            rows: list[tuple] = []
            while self._items:
                rows.extend(self._rows_of(self._items.popleft()))
            if not rows:
                return
            try:
                self._db.begin(self._table_lock)
                self._db.executemany(self._statement, rows)
                if self._after_write is not None:
                    self._after_write(self._db)
                self._db.execute("COMMIT")
            except DatabaseError:
                self._db.rollback()
                # Losing log rows must not stop serving; the log says how many.
                log.exception("Could not write %d row(s) with %r", len(rows), self._statement)

    def close(self) -> None:
        """Write what is pending and stop the thread."""
        self._closed = True
        self._wake.set()
        self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            time.sleep(self._delay)
            # Cleared before flushing: an item put meanwhile wakes the next round.
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("The spool thread failed to write a batch; it carries on")


class SpooledDatabase:
    """A database (SQLite file, memory, or PostgreSQL URL) that request threads write through a
    :class:`Spool`: its connection, the lock every use of the connection holds, the spool, and
    their shutdown.

    ``schema`` is run once at open; ``statement``, ``rows_of``, ``after_write`` and
    ``table_lock`` are the spool's (see :class:`Spool`).
    """

    def __init__(
        self,
        target: str | Path,
        schema: str,
        statement: str,
        rows_of: Callable[[Any], Iterable[tuple]],
        after_write: Callable[[Database], None] | None = None,
        table_lock: str | None = None,
    ) -> None:
        if not is_url(target) and str(target) != MEMORY:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = Database(target)
        self._db.script(schema)
        self._spool = Spool(
            self._db, self._lock, statement, rows_of, after_write, table_lock=table_lock
        )

    def flush(self) -> None:
        """Write the rows still waiting in this process's spool."""
        self._spool.flush()

    def close(self) -> None:
        self._spool.close()
        with self._lock:
            self._db.close()


def outcomes_of(rows: Iterable[tuple]) -> list[Outcome]:
    """Outcomes from ``(request_id, row, model_version, prediction JSON, score, truth JSON)``
    rows selected newest first, in the order they happened (oldest first)."""
    return [
        Outcome(rid, row, version, json.loads(prediction), score, json.loads(truth))
        for rid, row, version, prediction, score, truth in reversed(list(rows))
    ]


class FeedbackStore(SpooledDatabase):
    """Served predictions by ``(request id, row)`` and the outcomes joined to them.

    ``path`` is a SQLite file shared by the worker processes, a PostgreSQL URL shared by pods,
    or ``:memory:`` for one process.
    A request is one row (its predictions and scores as JSON arrays): a 1,000-record batch is
    one insert, not 1,000 (each of which gave the GIL away). ``last`` numbers the records in
    the order they were served, so the store forgets exactly the records beyond ``capacity``.
    A stored request is never replaced: the service's ids are its own and unique (see
    serving/observer.py), and an id written again is ignored.
    """

    def __init__(self, path: str | Path, capacity: int, window: int) -> None:
        if capacity < 1 or window < 1:
            raise ValueError(
                f"the feedback store needs a capacity and a window of at least 1, got "
                f"{capacity} and {window} (serving.feedback_log_size, serving.feedback_window)"
            )
        self.path = str(path)
        self.shown = describe(path)
        self.capacity = capacity
        self.window = window
        self.shared = self.path != MEMORY
        super().__init__(
            self.path,
            """
            CREATE TABLE IF NOT EXISTS served (
                last INTEGER PRIMARY KEY, request_id TEXT NOT NULL UNIQUE,
                model_version TEXT NOT NULL, predictions TEXT NOT NULL, scores TEXT NOT NULL,
                at REAL, inputs TEXT);
            CREATE TABLE IF NOT EXISTS claims (
                served INTEGER NOT NULL, row INTEGER NOT NULL, truth TEXT,
                PRIMARY KEY (served, row)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS outcomes (
                seq INTEGER PRIMARY KEY, request_id TEXT NOT NULL, row INTEGER NOT NULL,
                model_version TEXT NOT NULL, prediction TEXT NOT NULL, score REAL NOT NULL,
                truth TEXT NOT NULL);
            """,
            # `last`: the number of records served so far, this request's included (computed
            # under the table's lock: two pods must not number two requests alike).
            "INSERT INTO served (last, request_id, model_version, predictions, scores, at, "
            "inputs) VALUES ((SELECT COALESCE(MAX(last), 0) FROM served) + ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            _served_row,
            after_write=self._forget_oldest,
            table_lock="served",
        )
        # Files written before inputs and times were kept (investigate reads both).
        for table, column, kind in (("served", "at", "REAL"), ("served", "inputs", "TEXT"),
                                    ("claims", "truth", "TEXT")):
            if column not in self._db.columns(table):
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def record(
        self,
        request_id: str,
        model_version: str,
        scored: Any,
        inputs: Mapping[str, list[Any]] | None = None,
    ) -> None:
        """Remember a request's predictions (a ``Scores``: ``predictions`` and ``scores``),
        with its inputs (one list of values per feature) and the time, for ``investigate``.

        Only queued here; the spool's thread encodes and writes them.
        """
        self._spool.put((request_id, model_version, scored, inputs, time.time()))

    def claim(self, request_id: str, index: int, truth: Any) -> Outcome:
        """Join ``truth`` to the prediction at ``index`` of ``request_id``, once."""
        self._spool.flush()
        joined = self._try_claim(request_id, index, truth)
        deadline = time.monotonic() + JOIN_GRACE_SECONDS
        while joined == "unknown" and self.shared and time.monotonic() < deadline:
            time.sleep(JOIN_POLL_SECONDS)
            joined = self._try_claim(request_id, index, truth)
        if isinstance(joined, Outcome):
            return joined
        if joined == "duplicate":
            raise FeedbackError(
                "duplicate",
                f"Feedback for record {index} of request {request_id!r} was already "
                "received; each prediction takes one outcome.",
            )
        where = "request" if joined == "unknown" else f"record {index} of request"
        raise FeedbackError(
            "unknown",
            f"No prediction for {where} {request_id!r}: the id is wrong, or the prediction is "
            f"older than the last {self.capacity} records the service remembers "
            "(serving.feedback_log_size).",
        )

    def outcomes(self) -> list[Outcome]:
        """The last ``window`` outcomes, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT request_id, row, model_version, prediction, score, truth FROM outcomes "
                "ORDER BY seq DESC LIMIT ?",
                (self.window,),
            ).fetchall()
        return outcomes_of(rows)

    def _try_claim(self, request_id: str, index: int, truth: Any) -> Outcome | str:
        """The outcome, or why not: ``unknown`` (no such request), ``no_record`` (the request
        has no such record, or it is forgotten) or ``duplicate``."""
        with self._lock:
            db = self._db
            # Two workers claiming one record cannot both see it unclaimed: SQLite's IMMEDIATE
            # serialises them, PostgreSQL's primary key makes the second insert wait and skip.
            db.begin()
            try:
                found = db.execute(
                    "SELECT last, model_version, predictions, scores, "
                    "(SELECT MAX(last) FROM served) FROM served WHERE request_id = ?",
                    (request_id,),
                ).fetchone()
                if found is None:
                    db.execute("COMMIT")
                    return "unknown"
                last, version, predictions, scores, newest = found
                scores = json.loads(scores)
                # The record's number among all served; those beyond `capacity` are forgotten.
                number = last - len(scores) + 1 + index
                if not 0 <= index < len(scores) or number <= newest - self.capacity:
                    db.execute("COMMIT")
                    return "no_record"
                claimed = db.execute(
                    "INSERT INTO claims VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (last, index, json.dumps(truth)),
                ).rowcount
                if not claimed:
                    db.execute("COMMIT")
                    return "duplicate"
                prediction, score = json.loads(predictions)[index], scores[index]
                db.execute(
                    "INSERT INTO outcomes (request_id, row, model_version, prediction, score, "
                    "truth) VALUES (?, ?, ?, ?, ?, ?)",
                    (request_id, index, version, json.dumps(prediction), score,
                     json.dumps(truth)),
                )
                db.execute(
                    "DELETE FROM outcomes WHERE seq <= (SELECT MAX(seq) FROM outcomes) - ?",
                    (self.window,),
                )
                db.execute("COMMIT")
            except BaseException:
                db.rollback()
                raise
        return Outcome(request_id, index, version, prediction, score, truth)

    def _forget_oldest(self, db: Database) -> None:
        # Requests whose every record is beyond `capacity`, and their claims.
        (newest,) = db.execute("SELECT MAX(last) FROM served").fetchone()
        db.execute("DELETE FROM served WHERE last <= ?", (newest - self.capacity,))
        db.execute("DELETE FROM claims WHERE served <= ?", (newest - self.capacity,))


def _served_row(item: tuple[str, str, Any, Any, float]) -> list[tuple]:
    request_id, version, scored, inputs, at = item
    if not scored:
        return []  # `last` would repeat the previous request's and replace it
    return [
        (len(scored), request_id, version, to_json(scored.predictions).decode(),
         to_json(scored.scores).decode(), at,
         None if inputs is None else to_json(inputs).decode())
    ]


def read_log(path: str | Path, after: float, target: str) -> Any:
    """The logged records served at or after ``after`` (epoch seconds) as a DataFrame: their
    inputs, the time (column ``__logged_at__``) and, where an outcome was fed back, the truth
    in column ``target``; oldest first. Records logged without inputs are left out.

    ``path`` is the store's SQLite file or PostgreSQL URL, opened read-only. A million logged
    requests are decoded as one newline-delimited JSON document by pyarrow, not request by
    request in Python (see :func:`_logged_inputs`)."""
    import pandas as pd

    db = Database(path, read_only=True)
    try:
        served = db.execute(
            "SELECT last, at, inputs FROM served WHERE at >= ? AND inputs IS NOT NULL "
            "ORDER BY last", (after,)
        ).fetchall()
        # A join, not `served IN (SELECT ...)`: the same rows (`last` is the key) in about half
        # the time on a million claims.
        claims = db.execute(
            "SELECT c.served, c.row, c.truth FROM claims c JOIN served s ON s.last = c.served "
            "WHERE c.truth IS NOT NULL AND s.at >= ? AND s.inputs IS NOT NULL", (after,)
        ).fetchall()
    finally:
        db.close()
    columns, counts = _logged_inputs([inputs for _, _, inputs in served])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    outcomes = np.full(int(counts.sum()), None, dtype=object)
    if claims:
        # Each claim's record, by array arithmetic: `served` is ordered by `last`.
        lasts = np.fromiter((last for last, _, _ in served), dtype=np.int64, count=len(served))
        of = np.fromiter((last for last, _, _ in claims), dtype=np.int64, count=len(claims))
        rows = np.fromiter((row for _, row, _ in claims), dtype=np.int64, count=len(claims))
        index = np.searchsorted(lasts, of)
        truths = json.loads("[" + ",".join(truth for _, _, truth in claims) + "]")
        keep = rows < counts[index]
        values = np.fromiter(truths, dtype=object, count=len(truths))
        outcomes[(starts[index] + rows)[keep]] = values[keep]
    frame = pd.DataFrame(columns)
    frame[target] = outcomes.tolist()
    frame["__logged_at__"] = np.repeat(
        np.fromiter((at for _, at, _ in served), dtype="float64", count=len(served)), counts
    )
    return frame


def served_version(path: str | Path, after: float) -> str | None:
    """The model version that served the latest record logged at or after ``after`` (epoch
    seconds), or None when there is none: one row by the primary key."""
    db = Database(path, read_only=True)
    try:
        row = db.execute(
            "SELECT model_version FROM served WHERE at >= ? ORDER BY last DESC LIMIT 1", (after,)
        ).fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


def _logged_inputs(logged: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """The logged requests' inputs (``{feature: [value per record]}`` each) as columns, and
    each request's record count.

    pyarrow decodes them in C++ (a million requests in about a fifth of the time of
    ``json.loads``) when every request names the same features with values of one type per
    feature, as a service logs them; anything else (a feature added or dropped on the way, a
    value of another type) is joined by ``json``, a missing feature as missing values."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pa_json

    if not logged:
        return {}, np.zeros(0, dtype=np.int64)
    try:
        table = pa_json.read_json(
            io.BytesIO("\n".join(logged).encode()),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=1 << 26),
        )
    except pa.ArrowInvalid:
        table = None
    if table is not None and table.num_columns and all(
        pa.types.is_list(c.type) and c.null_count == 0 for c in table.columns
    ):
        counts = pc.list_value_length(table.column(0)).to_numpy().astype(np.int64)
        flat = {name: pc.list_flatten(table.column(name)) for name in table.column_names}
        if all(len(values) == counts.sum() for values in flat.values()):
            frame = pa.table(flat).to_pandas()
            return {name: frame[name] for name in frame.columns}, counts
    records: list[dict[str, list[Any]]] = json.loads("[" + ",".join(logged) + "]")
    counts = np.array([len(next(iter(r.values()))) if r else 0 for r in records], dtype=np.int64)
    columns: dict[str, Any] = {}
    for name in dict.fromkeys(name for record in records for name in record):
        columns[name] = list(chain.from_iterable(
            r[name] if name in r else [None] * int(n) for r, n in zip(records, counts, strict=True)
        ))
    return columns, counts


class LivePerformance:
    """Quality metrics of one task over a window of outcomes."""

    def __init__(self, task: str, classes: list[Any] | None, min_rows: int) -> None:
        if task not in LIVE_METRICS:
            raise ValueError(f"unknown task {task!r}: expected one of {', '.join(LIVE_METRICS)}")
        self.task = task
        self.classes = classes
        self.min_rows = min_rows

    @property
    def names(self) -> tuple[str, ...]:
        return LIVE_METRICS[self.task]

    def metrics(self, outcomes: list[Outcome]) -> dict[str, float]:
        """The live metrics; empty below ``min_rows`` outcomes (too few to mean anything)."""
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
