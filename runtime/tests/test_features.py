"""Feature inference, the resolved-feature contract, and a pipeline that survives bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlgen_runtime.errors import ConfigError
from mlgen_runtime.features import (
    build_preprocessor,
    custom_features_module,
    derive_features,
    resolve_features,
)
from mlgen_runtime.model import (
    FAMILIES,
    build_estimator,
)
from test_data import synthetic_config

RESOLVED_KEYS = {"name", "type", "encoding", "categories", "min", "max", "missing_rate"}


def mixed_frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 10.0, size=rows)
    amount[:30] = np.nan
    plan = rng.choice(["basic", "plus", "pro"], size=rows)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + rows),
            "amount": amount,
            "plan": plan,
            "city": [f"city-{i}" for i in rng.integers(0, 120, size=rows)],
            "active": rng.choice(["yes", "no"], size=rows),
            "signup": pd.date_range("2023-01-01", periods=rows, freq="D").astype(str),
            "comment": [f"customer wrote a fairly long comment number {i}" for i in range(rows)],
            "constant": 1,
            "leak": rng.normal(size=rows),
            "label": ((amount > 20) | (plan == "pro")).astype(int),
        }
    )


@pytest.fixture
def config(tmp_path):
    return synthetic_config(
        tmp_path, data={"exclude_columns": ["leak"]}, model={"family": "linear"}
    )


def test_types_are_inferred_and_unusable_columns_left_out(config):
    features = {f["name"]: f for f in resolve_features(mixed_frame(), config)}
    assert {name: f["type"] for name, f in features.items()} == {
        "amount": "numeric",
        "plan": "categorical",
        "city": "categorical",
        "active": "boolean",
        "signup": "datetime",
    }
    # customer_id is an id, comment is free text, constant carries nothing, leak is excluded.
    assert all(set(f) == RESOLVED_KEYS for f in features.values())


def test_resolved_features_describe_the_training_split(config):
    df = mixed_frame()
    features = {f["name"]: f for f in resolve_features(df, config)}
    amount, plan, city = features["amount"], features["plan"], features["city"]
    assert amount["min"] == df["amount"].min() and amount["max"] == df["amount"].max()
    assert amount["missing_rate"] == pytest.approx(0.1)
    assert amount["encoding"] == "scale"  # linear models need scaled inputs
    assert plan["categories"] == ["basic", "plus", "pro"] and plan["encoding"] == "onehot"
    assert city["categories"] is None and city["encoding"] == "target"


def test_tree_models_get_ordinal_codes_and_unscaled_numbers(tmp_path):
    config = synthetic_config(tmp_path, model={"family": "hist_gradient_boosting"})
    features = {f["name"]: f for f in resolve_features(mixed_frame(), config)}
    assert features["plan"]["encoding"] == "ordinal"
    assert features["amount"]["encoding"] == "passthrough"


def test_configured_features_are_used_as_given(tmp_path):
    config = synthetic_config(
        tmp_path, features=[{"name": "customer_id", "type": "categorical", "encoding": "onehot"}]
    )
    (feature,) = resolve_features(mixed_frame(), config)
    assert (feature["name"], feature["type"], feature["encoding"]) == (
        "customer_id",
        "categorical",
        "onehot",
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_pipeline_predicts_rows_of_nulls_and_unseen_categories(tmp_path, family):
    config = synthetic_config(tmp_path, model={"family": family})
    train = mixed_frame()
    features = resolve_features(train, config)
    names = [f["name"] for f in features]
    pipeline = build_preprocessor(features, [], family, config.seed)
    pipeline.steps.append(("model", build_estimator(config.task, family, config.seed)))
    pipeline.fit(train[names], train["label"])
    awkward = pd.DataFrame(
        [
            dict.fromkeys(names),
            {
                "amount": 5.0,
                "plan": "enterprise",
                "city": "atlantis",
                "active": "maybe",
                "signup": "not a date",
            },
            {"amount": "12", "plan": 3, "active": True, "signup": "2030-05-01T10:00:00"},
        ]
    )
    proba = pipeline.predict_proba(awkward)
    assert proba.shape == (3, 2)
    assert np.isfinite(proba).all()


USER_CODE = """
def add_features(df):
    return df.assign(
        amount_per_plan=df["amount"] / df["plan"].map({"basic": 1, "plus": 2, "pro": 3})
    )
"""


def test_user_features_from_the_slot_are_derived_and_used(tmp_path, monkeypatch):
    # A service's own package, imported by name as an installed service's is.
    package = tmp_path / "code" / "slot_service"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "custom_features.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    config = synthetic_config(
        tmp_path / "svc", model={"family": "linear"}, project={"package": "slot_service"}
    )
    train = mixed_frame()
    features = resolve_features(train, config)
    names = [f["name"] for f in features]
    derived = derive_features(train[names], features, config)
    assert [(f["name"], f["type"]) for f in derived] == [("amount_per_plan", "numeric")]
    pipeline = build_preprocessor(
        features, derived, "linear", config.seed, custom_features_module(config)
    )
    encoded = pipeline.fit_transform(train[names], train["label"])
    without = build_preprocessor(features, [], "linear", config.seed)
    # The derived column adds one scaled value and one missing-indicator column.
    assert encoded.shape[1] == without.fit_transform(train[names], train["label"]).shape[1] + 2


def test_a_service_without_custom_features_gets_none_and_an_uninstalled_one_an_error(
    tmp_path, monkeypatch
):
    package = tmp_path / "code" / "bare_service"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    train = mixed_frame()
    bare = synthetic_config(tmp_path / "bare", project={"package": "bare_service"})
    features = resolve_features(train, bare)
    names = [f["name"] for f in features]
    assert derive_features(train[names], features, bare) == []
    missing = synthetic_config(tmp_path / "missing", project={"package": "not_installed_svc"})
    with pytest.raises(ConfigError, match="not_installed_svc.custom_features"):
        derive_features(train[names], features, missing)


def test_categories_of_rows_outside_the_training_split_are_known_to_the_api():
    """ggplot2 mpg's fuel type "c" is on one row: when that row lands in the test split, a
    client posting it from the CSV must still get an answer, not a 422."""
    from mlgen_runtime.features import describe, known_categories
    from mlgen_runtime.serving.schemas import build_record_model
    from pydantic import TypeAdapter

    train = pd.DataFrame({"fl": ["r", "p", "e", "d"] * 5, "cyl": [4, 6, 8, 4] * 5})
    whole = pd.concat([train, pd.DataFrame({"fl": ["c", None], "cyl": [4, 5]})])
    fuel = describe(train["fl"], "categorical", "auto", "hist_gradient_boosting")
    cylinders = describe(train["cyl"], "numeric", "auto", "hist_gradient_boosting")
    assert fuel["categories"] == ["d", "e", "p", "r"]
    features = known_categories([fuel, cylinders], whole)
    assert features[0]["categories"] == ["c", "d", "e", "p", "r"]
    assert features[1] == cylinders and fuel["categories"] == ["d", "e", "p", "r"]
    record = TypeAdapter(build_record_model(features))
    assert record.validate_python({"fl": "c", "cyl": 4}) == {"fl": "c", "cyl": 4}
    with pytest.raises(ValueError, match="Input should be"):
        record.validate_python({"fl": "x"})
