"""Feature transforms: every kind computes what it says, learns from the training split only,
serves identically through the pipeline and the fast paths, and is watched by drift."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.bundle import Bundle
from mlgen_runtime.data import load_data
from mlgen_runtime.errors import ConfigError
from mlgen_runtime.features import build_preprocessor, describe, infer_type
from mlgen_runtime.model import build_estimator
from mlgen_runtime.monitoring.drift import OnlineDrift, build_reference, compare
from mlgen_runtime.registry import load_champion
from mlgen_runtime.serving.app import create_app
from mlgen_runtime.serving.fastpath import (
    PARITY_TOLERANCE,
    RecordEncoder,
    build_predictor,
    parity_error,
    probe_records,
)
from mlgen_runtime.serving.predictor import Predictor
from mlgen_runtime.train import train
from mlgen_runtime.transforms import (
    FeatureTransforms,
    Source,
    TransformSpec,
    check_inputs,
    compile_fitted,
    json_schema,
)
from pydantic import ValidationError
from service_fixture import isolated_config
from sklearn.pipeline import Pipeline
from test_fastpath import SMALL, mixed_frame, records_of

SCHEMA_FILE = (
    Path(__file__).resolve().parents[1] / "src" / "mlgen_runtime" / "transforms.schema.json"
)


def step(kind: str, name: str, **fields) -> dict:
    return {"kind": kind, "name": name, "reason": f"tests {kind}", **fields}


# Every kind, over the columns of test_fastpath.mixed_frame (numbers, categories with and
# without a list, a boolean and a date; ~8% of values missing).
EVERY_KIND = [
    step("ratio", "bmi_per_s5", numerator="bmi", denominator="s5"),
    step("difference", "bmi_minus_age", left="bmi", right="age"),
    step("product", "bmi_times_age", left="bmi", right="age"),
    step("log1p", "log_bmi", column="bmi"),
    step("clip", "age_clipped", column="age", lower=30, upper=60),
    step("quantile_bins", "bmi_bin", column="bmi", bins=5),
    step("date_part", "visit_day", column="visit", part="day_of_year"),
    step("cyclical", "visit_hour", column="visit", part="hour"),
    step("periodic", "age_decade", column="age", period=10),
    step("string_length", "clinic_length", column="clinic"),
    step("token_flags", "band", column="bmi band", tokens=["obese", "normal"]),
    step("missing_count", "gaps", columns=["age", "sex", "visit", "high_bp"]),
    step("group_stat", "clinic_bmi", column="bmi", by="clinic", stat="mean"),
    step("interaction", "sex_band", left="sex", right="bmi band"),
]


def derive(steps: list[dict], train: pd.DataFrame, apply_to: pd.DataFrame | None = None) -> dict:
    fitted = FeatureTransforms(steps).fit(train)
    return fitted.derive(Source.of_frame(train if apply_to is None else apply_to))


def test_the_schema_file_mlgen_reads_is_the_specs_own():
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), (
        "Regenerate it: python -m mlgen_runtime.transforms > "
        "runtime/src/mlgen_runtime/transforms.schema.json"
    )


def test_there_are_at_least_twelve_kinds_each_with_a_reason():
    kinds = json_schema()["properties"]["steps"]["items"]["discriminator"]["mapping"]
    assert len(kinds) >= 12 and {s["kind"] for s in EVERY_KIND} == set(kinds)
    for definition in json_schema()["$defs"].values():
        assert "reason" in definition["required"] and definition["description"]


@pytest.mark.parametrize("bad, message", [
    (step("eval", "x", expr="__import__('os')"), "does not match any of the expected tags"),
    (step("ratio", "x", numerator="a", denominator="b", code="1"), "Extra inputs"),
    (step("quantile_bins", "x", column="a", bins=10**9), "less than or equal to 20"),
    (step("log1p", "../../etc/passwd", column="a"), "should match pattern"),
    (step("log1p", "__class__", column="a"), "should match pattern"),
    (step("log1p", "x; import os", column="a"), "should match pattern"),
    (step("clip", "x", column="a", lower=float("nan")), "finite number"),
    (step("clip", "x", column="a", lower=5, upper=1), "must be below upper"),
    (step("clip", "x", column="a"), "needs lower, upper or both"),
    (step("token_flags", "x", column="a", tokens=[".*"]), "should match pattern"),
    (step("token_flags", "x", column="a", tokens=["a"] * 21), "at most 20 items"),
    ({"kind": "log1p", "name": "x", "column": "a"}, "reason"),
])
def test_the_spec_refuses_what_it_cannot_compute(bad, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        TransformSpec(steps=[bad])


def test_the_spec_refuses_two_columns_of_the_same_name_and_too_many_transforms():
    twice = [step("log1p", "x_sin", column="a"), step("periodic", "x", column="b", period=7)]
    with pytest.raises(ValidationError, match="x_sin more than once"):
        TransformSpec(steps=twice)
    with pytest.raises(ValidationError, match="at most 50 items"):
        TransformSpec(steps=[step("log1p", f"x{i}", column="a") for i in range(51)])


def test_transforms_read_only_features_of_a_fitting_type():
    features = [{"name": "amount", "type": "numeric"}, {"name": "city", "type": "categorical"}]
    spec = TransformSpec(steps=[
        step("log1p", "log_city", column="city"),
        step("ratio", "per_head", numerator="amount", denominator="heads"),
        step("log1p", "city", column="amount"),
    ])
    with pytest.raises(ConfigError) as caught:
        check_inputs(spec, features)
    message = str(caught.value)
    assert "needs 'city' to be numeric, but it is categorical" in message
    assert "reads 'heads', which is not a feature" in message
    assert "would replace the column(s) city" in message


def test_each_kind_computes_what_it_says():
    frame = pd.DataFrame({
        "a": [4.0, 0.0, -2.0, None, 10.0, 3.0],
        "b": [2.0, 0.0, 1.0, 1.0, None, 0.5],
        "when": ["2024-12-31T23:00:00", "2025-01-01T01:00:00", None, "2024-06-15",
                 "2024-06-16T12:00:00+02:00", "not a date"],
        "text": ["Big RED car", "red", None, "bigger", "big", "big"],
        "city": ["x", "x", "y", None, "x", "z"],
    })
    got = derive([
        step("ratio", "r", numerator="a", denominator="b"),
        step("difference", "d", left="a", right="b"),
        step("product", "p", left="a", right="b"),
        step("log1p", "l", column="a"),
        step("clip", "c", column="a", upper=5),
        step("date_part", "wd", column="when", part="day_of_week"),
        step("date_part", "we", column="when", part="is_weekend"),
        step("cyclical", "h", column="when", part="hour"),
        step("periodic", "pa", column="a", period=4),
        step("string_length", "n", column="text"),
        step("token_flags", "t", column="text", tokens=["big", "red"]),
        step("missing_count", "m", columns=["a", "b", "when", "absent"]),
        step("group_stat", "g", column="a", by="city", stat="count"),
        step("interaction", "i", left="city", right="text"),
    ], frame)
    nan = math.nan
    np.testing.assert_array_equal(got["r"], [2.0, nan, -2.0, nan, nan, 6.0])
    np.testing.assert_array_equal(got["d"], [2.0, 0.0, -3.0, nan, nan, 2.5])
    np.testing.assert_array_equal(got["p"], [8.0, 0.0, -2.0, nan, nan, 1.5])
    np.testing.assert_allclose(got["l"], [np.log(5), 0.0, nan, nan, np.log(11), np.log(4)])
    np.testing.assert_array_equal(got["c"], [4.0, 0.0, -2.0, nan, 5.0, 3.0])
    # 2024-12-31 is a Tuesday; 12:00+02:00 on Sunday 16 June is 10:00 UTC, still Sunday.
    np.testing.assert_array_equal(got["wd"], [1.0, 2.0, nan, 5.0, 6.0, nan])
    np.testing.assert_array_equal(got["we"], [0.0, 0.0, nan, 1.0, 1.0, nan])
    # 23:00 and 01:00 sit on either side of midnight: same cosine, opposite sines.
    assert got["h_cos"][0] == pytest.approx(got["h_cos"][1])
    assert got["h_sin"][0] == pytest.approx(-got["h_sin"][1])
    np.testing.assert_allclose(got["pa_cos"], [1.0, 1.0, -1.0, nan, -1.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(got["n"], [11.0, 3.0, nan, 6.0, 3.0, 3.0])
    np.testing.assert_array_equal(got["t_big"], [1.0, 0.0, nan, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(got["t_red"], [1.0, 1.0, nan, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(got["m"], [1.0, 1.0, 2.0, 2.0, 2.0, 1.0])
    np.testing.assert_array_equal(got["g"], [3.0, 3.0, 1.0, 0.0, 3.0, 1.0])
    assert got["i"] == ["x|Big RED car", "x|red", None, None, "x|big", "z|big"]


def test_fitted_transforms_learn_from_the_training_split_only():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(0, 1, 400), "g": rng.choice(["a", "b"], 400)})
    train.loc[train["g"] == "b", "x"] += 10
    later = pd.DataFrame({"x": [100.0, -100.0, 0.0, None], "g": ["a", "b", "new", None]})
    steps = [step("quantile_bins", "q", column="x", bins=4),
             step("group_stat", "m", column="x", by="g", stat="mean"),
             step("group_stat", "s", column="x", by="g", stat="std")]
    fitted = FeatureTransforms(steps).fit(train)
    got = fitted.derive(Source.of_frame(later))
    # Bin edges and group means are the training split's: new data cannot move them.
    np.testing.assert_array_equal(got["q"], [3.0, 0.0, np.searchsorted(
        np.quantile(train["x"], [0.25, 0.5, 0.75]), 0.0, side="right"), np.nan])
    means = train.groupby("g")["x"].mean()
    assert got["m"][:2].tolist() == pytest.approx([means["a"], means["b"]])
    # Unseen and missing groups get the overall statistic.
    assert got["m"][2] == got["m"][3] == pytest.approx(train["x"].mean())
    assert got["s"][1] == pytest.approx(train.loc[train["g"] == "b", "x"].std())
    # The fitted state is plain JSON, applied the same way after a round trip.
    saved = json.loads(json.dumps(fitted.fitted_spec()))
    again = compile_fitted(saved).columns({"x": later["x"].tolist(), "g": later["g"]}, 4)
    for name in got:
        np.testing.assert_array_equal(again[name], got[name])


def fitted_bundle(task: str, family: str) -> tuple[Bundle, pd.DataFrame]:
    """test_fastpath's mixed data with a transform of every kind inside the pipeline."""
    frame, y = mixed_frame()
    if task == "multiclass_classification":
        y = pd.qcut(y, 3, labels=["low", "mid", "high"]).astype(str)
    typed = frame.infer_objects()
    features = [describe(typed[c], infer_type(typed[c]), "auto", family) for c in frame.columns]
    spec = TransformSpec(steps=EVERY_KIND)
    check_inputs(spec, features)
    added = derive(EVERY_KIND, frame)
    derived = [describe(pd.Series(added[name], name=name), kind, "auto", family)
               for name, kind in spec.outputs()]
    pipeline = Pipeline([
        ("prepare", build_preprocessor(features, derived, family, 0, None, EVERY_KIND)),
        ("model", build_estimator(task, family, 0, params=SMALL.get(family))),
    ]).fit(frame, y)
    classes = None if task == "regression" else [str(c) for c in pipeline.classes_]
    metadata = {"model_name": "m", "model_version": "1", "task": task, "classes": classes,
                "features": features, "derived_features": derived}
    return Bundle(pipeline, metadata, {}), frame


