"""The offline drift report: files written, features named, exit code follows the verdict."""

import json

import numpy as np
import pandas as pd
import pytest
from mlgen_runtime.monitoring.drift import (
    build_reference,
    compare,
)
from mlgen_runtime.monitoring.report import (
    format_table,
    write_report,
)
from sklearn.datasets import load_wine


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    data = load_wine(as_frame=True)
    df = data.frame[["alcohol", "malic_acid", "color_intensity"]].copy()
    df["cultivar"] = data.target.map({0: "barolo", 1: "grignolino", 2: "barbera"})
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(wine) -> dict:
    features = [
        {"name": "alcohol", "type": "numeric"},
        {"name": "malic_acid", "type": "numeric"},
        {"name": "color_intensity", "type": "numeric"},
        {"name": "cultivar", "type": "categorical"},
        {"name": "harvested", "type": "datetime"},
    ]
    return build_reference(wine.iloc[:90], features, seed=0)


def test_report_files_name_every_feature_and_flag_the_drifted_one(reference, wine, tmp_path):
    current = wine.iloc[90:].copy()
    current["alcohol"] += current["alcohol"].std()
    report = compare(reference, current)
    json_path, html_path = write_report(report, tmp_path / "out", reference, current)

    saved = json.loads(json_path.read_text())
    assert saved["drifted"] is True
    assert saved["drifted_features"] == ["alcohol"]
    page = html_path.read_text()
    for name in ("alcohol", "malic_acid", "color_intensity", "cultivar", "harvested"):
        assert name in page
    assert page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page


def test_report_of_an_unshifted_batch_says_no_drift(reference, wine, tmp_path):
    current = wine.iloc[90:]
    report = compare(reference, current)
    json_path, _ = write_report(report, tmp_path, reference, current)
    assert json.loads(json_path.read_text())["drifted"] is False
    assert "No drift in 4 features" in format_table(report)


def test_a_batch_without_a_feature_column_reports_it_all_missing(reference, wine, tmp_path):
    current = wine.iloc[90:].drop(columns=["cultivar"]).assign(malic_acid=np.nan)
    report = compare(reference, current)
    assert set(report.drifted_features) == {"cultivar", "malic_acid"}
    _, html_path = write_report(report, tmp_path, reference, current)
    assert "missing rate 0.0% -&gt; 100.0%" in html_path.read_text()
