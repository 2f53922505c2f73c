"""Helpers shared by the tests: render the template from this checkout and run rendered services.

Rendered services share ONE virtualenv per test session (``service_venv``): the service
dependencies are installed once, then each rendered service is installed into it with
``--no-deps``. The venv is cached between sessions under ``~/.cache/mlgen-tests`` keyed by a
hash of the service's dependency list, so a developer pays the install once; CI on a fresh
machine builds it once per run. ``MLGEN_TEST_VENV`` points the tests at another folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_PYPROJECT = REPO / "template" / "pyproject.toml.jinja"
# The service's dependencies are the runtime's: its pyproject is part of the venv's cache key.
RUNTIME = REPO / "runtime"
# Tools the repo's tests run against rendered services, beside the service's own dev extra.
TEST_TOOLS = ["schemathesis>=4,<5"]


def render(dst: Path, answers: dict[str, Any] | None = None) -> Path:
    """Render the template in this checkout (working tree, committed or not) into ``dst``."""
    import copier

    with warnings.catch_warnings():
        # Copier warns that a dirty checkout is rendered as it is: exactly what tests want.
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(REPO),
            str(dst),
            data=answers or {},
            defaults=True,
            unsafe=False,
            quiet=True,
            overwrite=True,
            vcs_ref="HEAD",
        )
    return dst


@dataclass(frozen=True)
class Venv:
    """A virtualenv that rendered services are installed into."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def run(self, *args: str, cwd: Path, timeout: float = 900, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a command with this venv first on PATH; fail the test with its output."""
        full_env = {**os.environ, **service_env(cwd), **(env or {})}
        full_env["PATH"] = f"{self.bin}{os.pathsep}{full_env.get('PATH', '')}"
        full_env.pop("PYTHONPATH", None)
        proc = subprocess.run(
            list(args), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"`{' '.join(args)}` exited {proc.returncode} in {cwd}\n"
                f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
            )
        return proc

    def install_service(self, service: Path) -> None:
        """Install a rendered service into the shared venv without touching its deps."""
        self.run(str(self.python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(service),
                 cwd=service)

    def train_service(self, service: Path, package: str) -> None:
        """Install a rendered service (see :meth:`install_service`) and train its champion."""
        self.install_service(service)
        self.run(str(self.python), "-m", package, "train", cwd=service)


def service_env(root: Path) -> dict[str, str]:
    """Environment for running a service's commands: no telemetry, no stray tracking URI."""
    return {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_TRACKING_URI": "",
        "PYTHONHASHSEED": "0",
    }


def _runtime_extra(name: str) -> list[str]:
    project = tomllib.loads((RUNTIME / "pyproject.toml").read_text())["project"]
    return list(project["optional-dependencies"][name])


#: What a forecasting service adds to a recommendation service's dependencies.
FORECASTING_EXTRA = _runtime_extra("forecasting")
#: And what an audio service adds (soundfile, python-multipart, torch 2.13.0, onnx).
AUDIO_EXTRA = _runtime_extra("audio")


def deps_key() -> str:
    digest = hashlib.sha256(TEMPLATE_PYPROJECT.read_bytes())
    digest.update((RUNTIME / "pyproject.toml").read_bytes())
    digest.update(" ".join(TEST_TOOLS).encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def install_runtime(venv: Venv) -> None:
    """Put this checkout's runtime into the venv (no dependencies: those are cached).

    Every session reinstalls it: the cached venv may hold the runtime of another checkout or an
    older working tree, and services installed with ``--no-deps`` use whatever is there.
    """
    venv.run(str(venv.python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
             "--no-build-isolation", str(RUNTIME), cwd=REPO)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout: float, what: str) -> None:
    """Poll ``url`` until it answers 200; fail the test with the log if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-6000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer {url} in {timeout}s:\n{log.read_text()[-6000:]}")
        time.sleep(0.2)


@contextmanager
def running_server(venv: Venv, service: Path, package: str, env: dict | None = None,
                   timeout: float = 90, workers: int = 1) -> Iterator[str]:
    """Start the service's API on 127.0.0.1 and yield its base URL.

    One worker: uvicorn in one process. Several: the service's own ``serve --workers N``
    (gunicorn with uvicorn workers, shared metrics and feedback store).
    """
    port = free_port()
    full_env = {**os.environ, **service_env(service), **(env or {})}
    full_env["PATH"] = f"{venv.bin}{os.pathsep}{full_env.get('PATH', '')}"
    log = service / "server.log"
    if workers > 1:
        command = ["-m", package, "serve", "--workers", str(workers)]
    else:
        command = ["-m", "uvicorn", f"{package}.app:create_app", "--factory"]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(venv.python), *command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=service, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, f"{url}/health", log, timeout, "the service")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def call(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET ``url`` (or POST ``body`` as JSON); the status and the JSON answer (its text if it
    is not JSON), whatever the status."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw, status = response.read().decode(), response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read().decode(), error.code
    try:
        return status, json.loads(raw)
    except json.JSONDecodeError:
        return status, raw


def champion_metadata(service: Path) -> dict:
    """The metadata of the champion a rendered service exported."""
    return json.loads((service / "artifacts" / "champion" / "metadata.json").read_text())


def mlgen_new(brief: Path, out: Path, venv: Venv) -> str:
    """``mlgen new --brief ... --verify --no-llm --json`` (the README's first command, offline)
    with the shared test venv, which needs no package index; its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "mlgen", "new", "--brief", str(brief), "--out", str(out),
         "--verify", "--venv", str(venv.path), "--no-llm", "--json"],
        capture_output=True, text=True, timeout=2400,
        env={**os.environ, "MLFLOW_TRACKING_URI": "", "PIP_NO_INDEX": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def copier_copy(out: Path, answers: dict[str, str]) -> str:
    """``copier copy --defaults`` of this checkout's HEAD with ``answers``, as a user runs it;
    its output."""
    command = [str(Path(sys.executable).parent / "copier"), "copy", "--defaults",
               "--vcs-ref", "HEAD"]
    for key, value in answers.items():
        command += ["--data", f"{key}={value}"]
    proc = subprocess.run([*command, str(REPO), str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def quickstart(venv: Venv, root: Path, package: str) -> str:
    """What the README's quickstart does with a rendered service: install it, run its own
    tests, train; their output."""
    venv.install_service(root)
    tests = venv.run(str(venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     cwd=root, timeout=900)
    train = venv.run(str(venv.python), "-m", package, "train", cwd=root, timeout=900)
    return tests.stdout + train.stdout + train.stderr


def new_verified(brief: Path, out: Path, venv: Venv) -> dict[str, Any]:
    """``mlgen new --brief BRIEF --out OUT --verify --no-llm --json`` with the shared venv, offline;
    fail the test with its output unless it succeeds; its JSON summary."""
    output = mlgen_new(brief, out, venv)
    summary, _ = json.JSONDecoder().raw_decode(output[output.index("{"):])
    return summary


def readme_answers(service: Path, url: str) -> list[Any]:
    """Run every curl command of the service README's "The API" section, as written (joined
    continuation lines, ``localhost:8000`` pointed at ``url``), in the service folder; their
    JSON answers."""
    readme = (service / "README.md").read_text()
    block = readme[readme.index("## The API"):].replace("\\\n  ", "")
    answers = []
    for command in re.findall(r"^(curl .*)$", block, re.M):
        done = subprocess.run(["bash", "-c", command.replace("localhost:8000", url)],
                              cwd=service, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        answers.append(json.loads(done.stdout))
    return answers


def labels_of(answer: dict[str, Any]) -> list[str]:
    """The labels of a /predict or /predict/batch answer."""
    return [answer["label"]] if "label" in answer else [p["label"] for p in answer["predictions"]]
