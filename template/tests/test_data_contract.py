"""Your data against the config: the columns it names exist and the split works.

Runs on the sample in data/ (or on data.path when there is no sample). Add checks that your
own data must keep: value ranges, allowed categories, row counts.
"""

from __future__ import annotations

from mlgen_runtime.data import load_data, split, validate
from mlgen_runtime.features import resolve_features


def test_the_data_passes_validation_and_every_named_column_exists(config, sample_data):
    df = load_data(sample_data)
    validate(df, config)
    named = [config.data.target, *(f.name for f in config.features)]
    named += [c for c in (config.data.id_column, config.data.time_column) if c]
    assert not [column for column in named if column not in df.columns]


def test_the_split_keeps_every_row_once_and_never_trains_on_the_test_rows(config, sample_data):
    df = load_data(sample_data)
    labelled = df[df[config.data.target].notna()]
    splits = split(df.assign(_row=range(len(df))), config)
    parts = [set(part["_row"]) for part in (splits.train, splits.validation, splits.test)]
    assert all(parts), "every part of the split has rows"
    assert sum(len(part) for part in parts) == len(set().union(*parts)) == len(labelled)
    if config.split.strategy == "group":
        group = config.data.group_column
        assert not set(splits.train[group]) & set(splits.test[group])
    if config.split.strategy == "time":
        time = config.data.time_column
        assert splits.train[time].max() <= splits.test[time].min()


def test_the_features_are_known_and_exclude_the_target(config, sample_data):
    df = load_data(sample_data)
    names = [feature["name"] for feature in resolve_features(df, config)]
    assert names, "no usable feature columns"
    assert config.data.target not in names
    assert not set(config.data.exclude_columns) & set(names)
