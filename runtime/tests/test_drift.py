"""Drift monitoring on real data: what alerts, what stays quiet, and that the maths is right."""

import json

import numpy as np
import pandas as pd
import pytest
from mlgen_runtime.monitoring.drift import (
    PROFILE_VERSION,
    OnlineDrift,
    build_reference,
    compare,
)
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from sklearn.datasets import load_breast_cancer

NUMERIC = ["mean radius", "mean texture", "mean smoothness", "worst area", "worst symmetry"]
DIAGNOSIS = {"name": "diagnosis", "type": "categorical", "categories": ["benign", "malignant"]}


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    """Breast cancer measurements, with the diagnosis as a real categorical feature."""
    data = load_breast_cancer(as_frame=True)
    df = data.frame[NUMERIC].copy()
    df["diagnosis"] = np.where(data.target == 1, "benign", "malignant")
    return df


@pytest.fixture(scope="module")
def features(cancer) -> list[dict]:
    numeric = [{"name": n, "type": "numeric", "missing_rate": 0.0} for n in NUMERIC]
    return [*numeric, DIAGNOSIS]


@pytest.fixture(scope="module")
def halves(cancer) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = cancer.sample(frac=1.0, random_state=7).reset_index(drop=True)
    return shuffled.iloc[:285].reset_index(drop=True), shuffled.iloc[285:].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(halves, features) -> dict:
    return build_reference(halves[0], features, seed=0)


def test_reference_is_json_serialisable_and_skips_datetime(halves, features):
    with_time = [*features, {"name": "seen_at", "type": "datetime"}]
    ref = build_reference(halves[0], with_time, seed=0)
    loaded = json.loads(json.dumps(ref))
    kinds = {p["name"]: p["kind"] for p in loaded["features"]}
    assert kinds["seen_at"] == "skipped"
    assert kinds["mean radius"] == "numeric" and kinds["diagnosis"] == "categorical"


def test_reference_is_reproducible_for_a_seed(halves, features):
    assert build_reference(halves[0], features, seed=3) == build_reference(
        halves[0], features, seed=3
    )


def test_a_random_split_of_the_same_data_does_not_alert(reference, halves):
    report = compare(reference, halves[1])
    assert not report.drifted, report.to_dict()


def test_half_a_sigma_mean_shift_alerts_on_that_feature_only(reference, halves):
    current = halves[1].copy()
    current["mean texture"] += 0.5 * halves[0]["mean texture"].std()
    report = compare(reference, current)
    assert report.drifted_features == ["mean texture"]
    shifted = next(f for f in report.features if f.name == "mean texture")
    assert shifted.measure == "wasserstein"
    assert shifted.score == pytest.approx(0.5, abs=0.15)


def test_an_unseen_category_alerts(reference, halves):
    current = halves[1].copy()
    current.loc[current.index[:60], "diagnosis"] = "uncertain"
    report = compare(reference, current)
    assert report.drifted_features == ["diagnosis"]


def test_a_rise_in_missing_values_alerts(reference, halves):
    current = halves[1].copy()
    current.loc[current.index[:40], "worst area"] = np.nan
    report = compare(reference, current)
    assert report.drifted_features == ["worst area"]
    feature = next(f for f in report.features if f.name == "worst area")
    assert feature.missing_rate_current == pytest.approx(40 / len(current))
    assert any("missing rate" in reason for reason in feature.reasons)


def test_numeric_score_is_scipy_wasserstein_over_reference_std(reference, halves):
    current = halves[1].copy()
    current["mean radius"] *= 1.2
    profile = next(p for p in reference["features"] if p["name"] == "mean radius")
    clipped = np.clip(current["mean radius"], *profile["clip"])
    assert (clipped != current["mean radius"]).sum() <= 1
    expected = wasserstein_distance(profile["sample"], clipped) / np.std(halves[0]["mean radius"])
    feature = next(f for f in compare(reference, current).features if f.name == "mean radius")
    assert feature.score == pytest.approx(expected, rel=1e-9)


