"""The HTTP API's request and response models.

The request bodies (:class:`RequestBodies`) are built at runtime from the model bundle's
resolved features, so the OpenAPI document at ``/docs`` always shows the exact fields and types
the served model takes. A record is one flat JSON object of feature values keyed by the
feature's own name (any string, spaces and unicode included); a batch is a list of records or,
faster, one list of values per feature. Every feature is optional: ``null`` or an omitted key
means "missing" and is handled by the model's imputers, as in training. The data file's other
columns (the target, an id, excluded columns: the bundle's ``ignored_columns``) are accepted
and dropped at validation, so that a whole row of the file scores as it is; any other key is
refused, so that a misspelt feature is reported instead of silently missing.

A value may be sent as its natural JSON type or as the training file writes it, so that a row
copied from the CSV (``csv.DictReader`` gives only strings) or written by pandas scores as it
is: a number as text (``"39.1"``), a boolean as one of the words training reads as booleans
(``"Yes"``/``"No"``, ``"True"``/``"False"``, ``"1"``/``"0"``, or the numbers 1/0), a category
given as a number as its text, a date in any form pandas parses, and pandas' missing-value
words (``""``, ``"NA"``, ``"NaN"``, ...) as missing. Everything else is refused with the field
named: text that is not a number, an unknown category, NaN or infinity as a JSON number (send
``null`` for a missing value), so that a client bug is reported instead of silently imputed.
Values are turned into the natural type at validation, before any serving path sees them.

Responses are serialised by the routes themselves (see ``app.py``) in the shape of the models
here, which document them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple

import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    with_config,
)
from pydantic_core import PydanticCustomError, from_json
from typing_extensions import TypedDict

from ..features import category_text
from ..monitoring.drift import FALSE_WORDS, TRUE_WORDS

Label = str | int | float | bool
# The validation error type of a batch over serving.max_batch_size.
BATCH_TOO_LARGE = "batch_too_large"
PLAUSIBLE_FACTOR = 1e6
COMPONENTS = "#/components/schemas/"
# How a body of the records form begins: others are not parsed twice (see BatchScreen).
_RECORDS_FORM = re.compile(rb'\s*\{\s*"records"\s*:')
# The words pandas' CSV reader takes for a missing value (its default ``na_values``): where
# the training file says "NA" or nothing, the model saw a missing value.
MISSING_WORDS = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)


def _number(value: Any) -> Any:
    """A number sent as text (as a CSV row has it) becomes the number; a missing word, None."""
    if type(value) is not str:
        return value  # JSON numbers, null; the float schema refuses the rest
    if value in MISSING_WORDS:
        return None
    try:
        return float(value)
    except ValueError:
        raise PydanticCustomError(
            "number_text",
            "{text} is not a number; send a JSON number (or its text, e.g. \"39.1\"), or null "
            "for a missing value",
            {"text": repr(value)},
        ) from None


def _boolean(value: Any) -> Any:
    """JSON booleans, the words training reads as booleans (Yes/No, True/False, 1/0, ...), the
    numbers 1 and 0, or missing; anything else is refused."""
    if value is None or type(value) is bool:
        return value
    if type(value) is str:
        if value in MISSING_WORDS:
            return None
        word = value.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
    elif type(value) in (int, float) and value in (0, 1):
        return value == 1
    raise PydanticCustomError(
        "boolean_value",
        "{value} is not a boolean; send true or false (or the data's words: yes/no, "
        "true/false, 1/0), or null for a missing value",
        {"value": repr(value)},
    )


def _timestamp(value: Any) -> Any:
    """An ISO 8601 date/time as it is; another form pandas parses (as training did) in ISO."""
    if type(value) is not str:
        return value  # null; the str schema refuses the rest
    if value in MISSING_WORDS:
        return None
    try:
        datetime.fromisoformat(value)
        return value
    except ValueError:
        pass
    try:
        # A date has digits: pandas would also read "now" and "today", as a different time
        # on every request.
        stamp = pd.Timestamp(value) if any(c.isdigit() for c in value) else pd.NaT
    except (ValueError, OverflowError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise PydanticCustomError(
            "datetime_text",
            "{value} is not a date/time; send ISO 8601, e.g. '2024-05-01T13:45:00'",
            {"value": repr(value)},
        )
    return stamp.isoformat()


def _category(categories: list[Any]) -> Callable[[Any], Any]:
    """A category as text: a number sent for it becomes its text (1.0 and 1 are "1", as in
    training), and a missing word that is not itself a category is missing."""
    known = frozenset(categories)
    # Categories are text since training reads them so; a bundle listing numbers takes numbers.
    as_text = all(isinstance(c, str) for c in categories)

    def category(value: Any) -> Any:
        if type(value) is str:
            return None if value in MISSING_WORDS and value not in known else value
        if as_text and type(value) in (int, float) and math.isfinite(value):
            return category_text(value)
        return value  # null; the schema refuses the rest

    return category


def _of_types(*types: type) -> Callable[[list[Any]], bool]:
    allowed = frozenset(types)
    return lambda values: allowed.issuperset(map(type, values))


def _plain_text(values: list[Any]) -> bool:
    return _of_types(str, type(None))(values) and MISSING_WORDS.isdisjoint(values)


class ValueType(NamedTuple):
    """How a feature's values are validated.

    ``annotation`` is the value's natural JSON type, null allowed; ``read`` turns a value as
    the data writes it (see the module docstring) into that type, before validation; and
    ``ready(values)`` says, at C speed, that a whole column has nothing to read.
    """

    annotation: Any
    read: Callable[[Any], Any]
    ready: Callable[[list[Any]], bool]

    @property
    def value(self) -> Any:
        annotation = self.annotation
        return Annotated[annotation, BeforeValidator(self.read)]

    @property
    def column(self) -> Any:
        """A list of values. A column that is ready is validated as a whole without a Python
        call per value (the columns form of a batch, and the batch screen, are for speed);
        any other, or one that fails, value by value, which words and locates each error."""
        annotation: Any = self.annotation
        whole: TypeAdapter[Any] = TypeAdapter(list[annotation], config=ConfigDict(strict=True))
        ready = self.ready

        def validate(values: Any, by_value: ValidatorFunctionWrapHandler) -> Any:
            if type(values) is list and ready(values):
                try:
                    return whole.validate_python(values)
                except ValidationError:
                    pass
            return by_value(values)

        value: Any = self.value
        return Annotated[list[value], WrapValidator(validate)]


def plausible_bound(feature: dict[str, Any]) -> float | None:
    """The largest magnitude accepted for a numeric feature, or None without a training range.

    Values outside the training range are served (and flagged); values a million times beyond
    its largest magnitude are unit or encoding errors that would overflow the model's arithmetic.
    """
    low, high = feature.get("min"), feature.get("max")
    if low is None or high is None:
        return None
    return max(abs(low), abs(high), 1.0) * PLAUSIBLE_FACTOR


def value_type(feature: dict[str, Any]) -> ValueType:
    """A feature's values (null for missing), taken in their JSON type or as the data writes
    them."""
    kind = feature.get("type", "numeric")
    categories = [c for c in feature.get("categories") or [] if c is not None]
    if kind == "numeric":
        bound = plausible_bound(feature)
        number = (
            FiniteFloat if bound is None else Annotated[FiniteFloat, Field(ge=-bound, le=bound)]
        )
        return ValueType(number | None, _number, _of_types(int, float, type(None)))
    if kind == "boolean":
        return ValueType(bool | None, _boolean, _of_types(bool, type(None)))
    if kind == "datetime":
        return ValueType(str | None, _timestamp, _of_types(type(None)))
    if kind == "categorical" and categories:
        return ValueType(Literal[tuple(categories)] | None, _category(categories), _plain_text)
    return ValueType(str | None, _category([]), _plain_text)


def request_example(frame: pd.DataFrame, features: list[dict[str, Any]]) -> dict[str, Any]:
    """A real row of ``frame`` (the training data) as a request body, for the API's examples:
    the first row with every feature present (else the first row, its gaps left out), with
    the values pandas writes to JSON. Being a training row, it is inside every training range.
    """
    rows = frame.reindex(columns=[feature["name"] for feature in features])
    complete = rows.dropna()
    first = (complete if len(complete) else rows).head(1)
    (example,) = json.loads(first.to_json(orient="records", date_format="iso"))
    return {name: value for name, value in example.items() if value is not None}


def _feature_description(feature: dict[str, Any]) -> str:
    kind = feature.get("type", "numeric")
    parts = [kind]
    if feature.get("min") is not None and feature.get("max") is not None:
        parts.append(
            f"training range [{feature['min']}, {feature['max']}] "
            "(values outside are accepted and flagged in out_of_range)"
        )
    parts.append(
        {
            "numeric": "a JSON number or its text",
            "boolean": "true/false, or the data's words (yes/no, true/false, 1/0)",
            "datetime": "ISO 8601 string (or another form of date pandas parses)",
        }.get(kind, "text (a number is taken as its text)")
    )
    parts.append("null, omitted or a missing-value word (\"\", \"NA\") means missing")
    return "; ".join(parts)


def _typed_dict(
    name: str, fields: dict[str, Any], doc: str, json_schema_extra: dict[str, Any] | None = None
) -> type:
    """A TypedDict of ``fields``, each optional, validated strictly, unknown keys rejected.

    A TypedDict, not a BaseModel: validated JSON becomes plain dicts, with no model instance
    built and dumped again per record. Its fields are known only at run time, from the
    bundle's features: no type checker can follow that, hence the one ignore.
    """
    typed = TypedDict(name, fields, total=False)  # type: ignore[misc]
    typed.__doc__ = doc
    config = ConfigDict(extra="forbid", strict=True)
    if json_schema_extra is not None:
        config["json_schema_extra"] = json_schema_extra
    return with_config(config)(typed)


IGNORED_DESCRIPTION = (
    "a column of the training data that is not a feature ({why}): accepted and ignored, so "
    "that a row of the data file can be sent as it is"
)


def _ignored_fields(ignored: tuple[str, ...], target: str | None, value: Any) -> dict[str, Any]:
    """Optional fields of any value for the data's non-feature columns (see module doc)."""
    return {
        name: Annotated[
            value,
            Field(
                title=name,
                description=IGNORED_DESCRIPTION.format(
                    why="the target" if name == target else "an id, a time, an excluded column"
                ),
            ),
        ]
        for name in ignored
    }


