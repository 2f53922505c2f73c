"""The fast serving paths (compiled encoder + ONNX or native model) predict what the pipeline
predicts, for every model family and task, and fall back to the pipeline when they cannot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.bundle import Bundle
from mlgen_runtime.errors import NotCompilable
from mlgen_runtime.features import (
    build_preprocessor,
    describe,
    infer_type,
)
from mlgen_runtime.model import (
    FAMILIES,
    build_estimator,
)
from mlgen_runtime.monitoring.metrics import (
    PROBABILITY_BUCKETS,
    VALUE_BUCKETS,
    observe_many,
)
from mlgen_runtime.serving.app import create_app
from mlgen_runtime.serving.fastpath import (
    PARITY_TOLERANCE,
    RecordEncoder,
    build_predictor,
    parity_error,
    probe_records,
)
from mlgen_runtime.serving.onnx_export import (
    WIDE_ROWS,
    estimator_to_onnx,
)
from mlgen_runtime.serving.predictor import Predictor
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from serving_support import sample_value, valid_record
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

# Small models: the paths, not the model quality, are under test.
SMALL = {"random_forest": {"n_estimators": 20}, "extra_trees": {"n_estimators": 20},
         "hist_gradient_boosting": {"max_iter": 30}, "lightgbm": {"n_estimators": 30}}
TASKS = ("regression", "binary_classification", "multiclass_classification")


def mixed_frame() -> tuple[pd.DataFrame, pd.Series]:
    """scikit-learn's diabetes data with every feature type and encoding a request can meet
    (numbers, categories with and without a list, booleans, dates), ~8% of values missing."""
    data = load_diabetes(as_frame=True, scaled=False)
    X = data.frame
    frame = pd.DataFrame(
        {
            "age": X["age"],
            "bmi": X["bmi"],
            "s5": X["s5"],
            "sex": X["sex"].map({1.0: "female", 2.0: "male"}),
            "bmi band": pd.cut(
                X["bmi"], [0, 18.5, 25, 30, 35, 100], labels=["under", "normal", "over",
                                                             "obese", "severe"]
            ).astype(str),
            "high_bp": X["bp"] > 100,
            # ~140 distinct values: target-encoded, without a category list.
            "clinic": "c" + X["s1"].astype(int).astype(str),
            "visit": (
                pd.Timestamp("2020-01-01") + pd.to_timedelta(X["s1"] * 7, unit="h")
            ).dt.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    ).astype(object)
    holes = np.random.default_rng(0).random(frame.shape) < 0.08
    return frame.mask(holes), X["target"]


def records_of(frame: pd.DataFrame) -> list[dict]:
    """Rows as request records: missing values are None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def fitted_bundle(
    task: str, family: str, metric: str | None = None
) -> tuple[Bundle, pd.DataFrame]:
    frame, y = mixed_frame()
    if task == "binary_classification":
        y = (y > y.median()).map({True: "high", False: "low"})
    elif task == "multiclass_classification":
        y = pd.qcut(y, 3, labels=["low", "mid", "high"]).astype(str)
    typed = frame.infer_objects()
    features = [describe(typed[c], infer_type(typed[c]), "auto", family) for c in frame.columns]
    pipeline = Pipeline(
        [
            ("prepare", build_preprocessor(features, [], family, 0)),
            (
                "model",
                build_estimator(task, family, 0, params=SMALL.get(family), metric=metric),
            ),
        ]
    ).fit(frame, y)
    classes = None if task == "regression" else [str(c) for c in pipeline.classes_]
    metadata = {"model_name": "m", "model_version": "1", "task": task, "classes": classes,
                "features": features}
    return Bundle(pipeline, metadata, {}), frame


