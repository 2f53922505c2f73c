"""Helpers shared by the serving tests: valid records, small real models, and live servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import uvicorn
import yaml
from fastapi import FastAPI
from mlgen_runtime.bundle import Bundle
from mlgen_runtime.features import (
    build_preprocessor,
    describe,
)
from mlgen_runtime.monitoring.drift import build_reference
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from sklearn.pipeline import Pipeline

# Generous: a live server normally starts in well under a second; this only bounds a hang (two
# gunicorn workers importing the runtime took 80-100 s on a 2-core machine at load 25).
STARTUP_LIMIT_SECONDS = 180


def typical_value(feature: dict[str, Any]) -> Any:
    """A value the model saw in training (or could have) for ``feature``."""
    kind = feature["type"]
    if kind == "numeric":
        low, high = feature.get("min"), feature.get("max")
        return 0.0 if low is None or high is None else (low + high) / 2
    if kind == "categorical" and feature.get("categories"):
        return feature["categories"][0]
    if kind == "boolean":
        return True
    if kind == "datetime":
        return "2024-05-01T13:45:00"
    return "some text"


def valid_record(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {feature["name"]: typical_value(feature) for feature in features}


def numeric_feature(features: list[dict[str, Any]]) -> dict[str, Any]:
    """A numeric feature with a training range (every test model here has one)."""
    return next(
        f for f in features if f["type"] == "numeric" and f.get("max") is not None
    )


def fit_bundle(frame: pd.DataFrame, target: pd.Series, task: str, estimator: Any) -> Bundle:
    """A bundle of ``estimator`` fitted on every numeric column of ``frame``, as training does."""
    features = [describe(frame[name], "numeric", "auto", "linear") for name in frame.columns]
    pipeline = Pipeline(
        [("prepare", build_preprocessor(features, [], "linear", 0)), ("model", estimator)]
    ).fit(frame, target)
    classes = None if task == "regression" else [str(c) for c in pipeline.classes_]
    metadata = {
        "model_name": "fitted-in-test",
        "model_version": "7",
        "task": task,
        "classes": classes,
        "features": features,
        "metrics": {},
    }
    return Bundle(pipeline, metadata, build_reference(frame, features))


def sample_value(text: str, name: str, labels: dict[str, str]) -> float:
    """The value of the sample ``name{labels}`` in a scrape, 0 when absent."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on a free local port; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def service_root(config: BaseModel, folder: Path) -> Path:
    """A service folder whose configs/config.yaml is ``config`` (for servers in child processes,
    which read their config from disk)."""
    (folder / "configs").mkdir(parents=True)
    settings = config.model_dump(mode="json", exclude={"root"})
    (folder / "configs" / "config.yaml").write_text(yaml.safe_dump(settings))
    return folder


def serve_command(port: int, workers: int = 1) -> list[str]:
    """What ``python -m <package> serve --port <port> --workers <workers>`` runs, for the
    service named by ``MLSERVICE_ROOT``: uvicorn for one worker, gunicorn for several."""
    return [
        sys.executable, "-c",
        "from mlgen_runtime.config import load_config; from mlgen_runtime.serving import run; "
        f"run(load_config(), port={port}, workers={workers})",
    ]


@dataclass(frozen=True)
class LiveServer:
    url: str
    pid: int


@contextmanager
def server_process(command: list[str], port: int, env: dict[str, str]) -> Iterator[LiveServer]:
    """Run a server command in a child process until ``/health`` answers.

    The child imports the same modules as the tests (``PYTHONPATH`` is this ``sys.path``,
    after any ``PYTHONPATH`` in ``env``).
    """
    url = f"http://127.0.0.1:{port}"
    paths = [env["PYTHONPATH"]] if "PYTHONPATH" in env else []
    child_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([*paths, *sys.path])}
    # A file, not a pipe: a chatty server could fill a pipe nobody reads and hang.
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(command, env=child_env, stderr=log)
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_SECONDS
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{command} exited early:\n{log.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not answer on {url}")
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield LiveServer(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STARTUP_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
