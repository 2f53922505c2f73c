"""The *fast path*: scores validated records without pandas, compiled from the fitted pipeline.

Per request, a scikit-learn pipeline fed a one-row DataFrame spends milliseconds on pandas
indexing and per-call validation and microseconds on the model. At load, :class:`RecordEncoder`
reads the fitted preprocessing (``prepare_frame`` + the ``ColumnTransformer``'s imputers,
scalers and encoders) into plain lookup tables and arithmetic, so records become the model's
input matrix directly; the final estimator then runs natively or as an ONNX graph
(:mod:`.onnx_export`).

Nothing is trusted blindly: :func:`build_predictor` checks the fast path against the full
pipeline on probe records spanning every feature's range, categories, missing and unseen
values, and serves with the pipeline itself when anything differs. The chosen path is
reported in ``/metadata`` and the ``serving_path`` label of ``model_info``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    TargetEncoder,
)

from ..bundle import Bundle
from ..errors import NotCompilable
from ..features import DATETIME_PARTS, boolean_value
from ..transforms import FeatureTransforms, Source
from ..values import category_text
from .predictor import Predictor, Rows

log = logging.getLogger(__name__)

# Largest difference between the fast path and the pipeline a served model may show (see
# parity_error).
PARITY_TOLERANCE = 1e-5
# Encoded inputs are float64 arithmetic on both sides: only rounding may differ.
ENCODING_TOLERANCE = 1e-9
PROBE_RANDOM_ROWS = 64
UNSEEN_CATEGORY = "\x00unseen category"
# pandas timestamps (nanoseconds since 1970) cover only these years; outside them
# prepare_frame sees a missing value.
PANDAS_YEARS = (1678, 2261)

Column = list


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        stamp = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    # prepare_frame parses with utc=True: naive times are UTC, aware ones are converted.
    stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    return stamp if PANDAS_YEARS[0] <= stamp.year <= PANDAS_YEARS[1] else None


def _datetime_part(stamp: datetime | None, part: str) -> float:
    if stamp is None:
        return math.nan
    return float(stamp.weekday() if part == "day_of_week" else getattr(stamp, part))


def _numbers(name: str, rows: Rows) -> Column:
    # Validated numbers or None, which a float array reads as NaN.
    return rows.column(name)


def _booleans(name: str, rows: Rows) -> Column:
    # The schema lets only JSON booleans through: no word parsing for them.
    return [
        1.0 if value is True else 0.0 if value is False else boolean_value(value)
        for value in rows.column(name)
    ]


def _datetime_parts(name: str, part: str, rows: Rows) -> Column:
    return [_datetime_part(_timestamp(value), part) for value in rows.column(name)]


def _categories(name: str, rows: Rows) -> Column:
    return [category_text(value) for value in rows.column(name)]


def _typed_readers(features: list[dict[str, Any]]) -> dict[str, Callable[[Rows], Column]]:
    """One reader per column of ``prepare_frame``'s output: rows -> that column's values.

    Plain lists: a single record is encoded as lists (:class:`Compiled`), and a batch block
    turns all its columns into one array at once instead of one array per column plus a stack.
    """
    readers: dict[str, Callable[[Rows], Column]] = {}
    for feature in features:
        name, kind = feature["name"], feature["type"]
        if kind == "numeric":
            readers[name] = partial(_numbers, name)
        elif kind == "boolean":
            readers[name] = partial(_booleans, name)
        elif kind == "datetime":
            for part in DATETIME_PARTS:
                readers[f"{name}__{part}"] = partial(_datetime_parts, name, part)
        else:
            readers[name] = partial(_categories, name)
    return readers


class Compiled(NamedTuple):
    """One compiled transformation, written twice over the same fitted parameters: on a
    matrix (batches) and on one row's values as a list (single records, where each numpy call
    costs more than the arithmetic: a 9-feature record took 32 us through ~15 numpy calls in a
    running service, 10 us as lists). :func:`build_predictor` checks that both give the same
    encoding before serving."""

    matrix: Callable[[np.ndarray], np.ndarray]
    row: Callable[[list[float]], list[float]]


def _numeric_block(transformer: Any) -> Compiled:
    """The arithmetic of a fitted imputer / scaler (or a Pipeline of them) on float values."""
    if transformer == "passthrough":
        return Compiled(lambda X: X, lambda values: values)
    if isinstance(transformer, Pipeline):
        stages = [_numeric_block(step) for _, step in transformer.steps]

        def chained(X: np.ndarray) -> np.ndarray:
            for stage in stages:
                X = stage.matrix(X)
            return X

        def chained_row(values: list[float]) -> list[float]:
            for stage in stages:
                values = stage.row(values)
            return values

        return Compiled(chained, chained_row)
    if isinstance(transformer, SimpleImputer):
        missing_value = transformer.missing_values
        if not (isinstance(missing_value, float) and np.isnan(missing_value)):
            raise NotCompilable("an imputer whose missing value is not NaN")
        fill = np.asarray(transformer.statistics_, dtype=float)
        indicator = transformer.indicator_.features_ if transformer.add_indicator else None
        if indicator is not None and len(indicator) == 0:
            indicator = None
        fill_values = fill.tolist()
        flagged = [] if indicator is None else np.asarray(indicator).tolist()

        def impute(X: np.ndarray) -> np.ndarray:
            missing = np.isnan(X)
            filled = np.where(missing, fill, X)
            if indicator is None:
                return filled
            return np.concatenate([filled, missing[:, indicator].astype(float)], axis=1)

        def impute_row(values: list[float]) -> list[float]:
            # NaN is the only value unequal to itself.
            filled = [f if v != v else v for v, f in zip(values, fill_values, strict=True)]
            return filled + [1.0 if values[i] != values[i] else 0.0 for i in flagged]

        return Compiled(impute, impute_row)
    if isinstance(transformer, StandardScaler):
        mean = transformer.mean_ if transformer.with_mean else 0.0
        scale = transformer.scale_ if transformer.with_std else 1.0
        width = transformer.n_features_in_
        means = np.broadcast_to(mean, width).tolist()
        scales = np.broadcast_to(scale, width).tolist()
        return Compiled(
            lambda X: (X - mean) / scale,
            lambda values: [
                (v - m) / s for v, m, s in zip(values, means, scales, strict=True)
            ],
        )
    raise NotCompilable(f"no fast path for {type(transformer).__name__}")


class _CategoryTable:
    """One categorical column's encoding: a row of outputs per training category.

    The rows are produced by the fitted encoder itself, so unseen, missing and infrequent
    categories are encoded exactly as sklearn does.
    """

    def __init__(self, categories: Sequence[Any], encoded: np.ndarray) -> None:
        # encoded rows: each category in order, then missing, then an unseen value.
        self.index = {value: row for row, value in enumerate(categories)}
        self.missing = len(categories)
        self.unseen = len(categories) + 1
        self.encoded = encoded
        # The same rows as lists, for one record at a time.
        self.rows = encoded.tolist()

    def position(self, value: str | None) -> int:
        return self.missing if value is None else self.index.get(value, self.unseen)

    def __call__(self, values: list[str | None]) -> np.ndarray:
        # take() is 4x faster than fancy indexing on the few rows of a request.
        return self.encoded.take([self.position(value) for value in values], axis=0)


def _output_widths(encoder: Any, n_columns: int) -> list[int]:
    if isinstance(encoder, OrdinalEncoder):
        return [1] * n_columns
    if isinstance(encoder, OneHotEncoder):
        if encoder.drop is not None:
            raise NotCompilable("a one-hot encoder that drops categories")
        return list(encoder._n_features_outs)
    if isinstance(encoder, TargetEncoder):
        width = len(encoder.classes_) if encoder.target_type_ == "multiclass" else 1
        return [width] * n_columns
    raise NotCompilable(f"no fast path for {type(encoder).__name__}")


class Block(NamedTuple):
    """A ColumnTransformer part: its input columns -> its output columns, for many rows
    (``columns``: one list per input column) or one (``row``: one value per input column)."""

    columns: Callable[[list[Column]], np.ndarray]
    row: Callable[[list[Any]], list[float]]


def _category_block(transformer: Any, names: list[str]) -> Block:
    """The table of ``transformer``: an encoder, or imputers then an encoder (the text kind's
    categorical columns); the table is the whole transformer's output on each category."""
    encoder = _encoder_of(transformer)
    widths = _output_widths(encoder, len(names))
    known = [
        [value for value in categories if isinstance(value, str)]
        for categories in encoder.categories_
    ]
    length = max(len(values) for values in known) + 2
    probe = {}
    for name, values in zip(names, known, strict=True):
        column = [*values, np.nan, UNSEEN_CATEGORY]
        probe[name] = column + [column[-1]] * (length - len(column))
    with warnings.catch_warnings():
        # One-hot encoders warn about the unseen probe value, which is the point of it.
        warnings.simplefilter("ignore", UserWarning)
        encoded = transformer.transform(pd.DataFrame(probe, dtype=object))
    # A one-hot encoder may answer a sparse matrix (the text kind's does).
    encoded = np.asarray(encoded.toarray() if hasattr(encoded, "toarray") else encoded, dtype=float)
    if encoded.shape[1] != sum(widths):
        raise NotCompilable(f"{type(encoder).__name__} output is not one block per column")
    starts = np.cumsum([0, *widths])
    tables = [
        _CategoryTable(values, encoded[: len(values) + 2, start:end])
        for values, start, end in zip(known, starts[:-1], starts[1:], strict=True)
    ]

    def encode(columns: list[Column]) -> np.ndarray:
        return np.concatenate(
            [table(column) for table, column in zip(tables, columns, strict=True)], axis=1
        )

    def encode_row(values: list[Any]) -> list[float]:
        return [
            number
            for table, value in zip(tables, values, strict=True)
            for number in table.rows[table.position(value)]
        ]

    return Block(encode, encode_row)


