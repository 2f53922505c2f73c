"""The *features*: which columns a model reads, and the sklearn Pipeline that encodes them.

A resolved feature is a dict, the unit of ``metadata.json``'s feature list::

    {"name": ..., "type": "numeric", "encoding": "scale", "categories": None,
     "min": 1.0, "max": 9.0, "missing_rate": 0.0}

The preprocessing is one Pipeline (user features -> feature transforms -> typed frame ->
ColumnTransformer) that is fitted on the training split and travels with the model, so serving
never re-implements it. Every step accepts null in every column: a request may leave out any
value.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    TargetEncoder,
)

from .config import Config, FeatureType
from .errors import ConfigError
from .monitoring.drift import FALSE_WORDS, TRUE_WORDS
from .transforms import FeatureTransforms, Source, TransformSpec, check_inputs
from .values import category_text

log = logging.getLogger(__name__)

# At most this many distinct values get one-hot/ordinal codes; more are target-encoded.
LOW_CARDINALITY = 30
# Categories seen fewer times than this in training share one "infrequent" one-hot column.
MIN_CATEGORY_COUNT = 5
ID_UNIQUE_RATIO = 0.95
TEXT_MIN_MEAN_LENGTH = 30
DATETIME_PARTS = ("year", "month", "day_of_week", "hour")
# Names of identifier and row-number columns (e.g. R's "rownames", pandas' "Unnamed: 0").
_ID_NAME = re.compile(
    r"((^|[_\W])(id|uuid|key|index)$)|^(row_?names?|unnamed: ?\d+)$", re.IGNORECASE
)
# Type inference on strings looks at this many values: enough to tell, fast on large files.
INFERENCE_SAMPLE_ROWS = 1000


def resolve_features(df: pd.DataFrame, config: Config) -> list[dict[str, Any]]:
    """The raw features a request carries: the configured list, or inferred from ``df``.

    ``df`` should be the training split: categories, ranges and missing rates come from it.
    """
    if config.features:
        specs = [(spec.name, spec.type, spec.encoding) for spec in config.features]
    else:
        excluded = {
            config.data.target,
            config.data.id_column,
            config.data.time_column,
            config.data.group_column,
            *config.data.exclude_columns,
        }
        specs = [
            (str(name), kind, "auto")
            for name in df.columns
            if name not in excluded and (kind := infer_type(df[name])) is not None
        ]
    features = []
    for name, kind, encoding in specs:
        if kind == "text" and encoding == "auto":
            log.info("Text column %r is not used: give it an encoding to include it.", name)
            continue
        features.append(describe(df[name], kind, encoding, config.model.family))
    if not features:
        raise ConfigError(
            "No usable feature columns: every column is the target, excluded, constant or "
            "id-like. List features explicitly in configs/local.yaml."
        )
    return features


def known_categories(features: list[dict[str, Any]], data: pd.DataFrame) -> list[dict[str, Any]]:
    """``features`` with each listed category set widened to the values of ``data``.

    The list comes from the training split; ``data`` is the whole labelled file. A category
    in the data but only in its validation or test rows (a rare one) is a value of the user's
    own data, so the API must take it: the model encodes it as unseen, as it would any
    category its training rows lacked.
    """
    widened = []
    for feature in features:
        listed = feature.get("categories")
        if listed is not None and feature["name"] in data.columns:
            present = set(as_category(data[feature["name"]]).dropna().tolist())
            if not present <= set(listed):
                feature = {**feature, "categories": sorted(set(listed) | present)}
        widened.append(feature)
    return widened


def derive_features(
    raw: pd.DataFrame, features: list[dict[str, Any]], config: Config
) -> list[dict[str, Any]]:
    """The features ``custom_features.add_features`` adds to the raw training columns."""
    names = [feature["name"] for feature in features]
    added = apply_custom_features(raw[names], custom_features_module(config))
    return [
        describe(added[name], kind, "auto", config.model.family)
        for name in added.columns
        if name not in names and (kind := infer_type(added[name])) not in (None, "text")
    ]


def transform_features(
    raw: pd.DataFrame,
    features: list[dict[str, Any]],
    derived: list[dict[str, Any]],
    config: Config,
) -> list[dict[str, Any]]:
    """The features ``config.transforms`` adds, described on the raw training columns.

    Transforms read raw features only (what a request carries), so serving and drift can
    compute them from request rows; their columns must not replace a feature or a column
    ``custom_features`` adds. Each described column names its transform's kind.
    """
    spec = config.transforms
    if not spec.steps:
        return []
    check_inputs(spec, features, taken=[feature["name"] for feature in derived])
    step = FeatureTransforms(spec_dicts(spec)).fit(raw)
    added = step.derive(Source.of_frame(raw))
    kinds = {name: transform.kind for transform in spec.steps for name in transform.outputs()}
    return [
        describe(pd.Series(added[name], index=raw.index, name=name), kind, "auto",
                 config.model.family) | {"transform": kinds[name]}
        for name, kind in spec.outputs()
    ]


def spec_dicts(spec: TransformSpec) -> list[dict[str, Any]]:
    """The transforms as the pipeline step keeps them: plain dicts, as in config.yaml."""
    return [step.model_dump(mode="json") for step in spec.steps]


def infer_type(series: pd.Series) -> FeatureType | None:
    """The feature type of a column, or None when it carries no usable signal (constant, id)."""
    values = series.dropna()
    if values.nunique() <= 1:
        return None
    if pd.api.types.is_bool_dtype(series) or _is_boolean_words(values):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series):
        return None if _looks_like_numeric_id(series) else "numeric"
    sample = values.astype(str).head(INFERENCE_SAMPLE_ROWS)
    if pd.to_numeric(sample, errors="coerce").notna().all():
        return None if _looks_like_numeric_id(pd.to_numeric(values)) else "numeric"
    if _looks_like_dates(sample):
        return "datetime"
    if sample.str.len().mean() >= TEXT_MIN_MEAN_LENGTH and sample.str.contains(" ").mean() > 0.5:
        return "text"
    distinct = values.nunique()
    if distinct > LOW_CARDINALITY and distinct >= ID_UNIQUE_RATIO * len(values):
        return None
    return "categorical"


def describe(series: pd.Series, kind: str, encoding: str, family: str) -> dict[str, Any]:
    """The resolved-feature dict of one column of the training split."""
    name = str(series.name)
    linear = family == "linear"
    feature: dict[str, Any] = {
        "name": name,
        "type": kind,
        "encoding": encoding,
        "categories": None,
        "min": None,
        "max": None,
        "missing_rate": float(series.isna().mean()),
    }
    if kind == "numeric":
        if encoding not in ("auto", "scale", "passthrough"):
            raise ConfigError(f"Numeric feature {name!r} takes encoding scale or passthrough.")
        values = pd.to_numeric(series, errors="coerce")
        feature["min"] = _plain(values.min())
        feature["max"] = _plain(values.max())
        feature["encoding"] = (
            ("scale" if linear else "passthrough") if encoding == "auto" else encoding
        )
    elif kind in ("categorical", "text"):
        if encoding in ("scale", "passthrough"):
            raise ConfigError(
                f"Feature {name!r} is {kind}: use encoding onehot, ordinal, target or auto."
            )
        values = as_category(series).dropna()
        distinct = sorted(values.unique().tolist())
        if len(distinct) <= LOW_CARDINALITY:
            feature["categories"] = distinct
        if encoding == "auto":
            if feature["categories"] is None:
                encoding = "target"
            else:
                encoding = "onehot" if linear else "ordinal"
        feature["encoding"] = encoding
    elif kind == "boolean":
        feature["encoding"] = "passthrough"
    else:
        feature["encoding"] = "parts"
    return feature


def build_preprocessor(
    features: list[dict[str, Any]],
    derived: list[dict[str, Any]],
    family: str,
    seed: int,
    custom_module: str | None = None,
    transforms: list[dict[str, Any]] | None = None,
) -> Pipeline:
    """user features -> feature transforms -> typed frame -> encoded matrix, as one unfitted
    Pipeline.

    ``custom_module`` names the service's ``custom_features`` module (see
    :func:`custom_features_module`); None runs no user code. ``transforms`` (see
    :func:`spec_dicts`) adds a :class:`~.transforms.FeatureTransforms` step; their columns must
    be described in ``derived`` (:func:`transform_features`).
    """
    columns = [*features, *derived]

    def imputer() -> SimpleImputer:
        # keep_empty_features: a column that was all null in training still has a slot.
        return SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)

    groups: dict[str, list[str]] = {
        "scale": [],
        "passthrough": [],
        "onehot": [],
        "ordinal": [],
        "target": [],
    }
    for feature in columns:
        if feature["type"] == "datetime":
            parts = [f"{feature['name']}__{part}" for part in DATETIME_PARTS]
            groups["scale" if family == "linear" else "passthrough"].extend(parts)
        else:
            groups[feature["encoding"]].append(feature["name"])
    encoders = {
        "scale": make_pipeline(imputer(), StandardScaler()),
        "passthrough": imputer(),
        "onehot": OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            min_frequency=MIN_CATEGORY_COUNT,
            sparse_output=False,
        ),
        # Unseen and missing categories share code -1, which trees split on like any other.
        "ordinal": OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
        ),
        # Cross-fitted encoding (the target of a row never encodes that row), seeded folds.
        "target": TargetEncoder(cv=KFold(n_splits=5, shuffle=True, random_state=seed)),
    }
    transformers = [(group, encoders[group], names) for group, names in groups.items() if names]
    steps: list[tuple[str, Any]] = [
        ("custom", FunctionTransformer(apply_custom_features, kw_args={"module": custom_module})),
    ]
    if transforms:
        steps.append(("transforms", FeatureTransforms(transforms)))
    steps += [
        ("prepare", FunctionTransformer(prepare_frame, kw_args={"features": columns})),
        ("encode", ColumnTransformer(transformers, sparse_threshold=0.0)),
    ]
    return Pipeline(steps)


def custom_features_module(config: Config) -> str:
    """The import name of the service's own feature code: ``<package>.custom_features``."""
    return f"{config.project.package}.custom_features"