@pytest.mark.parametrize("task, family", [
    ("regression", "linear"),
    ("multiclass_classification", "linear"),
    ("regression", "hist_gradient_boosting"),
    ("multiclass_classification", "lightgbm"),
])
def test_every_kind_serves_the_same_through_the_pipeline_and_the_fast_paths(task, family):
    bundle, frame = fitted_bundle(task, family)
    records = records_of(frame) + probe_records(bundle.features, seed=1)
    native = Predictor(bundle)
    expected = native.model_output(records)
    encoder = RecordEncoder(bundle.pipeline, bundle.features)
    # The encoder applies the fitted transforms to request rows: its matrix is the pipeline's,
    # and one record alone encodes exactly as its row of a batch.
    matrix = encoder(records)
    np.testing.assert_allclose(
        matrix, bundle.pipeline[:-1].transform(native.model_input(records)), rtol=1e-9, atol=1e-9
    )
    assert np.array_equal(np.vstack([encoder([r]) for r in records]), matrix, equal_nan=True)
    for onnx in (True, False):
        fast = build_predictor(bundle, onnx=onnx)
        # ONNX trees compare in float32: a tree model may keep the compiled path instead.
        assert fast.serving_path in ("onnx", "compiled")
        assert parity_error(expected, fast.model_output(records)) <= PARITY_TOLERANCE
    assert build_predictor(bundle, onnx=False).serving_path == "compiled"