def _encoder_of(transformer: Any) -> Any:
    """The category encoder ``transformer`` is or ends with (after imputers only), or None."""
    steps = (
        [step for _, step in transformer.steps]
        if isinstance(transformer, Pipeline)
        else [transformer]
    )
    if isinstance(steps[-1], OrdinalEncoder | OneHotEncoder | TargetEncoder) and all(
        isinstance(step, SimpleImputer) for step in steps[:-1]
    ):
        return steps[-1]
    return None


def _block(transformer: Any, names: list[str]) -> Block:
    """The compiled encoding of one ColumnTransformer part (raises NotCompilable)."""
    if _encoder_of(transformer) is not None:
        return _category_block(transformer, names)
    numeric = _numeric_block(transformer)
    return Block(
        # One row per column, transposed: the (rows, columns) matrix the fitted steps take.
        lambda columns: numeric.matrix(np.array(columns, dtype=float).T),
        # None is a missing value: NaN, as the float array above reads it.
        lambda values: numeric.row([math.nan if v is None else float(v) for v in values]),
    )


def _flat_steps(pipeline: Pipeline) -> list[Any]:
    """Every step of ``pipeline``, nested Pipelines flattened, the final estimator last."""
    steps: list[Any] = []
    for _, step in pipeline.steps:
        steps.extend(_flat_steps(step) if isinstance(step, Pipeline) else [step])
    return steps