def apply_custom_features(df: pd.DataFrame, module: str | None = None) -> pd.DataFrame:
    """Run the service's ``add_features`` (in ``module``) and check what it returns.

    The module is imported by name when the step runs, so a pickled pipeline holds the name,
    not the code: the service's own ``custom_features.py`` is what training and serving run.
    A service without that file (it deleted it) has no custom features; a service whose package
    cannot be imported is not installed, which is an error.
    """
    if module is None:
        return df
    try:
        user_code = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        package = module.rpartition(".")[0]
        if exc.name != module or importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"Cannot import {module}: {exc}. Install the service (pip install -e .) and run "
                "it from its own environment."
            ) from exc
        return df
    result = user_code.add_features(df.copy())
    if not isinstance(result, pd.DataFrame) or len(result) != len(df):
        raise TypeError(
            f"{module}.add_features must return a DataFrame with one row per input row "
            f"(got {type(result).__name__})."
        )
    return result


def prepare_frame(df: pd.DataFrame, features: list[dict[str, Any]]) -> pd.DataFrame:
    """Typed model inputs: numbers as float, categories as str, booleans as 0/1, date parts.

    A feature missing from ``df`` becomes an all-null column, so partial requests still work.
    """
    out: dict[str, pd.Series] = {}
    for feature in features:
        name = feature["name"]
        column = df[name] if name in df.columns else pd.Series(np.nan, index=df.index)
        kind = feature["type"]
        if kind == "numeric":
            out[name] = pd.to_numeric(column, errors="coerce").astype(float)
        elif kind == "boolean":
            out[name] = _as_boolean(column)
        elif kind == "datetime":
            stamps = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
            for part in DATETIME_PARTS:
                out[f"{name}__{part}"] = getattr(stamps.dt, part).astype(float)
        else:
            out[name] = as_category(column)
    return pd.DataFrame(out, index=df.index)