def _dropping(ignored: tuple[str, ...]) -> AfterValidator:
    """Removes the ignored columns' keys from a validated record or columns dict."""

    def drop(values: dict[str, Any]) -> dict[str, Any]:
        if not any(name in values for name in ignored):
            return values
        return {key: value for key, value in values.items() if key not in ignored}

    return AfterValidator(drop)


def build_record_model(
    features: list[dict[str, Any]], ignored: tuple[str, ...] = (), target: str | None = None
) -> Any:
    """One request record: a key per feature, named by the feature's real name.

    ``ignored`` names the data's other columns (the target among them): taken, then dropped.
    """
    fields = {
        feature["name"]: Annotated[
            value_type(feature).value,
            Field(title=feature["name"], description=_feature_description(feature)),
        ]
        for feature in features
    }
    record = _typed_dict(
        "Record",
        {**fields, **_ignored_fields(ignored, target, Any)},
        "Feature values of one row; the data file's other columns are ignored, unknown keys "
        "are rejected.",
    )
    return Annotated[record, _dropping(ignored)] if ignored else record


def _within(max_batch_size: int) -> BeforeValidator:
    """Refuses a list over ``max_batch_size`` before any of its values is validated."""

    def within_limit(values: Any) -> Any:
        if isinstance(values, list) and len(values) > max_batch_size:
            raise PydanticCustomError(
                BATCH_TOO_LARGE,
                "{count} rows is more than the {limit} a batch takes",
                {"count": len(values), "limit": max_batch_size},
            )
        return values

    return BeforeValidator(within_limit)


