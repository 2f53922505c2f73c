"""The HTTP API's request and response models.

The request bodies (:class:`RequestBodies`) are built at runtime from the model bundle's
resolved features, so the OpenAPI document at ``/docs`` always shows the exact fields and types
the served model takes. A record is one flat JSON object of feature values keyed by the
feature's own name (any string, spaces and unicode included); a batch is a list of records or,
faster, one list of values per feature. Every feature is optional: ``null`` or an omitted key
means "missing" and is handled by the model's imputers, as in training. Validation is strict:
numbers must be JSON numbers, booleans JSON booleans, and NaN or infinity are rejected (send
``null`` for a missing value) so that a client bug is reported instead of silently imputed.

Responses are serialised by the routes themselves (see ``app.py``) in the shape of the models
here, which document them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic_core import PydanticCustomError, from_json
from typing_extensions import TypedDict

Label = str | int | float | bool
# The validation error type of a batch over serving.max_batch_size.
BATCH_TOO_LARGE = "batch_too_large"
PLAUSIBLE_FACTOR = 1e6
COMPONENTS = "#/components/schemas/"
# How a body of the records form begins: others are not parsed twice (see BatchScreen).
_RECORDS_FORM = re.compile(rb'\s*\{\s*"records"\s*:')


def _iso_datetime(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"'{value}' is not an ISO 8601 date/time; send e.g. '2024-05-01T13:45:00'"
        ) from None
    return value


def plausible_bound(feature: dict[str, Any]) -> float | None:
    """The largest magnitude accepted for a numeric feature, or None without a training range.

    Values outside the training range are served (and flagged); values a million times beyond
    its largest magnitude are unit or encoding errors that would overflow the model's arithmetic.
    """
    low, high = feature.get("min"), feature.get("max")
    if low is None or high is None:
        return None
    return max(abs(low), abs(high), 1.0) * PLAUSIBLE_FACTOR


def _feature_annotation(feature: dict[str, Any]) -> Any:
    kind = feature.get("type", "numeric")
    categories = [c for c in feature.get("categories") or [] if c is not None]
    if kind == "numeric":
        bound = plausible_bound(feature)
        return FiniteFloat if bound is None else Annotated[FiniteFloat, Field(ge=-bound, le=bound)]
    if kind == "boolean":
        return bool
    if kind == "datetime":
        return Annotated[str, AfterValidator(_iso_datetime)]
    if kind == "categorical" and categories:
        return Literal[tuple(categories)]
    return str


def _feature_description(feature: dict[str, Any]) -> str:
    kind = feature.get("type", "numeric")
    parts = [kind]
    if feature.get("min") is not None and feature.get("max") is not None:
        parts.append(
            f"training range [{feature['min']}, {feature['max']}] "
            "(values outside are accepted and flagged in out_of_range)"
        )
    if kind == "datetime":
        parts.append("ISO 8601 string")
    parts.append("null or omitted means missing")
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


def build_record_model(features: list[dict[str, Any]]) -> type:
    """One request record: a key per feature, named by the feature's real name."""
    fields = {
        feature["name"]: Annotated[
            _feature_annotation(feature) | None,
            Field(title=feature["name"], description=_feature_description(feature)),
        ]
        for feature in features
    }
    return _typed_dict("Record", fields, "Feature values of one row; unknown keys are rejected.")


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


def build_columns_model(features: list[dict[str, Any]], max_batch_size: int) -> type:
    """The ``columns`` form of a batch: one list of values per feature name."""
    limit = _within(max_batch_size)

    def column(feature: dict[str, Any]) -> Any:
        value: Any = _feature_annotation(feature) | None
        return Annotated[
            list[value],
            limit,
            Field(min_length=1, title=feature["name"], description=_feature_description(feature)),
        ]

    return _typed_dict(
        "Columns",
        {feature["name"]: column(feature) for feature in features},
        "One list of values per feature, every list as long as the batch.",
        json_schema_extra={"minProperties": 1},
    )


def build_batch_model(record_model: Any, columns_model: type, max_batch_size: int) -> Any:
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
        self, features: list[dict[str, Any]], columns_model: type, max_batch_size: int
    ) -> None:
        self.names = [feature["name"] for feature in features]
        self.known = frozenset(self.names)
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

    def __init__(self, features: list[dict[str, Any]], max_batch_size: int) -> None:
        record_model = build_record_model(features)
        self.record: TypeAdapter[dict[str, Any]] = TypeAdapter(record_model)
        columns_model = build_columns_model(features, max_batch_size)
        self.batch = TypeAdapter(build_batch_model(record_model, columns_model, max_batch_size))
        self.screen = BatchScreen(features, columns_model, max_batch_size)

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """``Record``, ``Columns`` and ``BatchRequest``, for the OpenAPI document's components."""
        batch = self.batch.json_schema(ref_template=f"{COMPONENTS}{{model}}")
        return {**batch.pop("$defs", {}), "BatchRequest": batch}
