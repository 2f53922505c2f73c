"""Batch scoring (`python -m <package> score`): a Parquet folder scored on a local Dask cluster
(a scheduler and two worker processes on 127.0.0.1) gives exactly the in-process scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlgen_runtime.batch import score_folder
from mlgen_runtime.clusters import dask_cluster
from mlgen_runtime.data import load_data
from mlgen_runtime.kinds import kind_of


def test_two_dask_workers_score_like_one_process(trained, tmp_path) -> None:
    config = trained.config
    rows = load_data(trained.data).drop(columns=[config.data.target], errors="ignore")
    folder = tmp_path / "in"
    folder.mkdir()
    for index, part in enumerate(np.array_split(np.arange(len(rows)), 3)):
        rows.iloc[part].to_parquet(folder / f"part-{index}.parquet", index=False)
    scorer = kind_of(config).batch_scorer(config, trained.bundle)
    local = score_folder(config, folder, tmp_path / "local", scorer=scorer)
    with dask_cluster(workers=2, folder=tmp_path) as scheduler:
        on_dask = score_folder(
            config, folder, tmp_path / "dask", engine="dask", scheduler=scheduler, scorer=scorer
        )
    assert on_dask.rows == local.rows == len(rows)
    for index in range(3):
        name = f"part-{index}.parquet"
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "dask" / name),
            pd.read_parquet(tmp_path / "local" / name),
            check_exact=True,
        )
