"""Batch scoring of a Parquet folder (``score``): in-process and on a two-worker Dask cluster
give the same files, agree with the online API's answers, and bad input is refused whole."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlgen_runtime.batch import score_folder
from mlgen_runtime.cli import main
from mlgen_runtime.clusters import dask_cluster
from mlgen_runtime.data import load_data
from mlgen_runtime.engine import dask_client
from mlgen_runtime.errors import DataValidationError, UsageError
from mlgen_runtime.serving.predictor import Predictor
from service_fixture import SERVICE_ROOT


@pytest.fixture(scope="module")
def parquet_folder(tmp_path_factory, trained_service, sample_data) -> Path:
    """The sample rows without the target, as 4 partitions (one in a subfolder)."""
    df = load_data(sample_data).drop(columns=[trained_service.config.data.target])
    folder = tmp_path_factory.mktemp("batch-in")
    (folder / "2026").mkdir()
    for index, part in enumerate(np.array_split(np.arange(len(df)), 4)):
        where = folder / "2026" if index == 3 else folder
        df.iloc[part].to_parquet(where / f"part-{index}.parquet", index=False)
    return folder


def read_all(folder: Path) -> dict[str, pd.DataFrame]:
    return {
        str(path.relative_to(folder)): pd.read_parquet(path)
        for path in sorted(folder.rglob("*.parquet"))
    }


def test_local_scores_match_the_online_api(trained_service, parquet_folder, tmp_path) -> None:
    result = score_folder(trained_service.config, parquet_folder, tmp_path / "out")
    outputs = read_all(tmp_path / "out")
    assert sorted(outputs) == ["2026/part-3.parquet", *(f"part-{i}.parquet" for i in range(3))]
    assert result.rows == sum(len(frame) for frame in read_all(parquet_folder).values())
    predictor = Predictor(trained_service.bundle)
    for name, frame in read_all(parquet_folder).items():
        online = predictor.predict(frame.to_dict("records"))
        scored = outputs[name]
        assert scored["prediction"].tolist() == online.predictions
        for key in predictor.keys:
            np.testing.assert_allclose(
                scored[f"proba_{key}"], [p[key] for p in online.probabilities], rtol=1e-12
            )


def test_two_dask_workers_write_the_same_files_as_in_process(
    trained_service, parquet_folder, tmp_path
) -> None:
    local = score_folder(trained_service.config, parquet_folder, tmp_path / "local")
    # The workers import the service's package by name, as an installed service's would.
    path = os.pathsep.join(filter(None, [str(SERVICE_ROOT / "src"), os.environ.get("PYTHONPATH")]))
    with dask_cluster(workers=2, env={"PYTHONPATH": path}, folder=tmp_path) as scheduler:
        from distributed import Client

        distributed = score_folder(
            trained_service.config,
            parquet_folder,
            tmp_path / "dask",
            engine="dask",
            scheduler=scheduler,
        )
        with Client(scheduler) as client:
            # Both workers took part.
            assert len(client.scheduler_info()["workers"]) == 2
            # glibc's own malloc thresholds (engine.WORKER_ENVIRON), one native thread.
            assert _worker_environment(client) == {(None, "1")}
    assert (distributed.engine, distributed.rows) == ("dask", local.rows)
    expected, actual = read_all(tmp_path / "local"), read_all(tmp_path / "dask")
    assert sorted(expected) == sorted(actual)
    for name in expected:
        pd.testing.assert_frame_equal(actual[name], expected[name], check_exact=True)


def _worker_environment(client) -> set[tuple[str | None, str | None]]:
    """Each worker's MALLOC_TRIM_THRESHOLD_ and OMP_NUM_THREADS (functions the workers can
    unpickle: they do not import this module)."""
    trims, threads = (
        client.run(os.getenv, name) for name in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")
    )
    return {(trims[worker], threads[worker]) for worker in trims}


def test_a_local_cluster_started_for_a_job_runs_workers_as_the_deployed_ones_do(
    trained_service,
) -> None:
    """No scheduler configured: `engine.workers` one-thread processes, started and stopped
    with the job, without Dask's MALLOC_TRIM_THRESHOLD_ (it made scoring 12-20% slower)."""
    config = trained_service.config.model_copy(
        update={"engine": trained_service.config.engine.model_copy(update={"workers": 2})}
    )
    with dask_client(config) as client:
        environments = _worker_environment(client)
        threads = [w["nthreads"] for w in client.scheduler_info()["workers"].values()]
    assert environments == {(None, "1")} and threads == [1, 1]


def test_a_missing_column_is_named_and_nothing_is_written(
    trained_service, parquet_folder, tmp_path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    frame = pd.read_parquet(parquet_folder / "part-0.parquet")
    frame.to_parquet(bad / "a.parquet", index=False)
    # Any service's data: its first feature is the column the partition lacks.
    column = trained_service.bundle.features[0]["name"]
    frame.drop(columns=[column]).to_parquet(bad / "b.parquet", index=False)
    with pytest.raises(DataValidationError, match=rf"b\.parquet lacks the column\(s\) {column}"):
        score_folder(trained_service.config, bad, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


def test_a_partition_that_cannot_be_scored_leaves_no_output(
    trained_service, parquet_folder, tmp_path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    frame = pd.read_parquet(parquet_folder / "part-0.parquet")
    frame.to_parquet(bad / "a.parquet", index=False)
    # A numeric feature holding text: the partition cannot be scored.
    numeric = next(f["name"] for f in trained_service.bundle.features if f["type"] == "numeric")
    frame.assign(**{numeric: "long"}).to_parquet(bad / "b.parquet", index=False)
    with pytest.raises(DataValidationError, match=r"Cannot score .*b\.parquet"):
        score_folder(trained_service.config, bad, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.parquet"))
    assert not list((tmp_path / "out").rglob("*.partial"))


def test_the_command_refuses_an_output_folder_with_old_scores(
    trained_service, parquet_folder, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.parquet").write_bytes(b"")
    root = str(trained_service.config.root)
    code = main(["--root", root, "score", "--data", str(parquet_folder), "--out", str(out)])
    assert code == 2
    assert "already holds Parquet files" in capsys.readouterr().err
    with pytest.raises(UsageError, match="inside --data"):
        score_folder(trained_service.config, parquet_folder, parquet_folder / "scores")
    assert (
        main(
            ["--root", root, "score", "--data", str(parquet_folder), "--out", str(tmp_path / "new")]
        )
        == 0
    )
    assert "Scored" in capsys.readouterr().out