def test_categorical_score_is_scipy_jensen_shannon_with_unseen_and_missing(reference, halves):
    current = pd.DataFrame({"diagnosis": ["benign"] * 5 + ["malignant"] * 3 + ["other", None]})
    profile = next(p for p in reference["features"] if p["name"] == "diagnosis")
    assert profile["categories"] == ["benign", "malignant"]
    # Buckets: benign, malignant, unseen, missing.
    expected = jensenshannon(profile["frequencies"], [0.5, 0.3, 0.1, 0.1], base=2)
    feature = next(f for f in compare(reference, current).features if f.name == "diagnosis")
    assert feature.score == pytest.approx(expected, rel=1e-9)


def test_one_gross_outlier_does_not_alert(reference, halves):
    current = halves[1].copy()
    current.loc[current.index[0], "mean radius"] = 1e6
    assert not compare(reference, current).drifted


def test_numeric_thresholds_follow_the_window_size(reference, halves):
    small = compare(reference, halves[1].iloc[:60], numeric_threshold=0.0)
    large = compare(reference, halves[1], numeric_threshold=0.0)
    by_name = {f.name: f.threshold for f in large.features}
    numeric = [f for f in small.features if f.kind == "numeric"]
    assert len(numeric) == len(NUMERIC)
    for feature in numeric:
        assert feature.threshold > by_name[feature.name]


@pytest.fixture(scope="module")
def diagnoses(cancer) -> tuple[dict, np.ndarray]:
    """A reference of the diagnosis alone, and its category shares."""
    shares = cancer["diagnosis"].value_counts(normalize=True)[["benign", "malignant"]].to_numpy()
    return build_reference(cancer, [DIAGNOSIS], seed=0), shares


def test_a_category_share_change_alerts_when_significant_and_large(diagnoses):
    reference, shares = diagnoses
    # 569 reference rows at 62.7% benign; 400 current rows at 40%: far beyond noise.
    shifted = pd.DataFrame({"diagnosis": ["benign"] * 160 + ["malignant"] * 240})
    feature = compare(reference, shifted).features[0]
    assert feature.drifted and feature.p_value < 1e-6
    assert "share of benign 62.7% -> 40.0%" in feature.reasons[0]
    # The same change in 10 rows is within noise; in 400 rows but under the floor it is quiet.
    small = compare(reference, shifted.iloc[[0, 1, 2, 3, *range(160, 166)]]).features[0]
    assert not small.drifted and small.p_value > 0.01
    assert not compare(reference, shifted, categorical_threshold=0.5).features[0].drifted


def test_category_share_test_keeps_its_false_alarm_rate(diagnoses):
    """A reference and a window drawn from the same shares alert in at most alpha of cases."""
    _, shares = diagnoses
    rng = np.random.default_rng(11)
    alpha, trials, alarms = 0.2, 1000, 0
    for _ in range(trials):
        sample = pd.DataFrame({"diagnosis": rng.choice(["benign", "malignant"], 300, p=shares)})
        window = pd.DataFrame({"diagnosis": rng.choice(["benign", "malignant"], 200, p=shares)})
        reference = build_reference(sample, [DIAGNOSIS])
        alarms += compare(reference, window, categorical_threshold=0.0, alpha=alpha).drifted
    # Fisher's exact test, Bonferroni over both buckets, is conservative: ~8% at alpha 20%.
    assert alpha / 10 < alarms / trials <= alpha