def custom_derived(bundle: Bundle) -> list[dict]:
    """The derived features custom_features.py adds (not the feature transforms')."""
    return [f for f in bundle.metadata["derived_features"] if "transform" not in f]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_fast_paths_predict_what_the_pipeline_predicts(task, family):
    bundle, frame = fitted_bundle(task, family)
    assert {f["type"] for f in bundle.features} == {
        "numeric", "categorical", "boolean", "datetime"
    }
    assert "target" in {f["encoding"] for f in bundle.features}
    records = records_of(frame) + probe_records(bundle.features, seed=1)
    native = Predictor(bundle)
    expected = native.model_output(records)
    served = build_predictor(bundle)
    compiled = build_predictor(bundle, onnx=False)
    assert compiled.serving_path == "compiled"
    # Trees in ONNX compare in float32: a forest may miss the tolerance and stay native.
    assert served.serving_path == "onnx" or family in ("random_forest", "extra_trees")
    labels = [s.prediction for s in native.predict(records)]
    for fast in (served, compiled):
        assert parity_error(expected, fast.model_output(records)) <= PARITY_TOLERANCE
        if task != "regression":
            assert [s.prediction for s in fast.predict(records)] == labels


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "lightgbm"])
def test_boosted_trees_trained_on_absolute_error_serve_through_onnx(family):
    """A model scored by MAE trains on absolute error (model.METRIC_LOSSES): its trees still
    export to ONNX and match the pipeline."""
    bundle, frame = fitted_bundle("regression", family, metric="mae")
    records = records_of(frame) + probe_records(bundle.features, seed=1)
    served = build_predictor(bundle)
    assert served.serving_path == "onnx"
    expected = Predictor(bundle).model_output(records)
    assert parity_error(expected, served.model_output(records)) <= PARITY_TOLERANCE


@pytest.mark.parametrize("task", TASKS)
def test_a_record_scores_the_same_alone_and_in_a_batch_split_over_cores(task):
    served = build_predictor(fitted_bundle(task, "hist_gradient_boosting")[0])
    assert served.serving_path == "onnx"
    frame, _ = mixed_frame()
    matrix = served.encoder(records_of(frame))
    assert len(matrix) >= WIDE_ROWS
    batch = served.model(matrix)
    alone = np.concatenate([served.model(matrix[i : i + 1]) for i in range(len(matrix))])
    np.testing.assert_array_equal(batch, alone)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_single_record_encodes_exactly_as_its_row_of_a_batch(family):
    # One record takes the encoder's list path, several its matrix path: same tables, and
    # (imputer indicators, scalers, one-hot / ordinal / target encoders) the same numbers.
    bundle, frame = fitted_bundle("multiclass_classification", family)
    records = records_of(frame)[:100] + probe_records(bundle.features, seed=3)
    encoder = RecordEncoder(bundle.pipeline, bundle.features)
    batch = encoder(records)
    alone = np.vstack([encoder([record]) for record in records])
    assert np.array_equal(alone, batch, equal_nan=True)
    expected = bundle.pipeline[:-1].transform(Predictor(bundle).model_input(records))
    np.testing.assert_allclose(alone, expected, rtol=1e-9, atol=1e-9)


def test_a_single_record_encoding_that_differs_keeps_the_fast_path_out(monkeypatch):
    bundle, _ = fitted_bundle("regression", "linear")
    listed = RecordEncoder.one
    monkeypatch.setattr(RecordEncoder, "one", lambda self, rows: listed(self, rows) + 1e-3)
    assert build_predictor(bundle).serving_path == "sklearn"


def test_a_failed_export_check_keeps_onnx_out_of_serving():
    bundle, _ = fitted_bundle("binary_classification", "hist_gradient_boosting")
    failed = {**bundle.metadata, "serving": {"onnx": {"ok": False, "max_error": 0.02}}}
    assert build_predictor(Bundle(bundle.pipeline, failed, {})).serving_path == "compiled"


