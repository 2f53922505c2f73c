"""The contract of your ``custom_features.add_features`` (see that file)."""

from __future__ import annotations

import importlib

import pandas as pd
from mlgen_runtime.data import load_data
from mlgen_runtime.features import custom_features_module, resolve_features


def _add_features(config):
    return importlib.import_module(custom_features_module(config)).add_features


def _inputs(config, sample_data) -> pd.DataFrame:
    df = load_data(sample_data)
    return df[[feature["name"] for feature in resolve_features(df, config)]]


def test_one_output_row_per_input_row_and_the_input_columns_kept(config, sample_data):
    raw = _inputs(config, sample_data)
    out = _add_features(config)(raw.copy())
    assert len(out) == len(raw)
    assert list(out.index) == list(raw.index)
    assert set(raw.columns) <= set(out.columns)


def test_the_target_is_never_read(config, sample_data):
    raw = _inputs(config, sample_data)
    assert config.data.target not in raw.columns
    _add_features(config)(raw.copy())


def test_a_request_with_every_value_missing_still_works(config, sample_data):
    raw = _inputs(config, sample_data)
    # What serving passes for a request that leaves every feature out.
    empty = pd.DataFrame({column: pd.Series([None], dtype=object) for column in raw.columns})
    assert len(_add_features(config)(empty)) == 1


def test_the_same_input_gives_the_same_features(config, sample_data):
    raw = _inputs(config, sample_data)
    first = _add_features(config)(raw.copy())
    second = _add_features(config)(raw.copy())
    pd.testing.assert_frame_equal(first, second)
