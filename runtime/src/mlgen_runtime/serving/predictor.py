"""The *predictor* scores validated request rows with the bundle's fitted pipeline.

Rows arrive as records (one dict per row) or as columns (one list per feature);
:class:`Rows` holds either and builds the other form only when something asks for it.
:meth:`Predictor.model_output` is the seam a faster serving path replaces
(:class:`.fastpath.FastPredictor`: compiled encoder + ONNX): rows in, class probabilities
or values out. :meth:`Predictor.model_input` is the DataFrame the pipeline itself takes, and
:meth:`Predictor.predictions` turns model output into API predictions for every path.
Everything else in the API (schemas, metrics, drift, errors) stays the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from ..bundle import Bundle


class Scored(NamedTuple):
    """One record's prediction, plus what monitoring needs to know about it."""

    prediction: Any
    probabilities: dict[str, float] | None
    outcome: str
    score: float


class Scores(Sequence[Scored]):
    """A request's predictions, kept as one list per field of :class:`Scored`.

    The API, the metrics and the feedback store read whole fields (``scores`` into a
    histogram, ``predictions`` into one JSON array); per-record tuples are built only when
    indexed or iterated. On a 1,000-record batch that skips 1,000 tuples (~250 us).
    """

    __slots__ = ("predictions", "probabilities", "outcomes", "scores")

    def __init__(
        self,
        predictions: list[Any],
        probabilities: list[dict[str, float]] | None,
        outcomes: list[str],
        scores: list[float],
    ) -> None:
        self.predictions = predictions
        self.probabilities = probabilities  # None for a regression
        self.outcomes = outcomes
        self.scores = scores

    @classmethod
    def of(cls, items: Iterable[Scored]) -> Scores:
        """Scores from per-record tuples (classifiers: every item has probabilities)."""
        items = list(items)
        probabilities = [item.probabilities for item in items if item.probabilities is not None]
        return cls(
            [item.prediction for item in items],
            probabilities if len(probabilities) == len(items) else None,
            [item.outcome for item in items],
            [item.score for item in items],
        )

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self)[index]
        probabilities = None if self.probabilities is None else self.probabilities[index]
        return Scored(
            self.predictions[index], probabilities, self.outcomes[index], self.scores[index]
        )

    def __iter__(self) -> Iterator[Scored]:
        fields = zip(
            self.predictions, self.row_probabilities(), self.outcomes, self.scores, strict=True
        )
        return map(Scored._make, fields)

    def row_probabilities(self) -> Sequence[dict[str, float] | None]:
        """Each row's probabilities; None for every row of a regression."""
        return self.probabilities or [None] * len(self)


class Rows(Sequence[Mapping[str, Any]]):
    """Validated request rows: a sequence of records, kept as one list of values per feature.

    Everything on the serving path reads :meth:`column`; records are built from the columns
    only when indexed or iterated (a challenger routed by a feature value, for instance).
    """

    def __init__(
        self,
        columns: Mapping[str, list[Any]],
        length: int,
        records: list[Mapping[str, Any]] | None = None,
    ) -> None:
        self.columns = columns
        self.length = length
        if records is not None:
            self.__dict__["records"] = records

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]], names: Iterable[str]) -> Rows:
        """``rows`` as :class:`Rows` (unchanged if they are), with a column per name."""
        if isinstance(rows, Rows):
            return rows
        records = list(rows)
        if len(records) == 1:
            # A lone record (POST /predict) skips a comprehension per feature: ~2 us of ~100.
            columns = {name: [records[0].get(name)] for name in names}
        else:
            columns = {name: [row.get(name) for row in records] for name in names}
        return cls(columns, len(records), records)

    def column(self, name: str) -> list[Any]:
        """The values of feature ``name``, None where missing (an absent feature: every row)."""
        values = self.columns.get(name)
        return [None] * self.length if values is None else values

    @cached_property
    def records(self) -> list[Mapping[str, Any]]:
        if not self.columns:
            return [{} for _ in range(self.length)]
        names = list(self.columns)
        rows = zip(*self.columns.values(), strict=True)
        return [dict(zip(names, values, strict=True)) for values in rows]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: Any) -> Any:
        return self.records[index]

    def __iter__(self) -> Any:
        return iter(self.records)


def _python_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class ModelCodeExit(RuntimeError):
    """The model's code (the service's ``custom_features``, say) raised SystemExit or
    KeyboardInterrupt while scoring."""