def test_drift_watches_the_transforms_columns_from_raw_rows():
    frame, _ = mixed_frame()
    fitted = FeatureTransforms(EVERY_KIND).fit(frame)
    typed = frame.infer_objects()
    features = [describe(typed[c], infer_type(typed[c]), "auto", "linear") for c in frame.columns]
    added = fitted.derive(Source.of_frame(frame))
    spec = TransformSpec(steps=EVERY_KIND)
    derived = [describe(pd.Series(added[n], name=n), k, "auto", "linear")
               for n, k in spec.outputs()]
    reference = json.loads(json.dumps(build_reference(
        frame, [*features, *derived], seed=0, transforms=fitted.fitted_spec())))
    monitored = {p["name"] for p in reference["features"] if p["kind"] != "skipped"}
    assert {name for name, _ in spec.outputs()} <= monitored
    # Same data: quiet. The product of bmi and age moves when age does, and drift says so
    # on the derived columns too, computed from the raw values alone.
    assert not compare(reference, frame).drifted
    older = frame.copy()
    older["age"] = pd.to_numeric(older["age"]) + 15
    drifted = set(compare(reference, older).drifted_features)
    assert {"age", "bmi_minus_age", "bmi_times_age"} <= drifted
    online = OnlineDrift(reference, window=400, min_rows=50)
    online.observe(records_of(older))
    scores = online.scores()
    assert scores["bmi_times_age"]["alert"] and not scores["clinic_length"]["alert"]
    assert scores["sex_band"]["measure"] == "jensen_shannon"


