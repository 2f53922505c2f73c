"""*Feature transforms*: problem-specific feature engineering written as data, not code.

A service's ``config.yaml`` lists them under ``transforms`` (:class:`TransformSpec`, version
:data:`SPEC_VERSION`): each one names a new column, takes one of a fixed set of kinds (ratio,
log1p, quantile bins, date parts, group statistics, ...) over the service's raw features, and
says why it helps. A planner (the LLM or mlgen's heuristics) proposes them, a person reads them in
``docs/PLAN.md`` and ``config.yaml``; nothing in them is ever evaluated as code.

This module is the one definition of the spec. mlgen, which never imports the runtime, reads its
JSON Schema from ``transforms.schema.json`` beside this file, written by
``python -m mlgen_runtime.transforms`` and checked equal to :func:`json_schema` by the tests. The
schema carries what mlgen needs to check a plan against its data: which fields name columns and
which feature types each accepts (``x-column-types``), and the columns a transform adds
(``x-outputs``, ``x-output-type``).

:class:`FeatureTransforms` is the pipeline step (between the user's ``custom_features`` and
``prepare_frame``): fitted on the training split only (quantile edges, group statistics), it adds
the new columns to a frame. Its :meth:`~FeatureTransforms.derive` works on plain column arrays:
the fast serving path applies the same fitted transforms to validated request rows, and drift
monitoring to request windows and data files (:func:`compile_fitted`), through the same code.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.base import BaseEstimator, TransformerMixin

from .errors import ConfigError
from .values import is_missing, numbers, texts, timestamps

SPEC_VERSION: Literal[1] = 1
MAX_TRANSFORMS = 50
MAX_BINS = 20
MAX_TOKENS = 20
# Group statistics: groups with fewer training rows get the overall statistic (a mean of two
# rows is noise), and only the most frequent groups are kept (an id-like key cannot grow the
# model without bound).
MIN_GROUP_ROWS = 5
MAX_GROUPS = 1000
COLUMN_TYPES = "x-column-types"
OUTPUTS = "x-outputs"
OUTPUT_TYPE = "x-output-type"
ALL_TYPES = ("numeric", "categorical", "boolean", "datetime", "text")
OutputType = Literal["numeric", "categorical"]
# Period of each cyclical date part, and the part's value at the start of its cycle.
CYCLES = {"month": (12, 1), "day_of_week": (7, 0), "day_of_year": (366, 1), "hour": (24, 0),
          "minute": (60, 0)}
DATE_PARTS: dict[str, Callable[[datetime], float]] = {
    "year": lambda s: s.year,
    "quarter": lambda s: (s.month - 1) // 3 + 1,
    "month": lambda s: s.month,
    "day": lambda s: s.day,
    "day_of_week": lambda s: s.weekday(),
    "day_of_year": lambda s: s.timetuple().tm_yday,
    "week_of_year": lambda s: s.isocalendar()[1],
    "hour": lambda s: s.hour,
    "minute": lambda s: s.minute,
    "is_weekend": lambda s: float(s.weekday() >= 5),
}
_TOKEN_WORDS = re.compile(r"[a-z0-9]+")

Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=48,
        pattern=r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$",
        description="The new column's name: a letter, then letters, digits and single "
        "underscores (at most 48 characters); it must not be a column of the data",
    ),
]
Reason = Annotated[
    str,
    Field(min_length=1, max_length=300, description="Why this feature helps, in one sentence"),
]
Number = Annotated[float, Field(allow_inf_nan=False)]
Token = Annotated[str, Field(pattern=r"^[a-z0-9]{1,30}$", description="A lowercase word")]


def column_field(description: str, *types: str) -> Any:
    """A field naming one raw feature column of the given feature types."""
    return Field(min_length=1, max_length=200, description=description,
                 json_schema_extra={COLUMN_TYPES: list(types)})


Array = np.ndarray
Derived = dict[str, Any]  # column name -> float64 array (numeric) or list of str | None


class Source:
    """Raw feature columns by name, read once per form (numbers, texts, timestamps).

    ``get(name)`` returns a column's values (a list, an array or a Series), or None when the
    column is absent, which reads as missing in every row.
    """

    def __init__(self, get: Callable[[str], Any], length: int) -> None:
        self._get, self.length = get, length
        self._cache: dict[tuple[str, str], Any] = {}

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> Source:
        return cls(lambda name: frame[name] if name in frame.columns else None, len(frame))

    @classmethod
    def of_columns(cls, columns: Mapping[str, Any], length: int) -> Source:
        return cls(columns.get, length)

    def raw(self, name: str) -> Sequence[Any] | Array:
        values = self._get(name)
        if values is None:
            return [None] * self.length
        return values.to_numpy() if isinstance(values, pd.Series) else values

    def _read(self, form: str, name: str, convert: Callable[[Any], Any]) -> Any:
        key = (form, name)
        if key not in self._cache:
            self._cache[key] = convert(self.raw(name))
        return self._cache[key]

    def numbers(self, name: str) -> Array:
        return self._read("numbers", name, numbers)

    def texts(self, name: str) -> list[str | None]:
        return self._read("texts", name, texts)

    def timestamps(self, name: str) -> list[datetime | None]:
        return self._read("timestamps", name, timestamps)


def _finite(values: Array) -> Array:
    """Infinities (a division by zero, an overflow) become missing values."""
    return np.where(np.isfinite(values), values, np.nan)


def _stamp_values(stamps: list[datetime | None], read: Callable[[datetime], float]) -> Array:
    return np.array([math.nan if s is None else float(read(s)) for s in stamps], dtype=float)


def _schema_extra(schema: dict[str, Any], model: type) -> None:
    # What mlgen needs to know about a kind's added columns without importing this module.
    schema[OUTPUTS] = list(getattr(model, "added", ()))
    schema[OUTPUT_TYPE] = getattr(model, "output_type", "numeric")


class _Transform(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_schema_extra)
    # The columns a transform adds ({name}, and {token} once per token) and their type.
    added: ClassVar[tuple[str, ...]] = ("{name}",)
    output_type: ClassVar[OutputType] = "numeric"

    kind: str
    name: Name
    reason: Reason

    def inputs(self) -> list[tuple[str, tuple[str, ...]]]:
        """(column, the feature types it may have) for every column this transform reads."""
        found: list[tuple[str, tuple[str, ...]]] = []
        for field, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and isinstance(extra.get(COLUMN_TYPES), list):
                value = getattr(self, field)
                types = tuple(str(kind) for kind in extra[COLUMN_TYPES])  # type: ignore[union-attr]
                found += [(name, types) for name in ([value] if isinstance(value, str) else value)]
        return found

    def outputs(self) -> list[str]:
        tokens = getattr(self, "tokens", ())
        return [
            pattern.format(name=self.name, token=token)
            for pattern in self.added
            for token in (tokens if "{token}" in pattern else [""])
        ]

    def fit(self, source: Source) -> dict[str, Any]:
        """What this transform learns from the training split (JSON values); most learn nothing."""
        return {}

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        raise NotImplementedError


class Ratio(_Transform):
    """numerator / denominator; missing where the denominator is 0."""

    kind: Literal["ratio"]
    numerator: str = column_field("Numeric column divided", "numeric")
    denominator: str = column_field("Numeric column dividing", "numeric")

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        with np.errstate(all="ignore"):
            values = source.numbers(self.numerator) / source.numbers(self.denominator)
        return {self.name: _finite(values)}


class Difference(_Transform):
    """left - right."""

    kind: Literal["difference"]
    left: str = column_field("Numeric column", "numeric")
    right: str = column_field("Numeric column subtracted", "numeric")

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        with np.errstate(all="ignore"):
            return {self.name: _finite(source.numbers(self.left) - source.numbers(self.right))}


class Product(_Transform):
    """left * right: a numeric interaction."""

    kind: Literal["product"]
    left: str = column_field("Numeric column", "numeric")
    right: str = column_field("Numeric column", "numeric")

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        with np.errstate(all="ignore"):
            return {self.name: _finite(source.numbers(self.left) * source.numbers(self.right))}


class Log1p(_Transform):
    """log(1 + x) of a non-negative amount; negative values are missing."""

    kind: Literal["log1p"]
    column: str = column_field("Numeric column, non-negative (amounts, counts)", "numeric")

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        values = source.numbers(self.column)
        with np.errstate(all="ignore"):
            logged = np.log1p(np.where(values >= 0, values, np.nan))
        return {self.name: _finite(logged)}


class Clip(_Transform):
    """The value limited to [lower, upper] (either bound may be left out)."""

    kind: Literal["clip"]
    column: str = column_field("Numeric column", "numeric")
    lower: Number | None = Field(default=None, description="Smallest value kept (null: none)")
    upper: Number | None = Field(default=None, description="Largest value kept (null: none)")

    @model_validator(mode="after")
    def _bounds(self) -> Clip:
        if self.lower is None and self.upper is None:
            raise ValueError("clip needs lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(f"clip's lower ({self.lower}) must be below upper ({self.upper})")
        return self

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        low = -np.inf if self.lower is None else self.lower
        high = np.inf if self.upper is None else self.upper
        return {self.name: _finite(np.clip(source.numbers(self.column), low, high))}


class QuantileBins(_Transform):
    """The number of the quantile bin the value falls in (0 = lowest), bin edges fitted on
    the training split."""

    kind: Literal["quantile_bins"]
    column: str = column_field("Numeric column", "numeric")
    bins: int = Field(ge=2, le=MAX_BINS, description="Number of equal-frequency bins")

    def fit(self, source: Source) -> dict[str, Any]:
        values = source.numbers(self.column)
        present = values[np.isfinite(values)]
        if len(present) == 0:
            return {"edges": []}
        inner = np.linspace(0, 1, self.bins + 1)[1:-1]
        return {"edges": np.unique(np.quantile(present, inner)).tolist()}

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        values = source.numbers(self.column)
        bins = np.searchsorted(np.asarray(state["edges"], dtype=float), values, side="right")
        return {self.name: np.where(np.isfinite(values), bins.astype(float), np.nan)}


class DatePart(_Transform):
    """A part of a date as a number (the service already adds year, month, day_of_week and
    hour of every datetime feature)."""

    kind: Literal["date_part"]
    column: str = column_field("Datetime column", "datetime")
    part: Literal[
        "year", "quarter", "month", "day", "day_of_week", "day_of_year", "week_of_year", "hour",
        "minute", "is_weekend",
    ] = Field(description="day_of_week: Monday is 0; is_weekend: 1 on Saturday and Sunday")

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        return {self.name: _stamp_values(source.timestamps(self.column), DATE_PARTS[self.part])}


def _sin_cos(name: str, turns: Array) -> Derived:
    angle = 2 * np.pi * turns
    return {f"{name}_sin": np.sin(angle), f"{name}_cos": np.cos(angle)}


class Cyclical(_Transform):
    """A date part on a circle (sine and cosine): December sits next to January, 23:00 next to
    midnight."""

    added: ClassVar[tuple[str, ...]] = ("{name}_sin", "{name}_cos")
    kind: Literal["cyclical"]
    column: str = column_field("Datetime column", "datetime")
    part: Literal["month", "day_of_week", "day_of_year", "hour", "minute"]

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        period, start = CYCLES[self.part]
        values = _stamp_values(source.timestamps(self.column), DATE_PARTS[self.part])
        return _sin_cos(self.name, (values - start) / period)


class Periodic(_Transform):
    """A number with a period on a circle (sine and cosine), e.g. an hour of 0-23 (period 24)."""

    added: ClassVar[tuple[str, ...]] = ("{name}_sin", "{name}_cos")
    kind: Literal["periodic"]
    column: str = column_field("Numeric column", "numeric")
    period: Number = Field(gt=0, description="The length of one cycle in the column's units")

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        values = _finite(source.numbers(self.column))
        return _sin_cos(self.name, values / self.period)


class StringLength(_Transform):
    """The number of characters of a text or category value."""

    kind: Literal["string_length"]
    column: str = column_field("Text or categorical column", "text", "categorical")

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        lengths = [math.nan if text is None else float(len(text)) for text in source.texts(
            self.column)]
        return {self.name: np.array(lengths, dtype=float)}


class TokenFlags(_Transform):
    """One 0/1 column per listed word: whether the value contains it (case-insensitive,
    whole words)."""

    added: ClassVar[tuple[str, ...]] = ("{name}_{token}",)
    kind: Literal["token_flags"]
    column: str = column_field("Text or categorical column", "text", "categorical")
    tokens: list[Token] = Field(min_length=1, max_length=MAX_TOKENS,
                                description="The words to flag, lowercase letters and digits")

    @model_validator(mode="after")
    def _distinct(self) -> TokenFlags:
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("token_flags lists a token twice")
        return self

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        words = [None if text is None else set(_TOKEN_WORDS.findall(text.lower()))
                 for text in source.texts(self.column)]
        return {
            f"{self.name}_{token}": np.array(
                [math.nan if found is None else float(token in found) for found in words],
                dtype=float,
            )
            for token in self.tokens
        }


class MissingCount(_Transform):
    """How many of the listed columns are missing in the row."""

    kind: Literal["missing_count"]
    columns: list[str] = Field(
        min_length=2, max_length=100, description="Columns of any type",
        json_schema_extra={COLUMN_TYPES: list(ALL_TYPES)},
    )

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        counts = np.zeros(source.length)
        for name in dict.fromkeys(self.columns):
            counts += np.fromiter(map(is_missing, source.raw(name)), dtype=bool,
                                  count=source.length)
        return {self.name: counts}


class GroupStat(_Transform):
    """A statistic of a numeric column within the row's category (e.g. the mean price per
    district), fitted on the training split; rare and unseen categories get the overall
    statistic, count gets 0."""

    kind: Literal["group_stat"]
    column: str = column_field("Numeric column summarised", "numeric")
    by: str = column_field("Categorical column holding the groups", "categorical")
    stat: Literal["mean", "median", "min", "max", "std", "count"]

    def fit(self, source: Source) -> dict[str, Any]:
        frame = pd.DataFrame({"key": source.texts(self.by), "value": source.numbers(self.column)})
        present = frame.dropna()
        groups = present.groupby("key")["value"]
        sizes = groups.size()
        default: float | None
        if self.stat == "count":
            table, default = sizes.astype(float), 0.0
        else:
            table = groups.agg(self.stat)[sizes >= MIN_GROUP_ROWS]
            overall = present["value"].agg(self.stat) if len(present) else math.nan
            default = None if pd.isna(overall) else float(overall)
        kept = sorted(table.index, key=lambda key: (-sizes[key], key))[:MAX_GROUPS]
        return {
            "table": {str(key): float(table[key]) for key in kept if not pd.isna(table[key])},
            "default": default,
        }

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        table = state["table"]
        default = math.nan if state["default"] is None else state["default"]
        values = [default if key is None else table.get(key, default)
                  for key in source.texts(self.by)]
        return {self.name: np.array(values, dtype=float)}


class Interaction(_Transform):
    """The pair of two categories as one category ("a|b"): a categorical interaction."""

    output_type: ClassVar[OutputType] = "categorical"
    kind: Literal["interaction"]
    left: str = column_field("Categorical column", "categorical")
    right: str = column_field("Categorical column", "categorical")

    def compute(self, source: Source, state: Mapping[str, Any]) -> Derived:
        pairs = zip(source.texts(self.left), source.texts(self.right), strict=True)
        return {self.name: [None if a is None or b is None else f"{a}|{b}" for a, b in pairs]}


Transform = Annotated[
    Ratio | Difference | Product | Log1p | Clip | QuantileBins | DatePart | Cyclical | Periodic
    | StringLength | TokenFlags | MissingCount | GroupStat | Interaction,
    Field(discriminator="kind"),
]


class TransformSpec(BaseModel):
    """Feature transforms of a service (``config.yaml``: ``transforms``), spec version 1:
    derived columns computed from the raw features inside the model pipeline, each with the
    reason it was added."""

    model_config = ConfigDict(extra="forbid", title="mlgen feature transforms")

    version: Literal[1] = Field(default=SPEC_VERSION, description="The spec's version")
    steps: list[Transform] = Field(default_factory=list, max_length=MAX_TRANSFORMS,
                                   description="The transforms, applied in order")

    @model_validator(mode="after")
    def _distinct_outputs(self) -> TransformSpec:
        names = [name for step in self.steps for name in step.outputs()]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"transforms add the column(s) {', '.join(twice)} more than once")
        return self

    def outputs(self) -> list[tuple[str, OutputType]]:
        """Every added column, in order, with its feature type."""
        return [(name, step.output_type) for step in self.steps for name in step.outputs()]


def json_schema() -> dict[str, Any]:
    """The spec's JSON Schema, as ``transforms.schema.json`` holds it for mlgen."""
    return {"$id": f"mlgen-feature-transforms-v{SPEC_VERSION}",
            **TransformSpec.model_json_schema()}