class Predictor:
    """Scores records with a scikit-learn pipeline fed a DataFrame of training dtypes."""

    serving_path = "sklearn"

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.pipeline = bundle.pipeline
        self.regression = bundle.task == "regression"
        self.columns = [feature["name"] for feature in bundle.features]
        self.numeric = {f["name"] for f in bundle.features if f.get("type") == "numeric"}
        self.ranges = {
            f["name"]: (f["min"], f["max"])
            for f in bundle.features
            if f.get("type", "numeric") == "numeric"
            and f.get("min") is not None
            and f.get("max") is not None
        }
        self.classes = None if self.regression else list(self.pipeline.classes_)
        # The classes as the API answers them: labels as JSON values, keys as strings.
        self.labels = [_python_value(c) for c in self.classes or []]
        self.keys = [str(label) for label in self.labels]
        # Created after the model is loaded, so that it sees the model's OpenMP runtime.
        self.threadpools = ThreadpoolController()

    def model_input(self, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """A frame with one column per raw feature: numeric as float64, others as object.

        Missing values become NaN, which the pipeline's imputers recognise (None is not). The
        pipeline's own first steps type the columns exactly as in training.
        """
        rows = Rows.of(rows, self.columns)
        data = {}
        for name in self.columns:
            values = rows.column(name)
            if name in self.numeric:
                data[name] = np.array(values, dtype=np.float64)
            else:
                data[name] = np.array(
                    [np.nan if value is None else value for value in values], dtype=object
                )
        return pd.DataFrame(data, copy=False)

    def predictions(self, output: np.ndarray) -> Scores:
        """API predictions from the model's output: probabilities, or regression values."""
        # Whole-array numpy, then one pass of plain Python per field.
        if self.regression:
            values = np.ravel(output).astype(float).tolist()
            return Scores(values, None, ["value"] * len(values), values)
        labels, keys = self.labels, self.keys
        output = np.asarray(output, dtype=float)
        if output.ndim != 2 or output.shape[1] != len(keys):
            raise ValueError(
                f"the model returned probabilities of shape {output.shape} for "
                f"{len(keys)} classes"
            )
        if len(output) == 1:
            # One record (POST /predict): plain Python on a few floats beats numpy's calls.
            (row,) = output.tolist()
            winner = row.index(max(row))  # the first of equals, as numpy's argmax
            score = row[1] if len(keys) == 2 else row[winner]
            return Scores([labels[winner]], [dict(zip(keys, row, strict=True))],
                          [keys[winner]], [score])
        # The most probable class is what sklearn classifiers' predict() returns.
        best = np.argmax(output, axis=1)
        # Binary: the positive class's probability; multiclass: the winner's.
        scores = output[:, 1] if len(labels) == 2 else output[np.arange(len(output)), best]
        winners = best.tolist()
        rows = output.tolist()
        if len(keys) == 2:
            # A dict display is 2x faster than dict(zip(...)): ~150 us on 1,000 records.
            first, second = keys
            probabilities = [{first: a, second: b} for a, b in rows]
        else:
            # The shape is checked above: no per-row strict zip.
            probabilities = [dict(zip(keys, row, strict=False)) for row in rows]
        return Scores(
            [labels[index] for index in winners],
            probabilities,
            [keys[index] for index in winners],
            scores.tolist(),
        )

    def model_output(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """What the model returns for ``rows``: class probabilities, or values."""
        frame = self.model_input(rows)
        # OpenMP models (HistGradientBoosting, LightGBM) spread even one row over every core;
        # thread start-up and spin-waits then cost far more than the work, and collapse under
        # load (a 100-tree model: 1.5 ms on one thread, 10-170 ms on all of a busy machine).
        # A service scales with worker processes instead.
        with self.threadpools.limit(limits=1, user_api="openmp"):
            if self.regression:
                return self.pipeline.predict(frame)
            return self.pipeline.predict_proba(frame)

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Scores:
        try:
            return self.predictions(self.model_output(rows))
        except (SystemExit, KeyboardInterrupt) as exc:
            # Not a signal (the servers handle those): code in the pipeline called sys.exit()
            # or raised it. As an ordinary failure it gets the fallback model or a 422, the
            # challenger's circuit breaker counts it, and the process keeps serving.
            raise ModelCodeExit(
                f"the model's code raised {type(exc).__name__}({exc}); custom_features must "
                "return a DataFrame or raise an Exception"
            ) from exc

    def out_of_range(self, rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        """Per row, the numeric features whose value lies outside the training min/max."""
        rows = Rows.of(rows, self.ranges)
        flagged: list[list[str]] = [[] for _ in range(len(rows))]
        for name, (low, high) in self.ranges.items():
            # NaN never reaches here (the schema rejects it); None is a missing value.
            for index, value in enumerate(rows.column(name)):
                if value is not None and not low <= value <= high:
                    flagged[index].append(name)
        return flagged