def test_pipelines_the_encoder_cannot_reproduce_are_served_as_they_are():
    bundle, frame = fitted_bundle("regression", "linear")
    pipeline = bundle.pipeline
    preprocess = pipeline.steps[0][1]
    odd = ColumnTransformer([("odd", FunctionTransformer(np.nan_to_num), ["age", "s5"])])
    unknown = Pipeline([*preprocess.steps[:-1], ("encode", odd)])
    other = Pipeline([("prepare", unknown), ("model", build_estimator("regression", "linear", 0))])
    other.fit(frame, load_diabetes().target)
    predictor = build_predictor(Bundle(other, bundle.metadata, {}))
    assert predictor.serving_path == "sklearn"


def test_native_categorical_gradient_boosting_is_never_exported_to_onnx():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 4, 200), rng.normal(size=200)])
    model = HistGradientBoostingClassifier(categorical_features=[0], max_iter=5).fit(
        X, X[:, 0] > 1
    )
    with pytest.raises(NotCompilable, match="categorical"):
        estimator_to_onnx(model, 2)


def test_metadata_and_model_info_name_the_serving_path(trained_service):
    with TestClient(create_app(trained_service.config, trained_service.bundle)) as client:
        path = client.app.state.service.model.predictor.serving_path
        assert path in ("onnx", "compiled", "sklearn")
        assert client.get("/metadata").json()["serving_path"] == path
        record = valid_record(trained_service.bundle.features)
        assert client.post("/predict", json=record).status_code == 200
        scrape = client.get("/metrics").text
    assert sample_value(scrape, "model_info", {"serving_path": path}) == 1


def test_the_trained_champion_is_served_fast_and_identically(trained_service):
    bundle = trained_service.bundle
    fast = build_predictor(bundle)
    if custom_derived(bundle):
        # custom_features.py adds columns only pandas code can compute: the pipeline serves.
        assert fast.serving_path == "sklearn"
    else:
        # The template's own pipeline (feature transforms included) always compiles.
        assert fast.serving_path in ("onnx", "compiled")
    records = probe_records(bundle.features, seed=2)
    assert parity_error(Predictor(bundle).model_output(records), fast.model_output(records)) <= (
        PARITY_TOLERANCE
    )


@pytest.mark.parametrize("buckets", [PROBABILITY_BUCKETS, VALUE_BUCKETS])
def test_a_batch_of_scores_lands_in_the_buckets_one_by_one_observation_would_use(buckets):
    top = buckets[-1]
    values = [*np.random.default_rng(0).uniform(-0.1, 1.2 * top, 1000).tolist(), *buckets]
    samples = []
    for observe in (lambda child: [child.observe(v) for v in values],
                    lambda child: observe_many(child, values)):
        registry = CollectorRegistry()
        observe(Histogram("score", "s", ["v"], buckets=buckets, registry=registry).labels("1"))
        (family,) = [f for f in text_string_to_metric_families(
            generate_latest(registry).decode()) if f.name == "score"]
        samples.append({(s.name, s.labels.get("le")): s.value for s in family.samples
                        if not s.name.endswith("_created")})
    one_by_one, bulk = samples
    assert bulk.pop(("score_sum", None)) == pytest.approx(one_by_one.pop(("score_sum", None)))
    assert bulk == one_by_one
    assert bulk[("score_count", None)] == len(values)


def test_training_records_how_the_fast_paths_match_on_the_validation_split(trained_service):
    bundle = trained_service.bundle
    serving = bundle.metadata["serving"]
    assert serving["rows"] == bundle.metadata["rows"]["validation"]
    if custom_derived(bundle):
        assert serving["path"] == "sklearn" and "custom_features" in serving["reason"]
        assert build_predictor(bundle).serving_path == "sklearn"
        return
    assert serving["compiled"] == {"ok": True, "max_error": pytest.approx(0, abs=1e-9)}
    assert serving["path"] in ("onnx", "compiled")
    if serving["path"] == "onnx":
        assert serving["onnx"]["max_error"] <= PARITY_TOLERANCE
    assert build_predictor(bundle).serving_path == serving["path"]
