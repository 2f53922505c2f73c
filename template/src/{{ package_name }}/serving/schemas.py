"""The HTTP API's request and response models.

The request models are built at runtime from the model bundle's resolved features, so the
OpenAPI document at ``/docs`` always shows the exact fields and types the served model takes.
A record is one flat JSON object of feature values keyed by the feature's own name (any string,
spaces and unicode included). Every feature is optional: ``null`` or an omitted key means
"missing" and is handled by the model's imputers, as in training. Validation is strict: numbers
must be JSON numbers, booleans JSON booleans, and NaN or infinity are rejected (send ``null``
for a missing value) so that a client bug is reported instead of silently imputed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    create_model,
)
from pydantic_core import PydanticCustomError

Label = str | int | float | bool
# The validation error type of a batch over serving.max_batch_size.
BATCH_TOO_LARGE = "batch_too_large"
PLAUSIBLE_FACTOR = 1e6


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


def build_record_model(features: list[dict[str, Any]]) -> type[BaseModel]:
    """One request record: a field per feature, aliased to the feature's real name."""
    fields: dict[str, Any] = {}
    for index, feature in enumerate(features):
        # Python attribute names are positional because feature names can be any string.
        fields[f"feature_{index}"] = (
            _feature_annotation(feature) | None,
            Field(
                None,
                alias=feature["name"],
                title=feature["name"],
                description=_feature_description(feature),
            ),
        )
    return create_model(
        "Record",
        __config__=ConfigDict(extra="forbid", strict=True, populate_by_name=False),
        __doc__="Feature values of one row; unknown keys are rejected.",
        **fields,
    )


def build_batch_model(record_model: type[BaseModel], max_batch_size: int) -> type[BaseModel]:
    """The body of ``/predict/batch``: ``{"records": [record, ...]}``.

    The size limit is checked before any record is validated and reported as the error type
    :data:`BATCH_TOO_LARGE` (answered with 413, not 422, so it is not in the JSON schema).
    """

    def within_limit(records: Any) -> Any:
        if isinstance(records, list) and len(records) > max_batch_size:
            raise PydanticCustomError(
                BATCH_TOO_LARGE,
                "{count} records is more than the {limit} a batch takes",
                {"count": len(records), "limit": max_batch_size},
            )
        return records

    return create_model(
        "BatchRequest",
        __config__=ConfigDict(extra="forbid", strict=True),
        records=(
            Annotated[list[record_model], BeforeValidator(within_limit)],
            Field(
                min_length=1,
                description=f"1 to {max_batch_size} records (serving.max_batch_size); "
                "larger batches are answered with 413.",
            ),
        ),
    )


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
