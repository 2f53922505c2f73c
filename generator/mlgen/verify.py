"""Verification: prove a rendered service works on the user's data.

Steps, each a subprocess whose output is kept: make (or reuse) a virtualenv, install the service
into it in editable mode, run the service's tests, train on the user's data, then read the
champion's metadata and compare its test metric with the baseline's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlgen.environment import child_env
from mlgen.errors import VerifyError

STEP_TIMEOUT_SECONDS = 3600
# Where a service keeps the runtime it pins (see the template's pyproject.toml).
RUNTIME_DIR = Path("vendor") / "mlgen-runtime"
TAIL_LINES = 40


@dataclass(frozen=True)
class Verification:
    """The outcome of a successful verification."""

    primary_metric: str
    metric: float
    baseline: float
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    higher_is_better: bool

    @property
    def beats_baseline(self) -> bool:
        if self.higher_is_better:
            return self.metric > self.baseline
        return self.metric < self.baseline


def verify_service(
    service: Path,
    package: str,
    venv: Path | None = None,
    on_step: Callable[[str], None] = lambda step: None,
) -> Verification:
    """Install, test and train ``service``; raise :class:`VerifyError` on the first failure."""
    service = Path(service).absolute()
    venv = Path(venv).absolute() if venv else service / ".venv"
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q"]
    on_step("install the service")
    if python.exists():
        # A reused venv already holds the dependencies: install only the service and the
        # runtime it pins (its vendored copy, which may differ from the venv's).
        reinstall(python, service, service_deps=False)
    else:
        on_step(f"create virtualenv {venv}")
        _run("create virtualenv", [sys.executable, "-m", "venv", str(venv)], service, venv)
        # The build backend goes into the venv itself, so that installing the next service
        # into this venv (mlgen new --venv, mlgen update --verify) works offline.
        _run("install", [*pip, *build_requirements(service)], service, venv)
        _run("install", [*pip, "--no-build-isolation", "-e", f"{service}[dev]"], service, venv)
    on_step("run the service's tests")
    _run("tests", [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], service, venv)
    on_step("train on your data")
    _run("train", [str(python), "-m", package, "train"], service, venv)
    return read_verification(service / "artifacts" / "champion" / "metadata.json")


def reinstall(python: Path, service: Path, service_deps: bool = True) -> None:
    """Install ``service`` (editable) and the runtime it pins into ``python``'s environment.

    After an update the runtime in ``vendor/`` may be newer than the installed one: it is
    reinstalled from there. Dependencies already present are not fetched again
    (``service_deps=False``: none at all, for a venv known to hold them); with the venv's own
    build backend no index is needed unless a dependency is new, and a venv without the backend
    makes pip fetch it after all.
    """
    venv = Path(python).parent.parent
    pip = [str(python), "-m", "pip", "install", "-q"]
    deps = [] if service_deps else ["--no-deps"]
    for target in (["--force-reinstall", "--no-deps", str(service / RUNTIME_DIR)],
                   [*deps, "-e", str(service)]):
        try:
            _run("install", [*pip, "--no-build-isolation", *target], service, venv)
        except VerifyError:
            _run("install", [*pip, *target], service, venv)


def build_requirements(service: Path) -> list[str]:
    """The service's build backend requirements (``[build-system] requires``)."""
    pyproject = tomllib.loads((Path(service) / "pyproject.toml").read_text())
    return list(pyproject.get("build-system", {}).get("requires", ["setuptools"]))


def read_verification(metadata_file: Path) -> Verification:
    """The champion's test metric and its baseline, from the bundle's metadata.json."""
    try:
        metadata = json.loads(Path(metadata_file).read_text())
        primary = metadata["primary_metric"]
        return Verification(
            primary_metric=primary,
            metric=float(metadata["metrics"][primary]),
            baseline=float(metadata["baseline_metrics"][primary]),
            metrics=metadata["metrics"],
            baseline_metrics=metadata["baseline_metrics"],
            # The service states the metric's direction; mlgen keeps no second list of metrics.
            higher_is_better=bool(metadata["higher_is_better"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VerifyError(
            f"Training finished but its result could not be read from {metadata_file}: {exc!r}. "
            "The service's `train` should export the champion bundle there."
        ) from exc


def _run(step: str, command: list[str], cwd: Path, venv: Path) -> None:
    # The service uses its own local MLflow store during verification, whatever the shell says.
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI")
    env = {key: value for key, value in child_env().items() if key not in dropped}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise VerifyError(
            f"Step '{step}' did not finish in {STEP_TIMEOUT_SECONDS} s: {' '.join(command)}"
        ) from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).rstrip().splitlines()
        tail = "\n".join(output[-TAIL_LINES:])
        raise VerifyError(
            f"Step '{step}' failed (exit {done.returncode}) in {cwd}:\n  {' '.join(command)}\n"
            f"--- last {min(TAIL_LINES, len(output))} lines of its output ---\n{tail}"
        )