def test_a_boolean_feature_trained_on_words_is_compared_with_json_booleans(halves):
    """Training read Yes/No, the API takes true/false: the same values, so no drift."""
    def flagged(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(large=np.where(df["mean radius"] > 14, "Yes", "No"))

    feature = {"name": "large", "type": "boolean", "categories": ["No", "Yes"]}
    ref = build_reference(flagged(halves[0]), [feature], seed=0)
    current = flagged(halves[1])
    as_json = [{"large": word == "Yes"} for word in current["large"]]
    assert not compare(ref, current).features[0].drifted
    assert not compare(ref, pd.DataFrame(as_json)).features[0].drifted
    # A reference written before boolean buckets were named true/false reads the same.
    older = json.loads(json.dumps(ref))
    older["features"][0]["categories"] = ["No", "Yes"]
    scores = []
    for profile in (ref, older):
        online = OnlineDrift(profile, window=1000, min_rows=50)
        online.observe(as_json)
        scores.append(online.scores()["large"])
    assert scores[0] == scores[1] and not scores[0]["alert"]
    shifted = OnlineDrift(older, window=1000, min_rows=50)
    shifted.observe([{"large": True}] * len(as_json))
    assert shifted.scores()["large"]["alert"]


def test_a_reference_of_another_version_is_refused_with_a_fix(reference, halves):
    with pytest.raises(ValueError, match="Retrain"):
        compare({**reference, "version": PROFILE_VERSION - 1}, halves[1])


def test_the_configured_threshold_is_a_floor(reference, halves):
    report = compare(reference, halves[1], numeric_threshold=0.9, categorical_threshold=0.9)
    assert all(f.threshold >= 0.9 for f in report.features)


def test_online_window_is_bounded_and_matches_compare(reference, halves):
    current = halves[1].copy()
    current["mean texture"] += 0.5 * halves[0]["mean texture"].std()
    current.loc[current.index[:10], "diagnosis"] = None
    online = OnlineDrift(reference, window=200, min_rows=50)
    records = current.astype(object).where(current.notna(), None).to_dict("records")
    online.observe(records[:30])
    assert online.scores() == {}
    online.observe(records[30:])
    assert online.rows == 200
    last = current.iloc[-200:].reset_index(drop=True)
    expected = {f.name: f for f in compare(reference, last).features}
    scores = online.scores()
    assert set(scores) == set(expected)
    for name, score in scores.items():
        assert score["score"] == pytest.approx(expected[name].score, rel=1e-9)
        assert score["alert"] == expected[name].drifted
        assert score["n"] == 200
    assert scores["mean texture"]["alert"] and scores["mean texture"]["measure"] == "wasserstein"


def test_online_drift_takes_unusable_values_as_missing(reference):
    online = OnlineDrift(reference, window=100, min_rows=50)
    online.observe([{"mean radius": "n/a", "diagnosis": 3}] * 60)
    scores = online.scores()
    assert scores["mean radius"]["score"] is None
    assert scores["diagnosis"]["alert"]


def _records(df: pd.DataFrame) -> list[dict]:
    return df.astype(object).where(df.notna(), None).to_dict("records")


def test_observe_columns_matches_observe(reference, halves):
    current = halves[1].iloc[:150].copy()
    current.loc[current.index[:5], "mean radius"] = None
    by_records = OnlineDrift(reference, window=100, min_rows=50)
    by_columns = OnlineDrift(reference, window=100, min_rows=50)
    records = _records(current)
    for start in (0, 7, 130):
        by_records.observe(records[start : start + 123])
        chunk = current.iloc[start : start + 123]
        by_columns.observe_columns({name: chunk[name].tolist() for name in chunk.columns})
    assert by_columns.rows == by_records.rows == 100
    assert by_columns.scores() == by_records.scores()


def test_observe_columns_keeps_the_last_window_rows(reference, halves):
    online = OnlineDrift(reference, window=64, min_rows=10)
    current = halves[1]
    online.observe_columns({name: current[name].to_numpy() for name in current.columns})
    expected = {f.name: f.score for f in compare(reference, current.iloc[-64:]).features}
    assert {n: s["score"] for n, s in online.scores().items()} == pytest.approx(expected)


def test_observe_columns_counts_an_absent_feature_as_missing(reference, halves):
    online = OnlineDrift(reference, window=100, min_rows=50)
    current = halves[1].iloc[:80]
    online.observe_columns({"mean texture": current["mean texture"].tolist()})
    scores = online.scores()
    assert scores["mean radius"]["score"] is None and scores["mean radius"]["alert"]
    assert scores["diagnosis"]["alert"]
    assert not scores["mean texture"]["alert"]


def test_observe_columns_refuses_columns_of_different_lengths(reference):
    online = OnlineDrift(reference, window=100, min_rows=50)
    with pytest.raises(ValueError, match="different lengths"):
        online.observe_columns({"mean radius": [1.0, 2.0], "diagnosis": ["benign"]})