def _same_lengths(columns: dict[str, list]) -> dict[str, list]:
    lengths = sorted({len(values) for values in columns.values()})
    if not lengths:
        raise PydanticCustomError(
            "no_columns", "name at least one feature with its values, e.g. {example}",
            {"example": '{"columns": {"feature": [1.5, null]}}'},
        )
    if len(lengths) > 1:
        raise PydanticCustomError(
            "column_lengths",
            "every column needs one value per row (null for missing); got lengths {lengths}",
            {"lengths": ", ".join(map(str, lengths))},
        )
    return columns


def build_columns_model(
    features: list[dict[str, Any]],
    max_batch_size: int,
    ignored: tuple[str, ...] = (),
    target: str | None = None,
) -> Any:
    """The ``columns`` form of a batch: one list of values per feature name (and, ignored,
    per other column of the data: see :func:`build_record_model`)."""
    limit = _within(max_batch_size)

    def column(feature: dict[str, Any]) -> Any:
        return Annotated[
            value_type(feature).column,
            limit,
            Field(min_length=1, title=feature["name"], description=_feature_description(feature)),
        ]

    columns = _typed_dict(
        "Columns",
        {
            **{feature["name"]: column(feature) for feature in features},
            **_ignored_fields(ignored, target, list[Any]),
        },
        "One list of values per feature, every list as long as the batch; the data file's "
        "other columns are ignored.",
        json_schema_extra={"minProperties": 1},
    )
    return Annotated[columns, _dropping(ignored)] if ignored else columns