def as_category(series: pd.Series) -> pd.Series:
    """Category values as strings (see :func:`category_text`), missing values as NaN."""
    return _by_value(series, lambda value: _nan_if_none(category_text(value)), object)


def _nan_if_none(text: str | None) -> Any:
    return np.nan if text is None else text


def _by_value(series: pd.Series, convert: Any, dtype: Any) -> pd.Series:
    """``convert`` applied to every value of ``series``: once per distinct value when the
    column has one type (numbers, strings, booleans: a million logged rows hold a handful of
    values), value by value in an object column, whose 1 and True would share a key."""
    if series.dtype == object:
        values = [convert(value) for value in series]
        return pd.Series(values, index=series.index, dtype=dtype)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    converted = [convert(value) for value in uniques.tolist()]
    lookup = np.array([*converted, convert(None)], dtype=dtype)
    return pd.Series(lookup[codes], index=series.index, dtype=dtype)


def boolean_value(value: Any) -> float:
    """1.0 for a true word (true, yes, 1, ...), 0.0 for a false one, NaN otherwise.

    Numbers are read as their text (see :func:`category_text`): 1.0, as a column of 0/1 with
    gaps is typed, is the word "1".
    """
    word = str(category_text(value)).strip().lower()
    return 1.0 if word in TRUE_WORDS else 0.0 if word in FALSE_WORDS else np.nan


def _as_boolean(series: pd.Series) -> pd.Series:
    return _by_value(series, boolean_value, float)


def _is_boolean_words(values: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(values):
        return False
    words = set(values.astype(str).str.strip().str.lower().unique())
    return len(words) == 2 and words <= (TRUE_WORDS | FALSE_WORDS)


def _looks_like_numeric_id(series: pd.Series) -> bool:
    values = series.dropna()
    integral = bool((values == np.floor(values)).all())
    if not integral or values.nunique() < ID_UNIQUE_RATIO * len(values):
        return False
    # A row counter (0, 1, 2, ...) is an id whatever its name, e.g. an exported index.
    consecutive = bool((np.diff(np.sort(values.to_numpy())) == 1).all())
    return consecutive or bool(_ID_NAME.search(str(series.name)))


def _looks_like_dates(sample: pd.Series) -> bool:
    if not sample.str.contains(r"\d[-/:]\d|\d{4}-\d", regex=True).all():
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.95)


def _plain(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)