class RecordEncoder:
    """Validated request rows (records or :class:`.predictor.Rows`) -> the float64 matrix the
    pipeline's final estimator takes.

    The pipeline's feature transforms run as they do in the pipeline, on the rows' columns
    (:meth:`.transforms.FeatureTransforms.derive`); their columns are then encoded like the
    raw features.
    """

    def __init__(self, pipeline: Pipeline, features: list[dict[str, Any]]) -> None:
        steps = _flat_steps(pipeline)[:-1]
        found = [step for step in steps if isinstance(step, FeatureTransforms)]
        self.transforms = found[0] if found else None
        if found:
            if len(found) > 1 or len(steps) < 3 or steps[-3] is not self.transforms:
                raise NotCompilable("the feature transforms do not run just before prepare_frame")
            steps = [step for step in steps if step is not self.transforms]
        functions = [getattr(getattr(step, "func", None), "__name__", "") for step in steps]
        if (
            len(steps) not in (2, 3)
            or not isinstance(steps[-1], ColumnTransformer)
            or functions[-2] != "prepare_frame"
            or (len(steps) == 3 and functions[0] != "apply_custom_features")
            or not all(isinstance(step, FunctionTransformer) for step in steps[:-1])
        ):
            raise NotCompilable(
                "the pipeline is not custom features -> prepare_frame -> ColumnTransformer"
            )
        typed = steps[-2].kw_args["features"]
        added = [] if self.transforms is None else self.transforms.output_names()
        if [f["name"] for f in typed] != [f["name"] for f in features] + added:
            # Derived columns exist only after the user's custom_features runs on a DataFrame.
            raise NotCompilable("custom_features adds derived features")
        self.names = [feature["name"] for feature in features]
        readers = _typed_readers(typed)
        encode: ColumnTransformer = steps[-1]
        self.width = max(where.stop for where in encode.output_indices_.values())
        self.blocks: list[tuple[slice, list[Callable[[Rows], Column]], Block]] = []
        for name, transformer, columns in encode.transformers_:
            if transformer == "drop" or len(columns) == 0:
                continue
            if not all(isinstance(column, str) for column in columns):
                raise NotCompilable("ColumnTransformer columns are not selected by name")
            self.blocks.append(
                (
                    encode.output_indices_[name],
                    [readers[column] for column in columns],
                    _block(transformer, list(columns)),
                )
            )

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        rows = self.transformed(Rows.of(rows, self.names))
        if len(rows) == 1:
            return self.one(rows)
        matrix = np.empty((len(rows), self.width))
        for where, readers, block in self.blocks:
            matrix[:, where] = block.columns([read(rows) for read in readers])
        return matrix

    def transformed(self, rows: Rows) -> Rows:
        """``rows`` with the columns of the feature transforms added."""
        if self.transforms is None:
            return rows
        added = self.transforms.derive(Source(rows.column, len(rows)))
        return Rows({**rows.columns, **added}, len(rows))

    def one(self, rows: Rows) -> np.ndarray:
        """The matrix of a single row, built as a list (see :class:`Compiled`); the transforms'
        columns already added (:meth:`transformed`)."""
        values = [0.0] * self.width
        for where, readers, block in self.blocks:
            values[where] = block.row([read(rows)[0] for read in readers])
        return np.array([values])