def build_batch_model(record_model: Any, columns_model: Any, max_batch_size: int) -> Any:
    """The body of ``/predict/batch``: ``{"records": [record, ...]}`` or ``{"columns": {...}}``.

    ``columns`` gives one list of values per feature name (an omitted feature is missing in
    every row), as pandas' ``to_dict("list")`` writes it: the faster form for large batches.
    Size limits are checked before any value is validated and reported as the error type
    :data:`BATCH_TOO_LARGE` (answered with 413, not 422, so it is not in the JSON schema).
    """
    limit = _within(max_batch_size)
    rows = Field(min_length=1, description=f"1 to {max_batch_size} rows (serving.max_batch_size)")
    forms = {
        "records": Annotated[list[record_model], limit, rows],
        "columns": Annotated[columns_model, AfterValidator(_same_lengths)],
    }
    batch = _typed_dict(
        "BatchRequest",
        forms,
        "Either `records` (a list of records) or `columns` (a list of values per feature).",
        json_schema_extra={"oneOf": [{"required": ["records"]}, {"required": ["columns"]}]},
    )
    return Annotated[batch, AfterValidator(_one_form)]


def _one_form(body: dict[str, Any]) -> dict[str, Any]:
    if len(body) != 1:
        raise PydanticCustomError(
            "one_form", "send either `records` or `columns` (exactly one of them)"
        )
    return body


class Prediction(BaseModel):
    """One scored record."""

    prediction: Label = Field(description="Predicted class label, or the predicted value.")
    probabilities: dict[str, float] | None = Field(
        None, description="Probability per class label (classifiers only)."
    )
    out_of_range: list[str] = Field(
        default_factory=list,
        description="Numeric features whose value lies outside the training minimum/maximum.",
    )


class PredictionResponse(Prediction):
    model_name: str
    model_version: str
    request_id: str


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    model_name: str
    model_version: str
    request_id: str


class FieldProblem(BaseModel):
    field: str = Field(description="Where the problem is, e.g. 'records[3].bill_length_mm'.")
    problem: str


class ErrorResponse(BaseModel):
    """Every error answer has this shape."""

    error: str = Field(description="A stable machine-readable code, e.g. 'validation_error'.")
    message: str = Field(description="What went wrong and what to do about it.")
    fields: list[FieldProblem] = Field(default_factory=list)
    request_id: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    # degraded: the fallback model answers because the champion failed (see /ready).
    status: Literal["ready", "degraded", "not_ready"]
    reason: str | None = None
    model_version: str | None = None


