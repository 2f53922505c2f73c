"""Local stand-ins for the shared infrastructure, started on 127.0.0.1 without systemd.

A Dask cluster (a scheduler and worker processes), a PostgreSQL server and an MLflow tracking
server backed by it: the service's integration tests, the runtime's tests and
``benchmarks/scale.py`` start them with these context managers, which stop what they started
(and only that) on exit. Also the service's own processes as a cluster runs them: several
``train`` started at once, several ``serve`` on one host, and what a tracking server kept.
PostgreSQL comes from the Debian package (``apt-get install postgresql``); as root the server
runs as the ``postgres`` user, as PostgreSQL requires.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from .engine import WORKER_ENVIRON

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM to the process group it leads, SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _wait_port(
    port: int, process: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {_tail(log)}")
        with suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} in {timeout} s: {_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.is_file() else ""


def _bin(name: str) -> str:
    """A console script of this Python's environment (dask, mlflow), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if not found:
        raise RuntimeError(f"`{name}` is not installed in {sys.prefix} nor on PATH.")
    return found


@contextmanager
def dask_cluster(
    workers: int = 2, env: Mapping[str, str] | None = None, folder: Path | None = None
) -> Iterator[str]:
    """``dask scheduler`` plus ``workers`` single-threaded worker processes; yields the
    scheduler's address. ``env`` is added to the workers' environment (e.g. a PYTHONPATH
    where they find the service's package)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="dask-"))
    port = free_port()
    address = f"tcp://{HOST}:{port}"
    environment = {**os.environ, **WORKER_ENVIRON, **(env or {})}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        log = folder / "scheduler.log"
        processes.append(
            subprocess.Popen(
                [_bin("dask"), "scheduler", "--host", HOST, "--port", str(port), "--no-dashboard"],
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        )
        _wait_port(port, processes[0], "dask scheduler", log)
        log = folder / "workers.log"
        processes.append(
            subprocess.Popen(
                [
                    _bin("dask"),
                    "worker",
                    address,
                    "--nworkers",
                    str(workers),
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--host",
                    HOST,
                    "--memory-limit",
                    "2GiB",
                ],
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)


def _as_postgres() -> list[str]:
    """How to run PostgreSQL's programs: as the ``postgres`` user when we are root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def postgres_bin(name: str) -> str:
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = versions[0] if versions else shutil.which(name)
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed: apt-get install postgresql (Debian)."
        )
    return found


@contextmanager
def postgres(database: str = "mlgen") -> Iterator[str]:
    """A throwaway PostgreSQL server; yields a ``postgresql+psycopg2://`` URL of ``database``.

    The data folder lies in the system's temporary folder (the ``postgres`` user must reach
    it) and is removed on exit.
    """
    folder = Path(tempfile.mkdtemp(prefix="mlgen-pg-"))
    data, log = folder / "data", folder / "server.log"
    owner = _as_postgres()
    if owner:
        shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o700)
    port = free_port()
    pg_ctl = [*owner, postgres_bin("pg_ctl"), "-D", str(data)]
    started = False
    try:
        subprocess.run(
            [
                *owner,
                postgres_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *pg_ctl,
                "-l",
                str(log),
                "-w",
                "-o",
                f"-p {port} -k {folder} -c listen_addresses={HOST} -c max_connections=200",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        started = True
        subprocess.run(
            [
                *owner,
                postgres_bin("createdb"),
                "-h",
                HOST,
                "-p",
                str(port),
                "-U",
                "postgres",
                database,
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://postgres@{HOST}:{port}/{database}"
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"PostgreSQL failed ({' '.join(exc.cmd[-3:])}): {exc.stderr.decode(errors='replace')}"
            f" {_tail(log)}"
        ) from exc
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Another database on the server of ``url``; its URL."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path) -> Iterator[str]:
    """``mlflow server`` on ``backend_uri`` serving artifacts from ``artifacts``; yields its
    http URL. One worker and no job execution: 2 processes instead of ~15."""
    port = free_port()
    log = Path(artifacts).parent / f"mlflow-{port}.log"
    environment = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    process = subprocess.Popen(
        [
            _bin("mlflow"),
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=environment,
        start_new_session=True,
    )
    url = f"http://{HOST}:{port}"
    try:
        _wait_healthy(url, process, "mlflow server", log)
        yield url
    finally:
        _stop(process)


def _wait_healthy(
    url: str, process: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 180
) -> None:
    """Until ``url``/health answers 200; the process's log in the error if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {_tail(log)}")
        with suppress(OSError), urllib.request.urlopen(url + "/health", timeout=2) as answer:
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not healthy in {timeout:.0f} s: {_tail(log)}")
        time.sleep(0.3)


# ``python -m <package>`` of any service, without knowing its package: the runtime's CLI.
CLI = "import sys; from mlgen_runtime.cli import main; sys.exit(main(sys.argv[1:]))"


def service_command(root: Path, *args: str) -> list[str]:
    """The command line running ``python -m <package> --root root ARGS`` in this Python."""
    return [sys.executable, "-c", CLI, "--root", str(root), *args]


def train_at_once(root: Path, n: int, env: Mapping[str, str]) -> list[tuple[int, str]]:
    """Run ``train`` of the service at ``root`` in ``n`` processes started together (tuning
    worker i each, so their searches of a shared study are seeded apart); each one's exit code
    and output."""
    processes = [
        subprocess.Popen(
            service_command(root, "train"),
            env={**env, "MLSERVICE_TUNING_WORKER": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(n)
    ]
    outputs = [p.communicate(timeout=1800)[0].decode(errors="replace") for p in processes]
    return [(p.returncode, out) for p, out in zip(processes, outputs, strict=True)]


@contextmanager
def serving_processes(
    root: Path, count: int, env: Mapping[str, str], folder: Path | None = None
) -> Iterator[list[str]]:
    """``count`` processes serving the service at ``root`` (``serve`` on free ports of
    127.0.0.1), as pods of one deployment; yields their base URLs once every one is healthy."""
    folder = Path(folder or tempfile.mkdtemp(prefix="serve-"))
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for _ in range(count):
            port = free_port()
            log = folder / f"serve-{port}.log"
            process = subprocess.Popen(
                service_command(root, "serve", "--port", str(port)),
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )
            started.append((process, f"http://{HOST}:{port}", log))
        for process, url, log in started:
            _wait_healthy(url, process, f"serve on {url}", log)
        yield [url for _, url, _ in started]
    finally:
        for process, _, _ in started:
            _stop(process)


@dataclass(frozen=True)
class Tracked:
    """The top-level runs of an experiment on a tracking server and the versions of a model."""

    statuses: list[str]
    # The primary metric on the test split of each finished run.
    test_metrics: list[float]
    versions: list[str]


def tracked(url: str, experiment: str, model: str, metric: str) -> Tracked:
    """What the tracking server at ``url`` kept of an experiment's runs and a model's versions."""
    import mlflow

    client = mlflow.MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs([found.experiment_id], filter_string="tags.mlflow.parentRunId IS NULL")
        if found is not None
        else []
    )
    return Tracked(
        statuses=[run.info.status for run in runs],
        test_metrics=[
            run.data.metrics.get(f"test_{metric}", float("nan"))
            for run in runs
            if run.info.status == "FINISHED"
        ],
        versions=sorted(
            (v.version for v in client.search_model_versions(f"name='{model}'")), key=int
        ),
    )