class FastPredictor(Predictor):
    """A :class:`Predictor` whose records go through a :class:`RecordEncoder` to ``model``.

    ``model(matrix)`` returns class probabilities (columns in ``classes`` order) or values.
    """

    def __init__(
        self,
        bundle: Bundle,
        encoder: RecordEncoder,
        model: Callable[[np.ndarray], np.ndarray],
        serving_path: str,
    ) -> None:
        super().__init__(bundle)
        self.encoder = encoder
        self.model = model
        self.serving_path = serving_path

    def model_output(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.model(self.encoder(rows))


def native_model(predictor: Predictor) -> Callable[[np.ndarray], np.ndarray]:
    """The pipeline's fitted final estimator on an encoded matrix, on one OpenMP thread."""
    estimator = predictor.pipeline.steps[-1][1]
    method = estimator.predict if predictor.regression else estimator.predict_proba

    def score(matrix: np.ndarray) -> np.ndarray:
        # One thread: see Predictor.predict.
        with predictor.threadpools.limit(limits=1, user_api="openmp"):
            return method(matrix)

    return score


def probe_records(features: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Records that reach every branch of the encoders: each category, missing and unseen
    values, range ends and beyond, then random values within the training ranges."""
    rng = np.random.default_rng(seed)
    columns: dict[str, list[Any]] = {}
    for feature in features:
        kind = feature["type"]
        if kind == "numeric":
            low, high = feature.get("min"), feature.get("max")
            low, high = (0.0, 1.0) if low is None or high is None else (low, high)
            span = high - low or 1.0
            fixed = [low, high, (low + high) / 2, None, low - span, high + span]
            random = rng.uniform(low, high, PROBE_RANDOM_ROWS).tolist()
        elif kind == "boolean":
            fixed = [True, False, None]
            random = rng.choice([True, False], PROBE_RANDOM_ROWS).tolist()
        elif kind == "datetime":
            fixed = ["2024-05-01T13:45:00", "2023-12-31T23:30:00+02:00", "2021-02-28", None]
            days = rng.integers(0, 3650, PROBE_RANDOM_ROWS)
            random = [
                datetime.fromtimestamp(1.5e9 + int(d) * 86400 + int(d) * 1234, UTC).isoformat()
                for d in days
            ]
        else:
            categories = [c for c in feature.get("categories") or [] if c is not None]
            fixed = [*categories, None, "unseen value"]
            random = (
                rng.choice(categories, PROBE_RANDOM_ROWS).tolist() if categories else []
            )
        columns[feature["name"]] = fixed + random
    count = max(len(values) for values in columns.values())
    records = [
        {name: values[row % len(values)] for name, values in columns.items()}
        for row in range(count)
    ]
    return [*records, {}]


def parity_error(expected: np.ndarray, got: np.ndarray) -> float:
    """Largest difference, relative to the largest |expected| when that exceeds 1.

    Probabilities are compared absolutely. Regression values are compared on their own scale:
    ONNX trees add up in float32, ~1e-7 of the largest value (2e-3 on prices of 18,000).
    """
    expected = np.asarray(expected, dtype=float)
    got = np.asarray(got, dtype=float).reshape(expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    return float(np.max(np.abs(got - expected), initial=0.0)) / scale


def _check(native: Predictor, fast: FastPredictor, records: list[dict[str, Any]]) -> float:
    """How far ``fast`` is from the pipeline itself on ``records`` (raises when unusable)."""
    encoded = native.pipeline[:-1].transform(native.model_input(records))
    mine = fast.encoder(records)
    if not np.allclose(
        mine, encoded, rtol=ENCODING_TOLERANCE, atol=ENCODING_TOLERANCE, equal_nan=True
    ):
        raise NotCompilable("the compiled encoding differs from the pipeline's")
    # A single record takes the encoder's list path (RecordEncoder.one): each must be exactly
    # its row of the matrix path's encoding.
    alone = [fast.encoder([record]) for record in records]
    if any(one.shape != (1, mine.shape[1]) for one in alone) or not np.array_equal(
        np.vstack(alone), mine, equal_nan=True
    ):
        raise NotCompilable("the compiled encoding of single records differs from batches'")
    return parity_error(native.model_output(records), fast.model(mine))


def build_predictor(bundle: Bundle, onnx: bool = True) -> Predictor:
    """The fastest predictor that matches the pipeline: ONNX, then compiled, then sklearn.

    ONNX is skipped when ``onnx`` is false; a path training found off on the validation split
    (``metadata["serving"][path]["ok"]``, see :func:`export_check`) is skipped too.
    """
    native = Predictor(bundle)
    try:
        encoder = RecordEncoder(bundle.pipeline, bundle.features)
    except NotCompilable as exc:
        log.info("Serving with the sklearn pipeline: %s", exc)
        return native
    except Exception:
        log.exception("Compiling the fast path failed; serving with the sklearn pipeline")
        return native
    records = probe_records(bundle.features)
    # What training found on the validation split (export_check), when it was recorded.
    exported = bundle.metadata.get("serving") or {}
    candidates: list[tuple[str, Callable[[], Callable[[np.ndarray], np.ndarray]]]] = [
        ("onnx", lambda: onnx_model(native)),
        ("compiled", lambda: native_model(native)),
    ]
    if not onnx:
        candidates.pop(0)
    for path, make_model in candidates:
        if not (exported.get(path) or {}).get("ok", True):
            log.info("No %s fast path: it failed the export check %s", path, exported[path])
            continue
        try:
            fast = FastPredictor(bundle, encoder, make_model(), path)
            error = _check(native, fast, records)
        except NotCompilable as exc:
            log.info("No %s fast path: %s", path, exc)
            continue
        except Exception:
            log.exception("The %s fast path failed its check", path)
            continue
        if error <= PARITY_TOLERANCE:
            log.info("Serving with the %s fast path (max difference %.2g)", path, error)
            return fast
        log.info("No %s fast path: predictions differ by %.2g", path, error)
    return native


def onnx_model(predictor: Predictor) -> Callable[[np.ndarray], np.ndarray]:
    """The final estimator as an ONNX Runtime session (raises NotCompilable when it cannot)."""
    # Imported here: ONNX is optional, and its import costs a second only ONNX serving pays.
    from .onnx_export import OnnxModel, estimator_to_onnx

    estimator = predictor.pipeline.steps[-1][1]
    graph = estimator_to_onnx(estimator, estimator.n_features_in_)
    return OnnxModel(graph, classify=not predictor.regression)


def request_records(frame: pd.DataFrame, features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``frame`` as request records of ``features`` (missing values are None)."""
    names = [feature["name"] for feature in features]
    columns = frame.reindex(columns=names).astype(object)
    return columns.where(columns.notna(), None).to_dict("records")


def export_check(bundle: Bundle, validation: pd.DataFrame) -> dict[str, Any]:
    """How each fast path matches the pipeline on the validation split (``metadata["serving"]``).

    ``build_predictor`` keeps a path that failed here out of serving; ``path`` is the one it
    will choose unless the serving environment's converters differ.
    """
    native = Predictor(bundle)
    records = request_records(validation, bundle.features)
    report: dict[str, Any] = {"rows": len(records), "tolerance": PARITY_TOLERANCE}
    try:
        encoder = RecordEncoder(bundle.pipeline, bundle.features)
    except NotCompilable as exc:
        return {**report, "path": "sklearn", "reason": str(exc)}
    expected = native.model_output(records)
    encoded = encoder(records)
    compiled_error = parity_error(expected, native_model(native)(encoded))
    report["compiled"] = {"ok": compiled_error <= PARITY_TOLERANCE, "max_error": compiled_error}
    try:
        error = parity_error(expected, onnx_model(native)(encoded))
        report["onnx"] = {"ok": error <= PARITY_TOLERANCE, "max_error": error}
    except NotCompilable as exc:
        report["onnx"] = {"ok": False, "max_error": None, "reason": str(exc)}
    passed = [path for path in ("onnx", "compiled") if report[path]["ok"]]
    report["path"] = passed[0] if passed else "sklearn"
    return report