PENGUIN_TRANSFORMS = [
    step("ratio", "bill_ratio", numerator="bill_length_mm", denominator="bill_depth_mm"),
    step("log1p", "log_mass", column="body_mass_g"),
    step("quantile_bins", "flipper_bin", column="flipper_length_mm", bins=4),
    step("group_stat", "island_mass", column="body_mass_g", by="island", stat="mean"),
    step("token_flags", "isle", column="island", tokens=["biscoe", "dream"]),
    step("interaction", "island_sex", left="island", right="sex"),
    step("missing_count", "gaps", columns=["sex", "bill_length_mm", "body_mass_g"]),
]


@pytest.fixture(scope="module")
def transformed_service(tmp_path_factory, sample_data):
    penguins = {"island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"}
    if not penguins <= set(load_data(sample_data).columns):
        pytest.skip("these transforms name the penguins fixture's columns")
    config = isolated_config(
        tmp_path_factory.mktemp("transformed"),
        {"data": {"path": str(sample_data)}, "tuning": {"trials": 0},
         "transforms": {"version": 1, "steps": PENGUIN_TRANSFORMS}},
    )
    result = train(config)
    return config, result, load_champion(config)


def test_a_trained_service_lists_serves_and_monitors_its_transforms(transformed_service):
    config, result, bundle = transformed_service
    derived = {f["name"]: f for f in result.metadata["derived_features"]}
    assert {"bill_ratio", "log_mass", "island_mass", "isle_biscoe", "island_sex"} <= set(derived)
    assert derived["bill_ratio"]["transform"] == "ratio"
    assert derived["island_sex"]["type"] == "categorical"
    assert result.metadata["transforms"]["steps"][0]["reason"] == "tests ratio"
    # The fast path compiles the transforms and matched the pipeline on the validation split.
    assert result.metadata["serving"]["path"] in ("onnx", "compiled")
    assert build_predictor(bundle).serving_path == result.metadata["serving"]["path"]
    assert "bill_ratio" in {p["name"] for p in bundle.reference["features"]}
    record = {"island": "Biscoe", "bill_length_mm": 45.0, "bill_depth_mm": 15.0,
              "flipper_length_mm": 215.0, "body_mass_g": 5200.0, "sex": "male", "year": 2008}
    with TestClient(create_app(config, bundle)) as client:
        for _ in range(60):
            assert client.post("/predict", json=record).status_code == 200
        answer = client.post("/predict/batch", json={"records": [record, {}]})
        assert answer.status_code == 200, answer.text
        scrape = client.get("/metrics").text
    assert 'model_feature_drift{feature="bill_ratio"' in scrape
    assert 'model_feature_drift{feature="island_mass"' in scrape


def test_a_transform_naming_no_feature_stops_training_with_the_reason(tmp_path, sample_data):
    config = isolated_config(tmp_path, {
        "data": {"path": str(sample_data)}, "tuning": {"trials": 0},
        "transforms": {"steps": [step("log1p", "log_beak", column="beak_colour")]},
    })
    with pytest.raises(ConfigError, match="reads 'beak_colour', which is not a feature"):
        train(config)
