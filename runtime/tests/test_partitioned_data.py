"""Training data as a folder of Parquet partitions, as `score --data` takes, possibly larger
than a training process should hold: read whole when it fits ``data.max_rows``, else a seeded
simple random sample of exactly that many rows, read one partition at a time, the same on the
Dask engine; training records how many rows the data had and how many it used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlgen_runtime.data import data_rows, file_hash, load_data, load_training_data
from mlgen_runtime.errors import DataValidationError
from mlgen_runtime.evaluate import evaluate_champion
from mlgen_runtime.train import train
from service_fixture import isolated_config

# Uneven partitions, the first in a subfolder (a date-partitioned layout).
SHARES = (0.05, 0.15, 0.3, 0.5)


def write_partitions(frame: pd.DataFrame, folder: Path) -> list[pd.DataFrame]:
    """``frame`` cut into len(SHARES) partitions of those shares; the parts in file order."""
    cuts = np.round(np.cumsum((0, *SHARES)) * len(frame)).astype(int)
    parts = [frame.iloc[a:b].reset_index(drop=True) for a, b in zip(cuts, cuts[1:], strict=False)]
    for index, part in enumerate(parts):
        # Files are read in the order of their paths: "2025/part-0" first.
        path = folder / ("2025" if index == 0 else ".") / f"part-{index}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(path, index=False)
    return parts


@pytest.fixture(scope="module")
def numbered(sample_data, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The service's data with each row's number, as partitions."""
    frame = load_data(sample_data)
    frame.insert(0, "row_number", np.arange(len(frame)))
    folder = tmp_path_factory.mktemp("numbered")
    write_partitions(frame, folder)
    return folder, frame


def test_a_folder_that_fits_is_read_whole_in_file_order(numbered) -> None:
    folder, frame = numbered
    read = load_data(folder)
    pd.testing.assert_frame_equal(read, frame, check_dtype=False)
    assert load_data(folder, max_rows=len(frame)).equals(read)
    assert data_rows(folder) == len(frame)


def test_a_larger_folder_gives_a_seeded_random_sample_of_exactly_max_rows(numbered) -> None:
    folder, frame = numbered
    size = len(frame) // 4
    sample = load_data(folder, max_rows=size, seed=7)
    assert len(sample) == size and sample["row_number"].is_unique
    # Whole rows of the data, unchanged.
    original = frame.set_index("row_number").loc[sample["row_number"]].reset_index()
    pd.testing.assert_frame_equal(sample, original, check_dtype=False)
    assert load_data(folder, max_rows=size, seed=7).equals(sample)
    assert not load_data(folder, max_rows=size, seed=8).equals(sample)

    # Uniform over rows, whatever the partition sizes: over many seeds, each partition gives
    # its share of the sample, and its rows come from anywhere in it (not its first rows).
    bounds = np.round(np.cumsum((0, *SHARES)) * len(frame)).astype(int)
    counts = np.array(
        [
            np.histogram(load_data(folder, max_rows=size, seed=s)["row_number"], bounds)[0]
            for s in range(60)
        ]
    )
    expected = size * np.diff(bounds) / len(frame)
    spread = np.sqrt(expected * (1 - np.diff(bounds) / len(frame)))  # binomial sd, >= hypergeom
    assert np.all(np.abs(counts.mean(axis=0) - expected) < 4 * spread / np.sqrt(60) + 0.5)
    last = sample["row_number"][sample["row_number"] >= bounds[-2]]
    assert abs(last.mean() - (bounds[-2] + bounds[-1] - 1) / 2) < 0.2 * (bounds[-1] - bounds[-2])


def test_the_dask_engine_reads_the_same_sample(numbered, tmp_path) -> None:
    folder, frame = numbered
    config = isolated_config(
        tmp_path,
        {
            "data": {"path": str(folder), "max_rows": len(frame) // 3},
            "engine": {"name": "dask", "workers": 2},
        },
    )
    on_cluster = load_training_data(config)
    in_process = load_data(folder, max_rows=len(frame) // 3, seed=config.seed)
    pd.testing.assert_frame_equal(on_cluster, in_process, check_exact=True)


def test_bad_folders_are_refused_naming_the_file(numbered, tmp_path) -> None:
    folder, frame = numbered
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match="holds no .parquet files"):
        load_data(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    write_partitions(frame, mixed)
    column = frame.columns[-1]
    pd.read_parquet(mixed / "part-1.parquet").drop(columns=[column]).to_parquet(
        mixed / "part-1.parquet"
    )
    with pytest.raises(
        DataValidationError, match=rf"part-1\.parquet lacks the column\(s\) {column}"
    ):
        load_data(mixed)
    broken = tmp_path / "broken"
    write_partitions(frame, broken)
    (broken / "part-2.parquet").write_text("id,value\n1,2\n")
    with pytest.raises(DataValidationError, match=r"part-2\.parquet is not a readable Parquet"):
        load_data(broken, max_rows=10)
    (broken / "2025" / "part-0.parquet").write_text("id,value\n1,2\n")
    with pytest.raises(DataValidationError, match=r"part-0\.parquet is not a readable Parquet"):
        load_data(broken)


def test_training_on_a_larger_folder_fits_the_sample_and_says_so(sample_data, tmp_path) -> None:
    frame = load_data(sample_data)
    folder = tmp_path / "data"
    write_partitions(frame, folder)
    size = len(frame) * 3 // 4
    config = isolated_config(
        tmp_path / "service",
        {"data": {"path": str(folder), "max_rows": size}, "tuning": {"trials": 0}},
    )
    result = train(config)
    metadata = result.metadata
    assert metadata["data_rows"] == len(frame)
    assert sum(metadata["rows"].values()) == size
    assert metadata["data_hash"] == file_hash(folder)
    # Evaluation re-reads the same sample, so its test split is training's.
    report = evaluate_champion(config)
    assert report["rows"] == metadata["rows"]["test"]
    # A changed partition is another data set.
    part = folder / "part-1.parquet"
    pd.read_parquet(part).iloc[1:].to_parquet(part, index=False)
    assert file_hash(folder) != metadata["data_hash"]