class ModelMetadata(BaseModel):
    model_name: str
    model_version: str
    run_id: str | None
    source: str = Field(description="Where the model was loaded from (registry or file).")
    serving_path: str = Field(description="How records reach the model, e.g. 'sklearn'.")
    task: str
    target: str | None
    classes: list[Label] | None
    features: list[dict[str, Any]]
    metrics: dict[str, Any]
    primary_metric: str | None
    trained_at: str | None


class BatchScreen:
    """A faster way through ``/predict/batch`` for the records form: ``(columns, rows)``.

    The exact validator builds and checks one TypedDict per record (~0.25 us per value, 0.75
    ms of a 1,000-record batch). The screen parses the JSON with the same parser, turns the
    records into columns and validates those with the ``Columns`` schema: the same
    annotation per value, checked a list at a time, in about half the time. Python-mode
    strict validation answers as JSON mode does for these annotations, except that a Literal
    of numbers takes ``true`` for 1; a model with such a feature is not screened.

    It returns None for anything it does not accept (the columns form, which the validator
    already takes a list at a time, included); the exact validator then runs and words any
    error, with the record's index in it.
    """

    def __init__(
        self,
        features: list[dict[str, Any]],
        columns_model: Any,
        max_batch_size: int,
        ignored: tuple[str, ...] = (),
    ) -> None:
        self.names = [feature["name"] for feature in features]
        # The data's other columns may come along; only the features' values are taken.
        self.known = frozenset([*self.names, *ignored])
        self.max_rows = max_batch_size
        self.columns: TypeAdapter[dict[str, list[Any]]] = TypeAdapter(columns_model)
        self.usable = not any(
            feature.get("type") == "categorical"
            and any(type(c) is not str for c in feature.get("categories") or [] if c is not None)
            for feature in features
        )

    def __call__(self, body: bytes) -> tuple[dict[str, list[Any]], int] | None:
        if not self.usable or _RECORDS_FORM.match(body) is None:
            return None
        try:
            data = from_json(body)
        except ValueError:
            return None
        if type(data) is not dict or len(data) != 1 or type(data.get("records")) is not list:
            return None
        records = data["records"]
        if not 1 <= len(records) <= self.max_rows:
            return None
        if not all(type(r) is dict and self.known.issuperset(r) for r in records):
            return None
        columns = {name: [record.get(name) for record in records] for name in self.names}
        try:
            return self.columns.validate_python(columns), len(records)
        except ValidationError:
            return None


class RequestBodies:
    """The prediction routes' request bodies, validated once, straight from the JSON bytes.

    pydantic-core parses and validates in one pass and returns plain dicts and lists: no
    ``json.loads``, no model instances, no ``model_dump``. A batch is first offered to the
    :class:`BatchScreen`.
    """

    def __init__(
        self,
        features: list[dict[str, Any]],
        max_batch_size: int,
        example: dict[str, Any] | None = None,
        ignored: list[str] | tuple[str, ...] = (),
        target: str | None = None,
    ) -> None:
        names = {feature["name"] for feature in features}
        ignored = tuple(name for name in ignored if name not in names)
        record_model = build_record_model(features, ignored, target)
        self.record: TypeAdapter[dict[str, Any]] = TypeAdapter(record_model)
        columns_model = build_columns_model(features, max_batch_size, ignored, target)
        self.batch = TypeAdapter(build_batch_model(record_model, columns_model, max_batch_size))
        self.screen = BatchScreen(features, columns_model, max_batch_size, ignored)
        self.examples = self._examples(example)

    def _examples(self, example: dict[str, Any] | None) -> dict[str, Any]:
        """The request bodies of ``example`` (see :func:`request_example`) by component name,
        for the OpenAPI document; none when there is no example or it does not validate."""
        if not example:
            return {}
        try:
            self.record.validate_python(example)
        except ValidationError:
            return {}
        return {"Record": example, "BatchRequest": {"records": [example]}}

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """``Record``, ``Columns`` and ``BatchRequest``, for the OpenAPI document's components."""
        batch = self.batch.json_schema(ref_template=f"{COMPONENTS}{{model}}")
        return {**batch.pop("$defs", {}), "BatchRequest": batch}
