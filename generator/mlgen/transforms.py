"""*Transforms*: the feature transforms a plan proposes, checked without running anything.

The runtime defines the spec (``mlgen_runtime/transforms.py``: kinds such as ratio, log1p,
quantile bins, date parts, group statistics, each with a reason) and ships its JSON Schema
beside it, ``transforms.schema.json``. mlgen never imports the runtime: it validates a plan's
transforms with that schema, then checks them against the plan, using what the schema says of
each kind: the fields that name columns and the feature types they accept (``x-column-types``),
and the columns a transform adds (``x-outputs``). A transform is data: its strings are names
and reasons, never evaluated.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from mlgen.errors import quoted
from mlgen.template import template_root

SCHEMA_FILE = Path("runtime") / "src" / "mlgen_runtime" / "transforms.schema.json"
COLUMN_TYPES = "x-column-types"
OUTPUTS = "x-outputs"
@functools.cache
def spec_schema() -> dict[str, Any]:
    """The runtime's JSON Schema of a service's ``transforms`` (``version`` and ``steps``)."""
    return json.loads((template_root() / SCHEMA_FILE).read_text(encoding="utf-8"))


@functools.cache
def kinds() -> dict[str, str]:
    """Each transform kind -> the name of its definition in the schema's ``$defs``."""
    mapping = spec_schema()["properties"]["steps"]["items"]["discriminator"]["mapping"]
    return {kind: ref.rsplit("/", 1)[-1] for kind, ref in mapping.items()}


def max_transforms() -> int:
    return int(spec_schema()["properties"]["steps"]["maxItems"])


def spec_version() -> int:
    return int(spec_schema()["properties"]["version"]["const"])


def definition(kind: str) -> dict[str, Any]:
    return spec_schema()["$defs"][kinds()[kind]]


@functools.cache
def _validator(kind: str) -> Draft202012Validator:
    schema = {"$defs": spec_schema()["$defs"], "$ref": f"#/$defs/{kinds()[kind]}"}
    return Draft202012Validator(schema)


def schema_problems(steps: Any) -> list[str]:
    """What makes ``steps`` (a plan's ``feature_transforms``) invalid under the spec's schema."""
    if not isinstance(steps, list):
        return ["feature_transforms must be a list of transforms"]
    if len(steps) > max_transforms():
        return [f"feature_transforms lists {len(steps)} transforms; at most {max_transforms()}"]
    problems = []
    for index, step in enumerate(steps):
        where = f"feature_transforms[{index}]"
        if not isinstance(step, dict):
            problems.append(f"{where} must be an object with kind, name, reason and its fields")
            continue
        kind = step.get("kind")
        if not isinstance(kind, str) or kind not in kinds():
            problems.append(f"{where}: kind {quoted(kind)} is not one of {', '.join(kinds())}")
            continue
        for error in sorted(_validator(kind).iter_errors(step), key=lambda e: list(e.path)):
            field = "".join(f".{part}" for part in error.path)
            problems.append(f"{where}{field}: {_message(error)}")
        if any(isinstance(v, float) and not math.isfinite(v) for v in _numbers(step)):
            problems.append(f"{where}: numbers must be finite")
    return problems


# What a failed schema keyword says about the value, which is quoted (shortened) before it.
EXPECTED = {
    "pattern": "must match {}",
    "maxLength": "is longer than {} characters",
    "minLength": "is shorter than {} characters",
    "type": "must be of type {}",
    "const": "must be {}",
    "enum": "must be one of {}",
    "maximum": "is greater than the maximum of {}",
    "minimum": "is less than the minimum of {}",
    "exclusiveMinimum": "must be greater than {}",
    "maxItems": "is too long: at most {} items",
    "minItems": "is too short: at least {} items",
}


def _message(error: Any) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return "unknown field(s) " + ", ".join(quoted(name) for name in extra)
    if error.validator == "required":
        return error.message
    template = EXPECTED.get(error.validator, "is not valid ({})")
    expected = error.validator_value
    shown = ", ".join(map(str, expected)) if isinstance(expected, list) else expected
    return f"{quoted(error.instance)} {template.format(shown)}"


def _numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return [value] if isinstance(value, float) else []


def inputs(step: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(column, the feature types the kind accepts there) for each column ``step`` reads."""
    found = []
    for field, prop in definition(step["kind"])["properties"].items():
        if COLUMN_TYPES in prop and field in step:
            value = step[field]
            names = [value] if isinstance(value, str) else list(value)
            found += [(name, prop[COLUMN_TYPES]) for name in names]
    return found


def outputs(step: Mapping[str, Any]) -> list[str]:
    """The columns ``step`` adds, named as the runtime names them."""
    return [
        pattern.format(name=step["name"], token=token)
        for pattern in definition(step["kind"])[OUTPUTS]
        for token in (step.get("tokens") or [] if "{token}" in pattern else [""])
    ]


def plan_problems(
    steps: Sequence[Mapping[str, Any]], features: Mapping[str, str]
) -> list[str]:
    """Ways schema-valid ``steps`` misfit the plan's ``features`` (name -> type).

    A transform reads features only (what a request carries), of a type its kind accepts, and
    adds columns no feature and no other transform has.
    """
    problems = []
    added: list[str] = []
    for step in steps:
        label = f"transform {quoted(step['name'])} ({step['kind']})"
        for column, types in inputs(step):
            if column not in features:
                problems.append(
                    f"{label} reads {quoted(column)}, which is not in features: a transform "
                    "reads features only, so list the column in features (or drop the transform)"
                )
            elif features[column] not in types:
                problems.append(
                    f"{label} needs {quoted(column)} to be {' or '.join(types)}, but features "
                    f"give it type {features[column]}"
                )
        for name in outputs(step):
            if name in features or name in added:
                problems.append(f"{label} adds the column {quoted(name)}, which already exists")
            added.append(name)
    return problems


def describe(step: Mapping[str, Any]) -> str:
    """A transform's parameters as one line, e.g. ``numerator=a, denominator=b``."""
    shown = {k: v for k, v in step.items() if k not in ("kind", "name", "reason")}
    return ", ".join(
        f"{key}={', '.join(map(str, value)) if isinstance(value, list) else value}"
        for key, value in shown.items()
    )