def check_inputs(
    spec: TransformSpec, features: Sequence[Mapping[str, Any]], taken: Sequence[str] = ()
) -> None:
    """Raise :class:`ConfigError` unless every transform reads raw ``features`` of a fitting
    type and adds columns that neither a feature nor ``taken`` has."""
    types = {feature["name"]: feature["type"] for feature in features}
    problems = []
    for step in spec.steps:
        for name, allowed in step.inputs():
            if name not in types:
                problems.append(f"{step.name!r} ({step.kind}) reads {name!r}, which is not a "
                                "feature of this service")
            elif types[name] not in allowed:
                problems.append(f"{step.name!r} ({step.kind}) needs {name!r} to be "
                                f"{' or '.join(allowed)}, but it is {types[name]}")
        clashes = [name for name in step.outputs() if name in types or name in taken]
        if clashes:
            problems.append(f"{step.name!r} ({step.kind}) would replace the column(s) "
                            f"{', '.join(clashes)}")
    if problems:
        raise ConfigError(
            "Invalid transforms in configs/config.yaml: " + "; ".join(problems) + ". Fix the "
            "transform (configs/local.yaml can replace the list) or the features."
        )


Steps = list[tuple[_Transform, dict[str, Any]]]


class Fitted:
    """Fitted transforms as one function: a :class:`Source` of raw columns -> added columns."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    @property
    def inputs(self) -> list[str]:
        """The raw columns the transforms read."""
        return list(dict.fromkeys(name for step, _ in self.steps for name, _ in step.inputs()))

    def __call__(self, source: Source) -> Derived:
        derived: Derived = {}
        for step, state in self.steps:
            derived.update(step.compute(source, state))
        return derived

    def columns(self, columns: Mapping[str, Any], length: int) -> Derived:
        """The added columns from raw ``columns`` (name -> values; absent names are missing)."""
        return self(Source.of_columns(columns, length))


def compile_fitted(fitted: Mapping[str, Any]) -> Fitted:
    """The fitted transforms :meth:`FeatureTransforms.fitted_spec` saved, ready to apply."""
    spec = TransformSpec(version=fitted["version"], steps=[s["spec"] for s in fitted["steps"]])
    states = [step["state"] for step in fitted["steps"]]
    return Fitted(list(zip(spec.steps, states, strict=True)))


class FeatureTransforms(TransformerMixin, BaseEstimator):
    """The pipeline step: adds the columns of the transforms in ``spec`` (a list of dicts as in
    ``config.yaml``) to a frame of raw features. Fitted on the training split only."""

    def __init__(self, spec: list[dict[str, Any]] | None = None) -> None:
        self.spec = spec

    @cached_property
    def parsed(self) -> TransformSpec:
        return TransformSpec(steps=self.spec or [])

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeatureTransforms:
        source = Source.of_frame(X)
        self.fitted_ = Fitted([(step, step.fit(source)) for step in self.parsed.steps])
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        derived = self.derive(Source.of_frame(X))
        if not derived:
            return X
        return pd.concat([X, pd.DataFrame(derived, index=X.index)], axis=1)

    def derive(self, source: Source) -> Derived:
        """The added columns, from any :class:`Source` (a frame, request rows, a window)."""
        return self.fitted_(source)

    def output_names(self) -> list[str]:
        return [name for name, _ in self.parsed.outputs()]

    def fitted_spec(self) -> dict[str, Any]:
        """The fitted transforms as JSON (kept in the drift reference; see compile_fitted)."""
        return {
            "version": SPEC_VERSION,
            "steps": [{"spec": step.model_dump(mode="json"), "state": state}
                      for step, state in self.fitted_.steps],
        }


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=1))
