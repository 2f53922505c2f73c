"""Verification: prove a rendered service works on the user's data.

Steps, each a subprocess whose output is kept: make (or reuse) a virtualenv, install the service
into it in editable mode, run the service's tests, train on the user's data, then read the
champion's metadata and compare its test metric with the baseline's. A recommendation service is
then served and asked over HTTP: top-k for a user of the data, the same for a user it never saw
(cold start, popularity), and items related to that user's items; a forecasting service for a
forecast; an audio service gets a clip of its sample as a multipart upload, then files it must
refuse (not audio, empty, too long); a text service a text of its data, then records it must
refuse.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from mlgen.environment import child_env
from mlgen.errors import MlgenError, VerifyError

STEP_TIMEOUT_SECONDS = 3600
# Where a service keeps the runtime it pins (see the template's pyproject.toml).
RUNTIME_DIR = Path("vendor") / "mlgen-runtime"
TAIL_LINES = 40
SERVER_START_SECONDS = 120
# The user no service has seen: its answer must be a cold start.
UNKNOWN_USER = "mlgen-verify-unknown-user"


@dataclass(frozen=True)
class Verification:
    """The outcome of a successful verification."""

    primary_metric: str
    metric: float
    baseline: float
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    higher_is_better: bool
    # What the served API answered (one line per call), for kinds checked over HTTP.
    calls: tuple[str, ...] = ()
    # Why the baseline itself serves (a forecaster's seasonal naive, when the run's model did
    # not beat it significantly); empty when the model serves.
    baseline_serves: str = ""

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
    python = install_service(service, venv, on_step)
    venv = python.parent.parent
    on_step("run the service's tests")
    run_step("tests", [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], service, venv)
    on_step("train on your data")
    run_step("train", [str(python), "-m", package, "train"], service, venv)
    result = read_verification(service / "artifacts" / "champion" / "metadata.json")
    answers = yaml.safe_load((service / ".copier-answers.yml").read_text()) or {}
    if answers.get("kind") == "recommendation":
        on_step("serve and ask for recommendations")
        result = replace(result, calls=check_recommendations(service, package, venv, answers))
    if answers.get("kind") == "forecasting":
        on_step("serve and ask for a forecast")
        result = replace(result, calls=check_forecasts(service, package, venv))
    if answers.get("kind") == "audio":
        on_step("serve and upload clips")
        result = replace(result, calls=check_clips(service, package, venv, answers))
    if answers.get("kind") == "text":
        on_step("serve and send texts")
        result = replace(result, calls=check_texts(service, package, venv, answers))
    return result


def package_name(service: Path) -> str:
    """The import name of a rendered service, from its answers file."""
    answers = yaml.safe_load((Path(service) / ".copier-answers.yml").read_text())
    return str(answers["package_name"])


def install_service(
    service: Path, venv: Path | None = None, on_step: Callable[[str], None] = lambda step: None
) -> Path:
    """Install ``service`` into ``venv`` (default: a new ``<service>/.venv``); its python."""
    venv = Path(venv).absolute() if venv else service / ".venv"
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q"]
    on_step("install the service")
    if python.exists():
        # A reused venv holds most dependencies, not necessarily all: another kind's service
        # left it without this one's (the forecasting extra's statsmodels). pip keeps what is
        # installed and fetches only what is missing.
        reinstall(python, service)
    else:
        on_step(f"create virtualenv {venv}")
        run_step("create virtualenv", [sys.executable, "-m", "venv", str(venv)], service, venv)
        # The build backend goes into the venv itself, so that installing the next service
        # into this venv (mlgen new --venv, mlgen update --verify) works offline.
        run_step("install", [*pip, *build_requirements(service)], service, venv)
        run_step("install", [*pip, "--no-build-isolation", "-e", f"{service}[dev]"], service,
                 venv)
    return python


def check_clips(
    service: Path, package: str, venv: Path, answers: dict[str, Any]
) -> tuple[str, ...]:
    """Serve the trained service, upload a clip of its sample (multipart, as the README's curl
    does) and expect a label of the model; then upload what it must refuse with a 4xx naming
    the problem: bytes that are not audio, an empty file, a clip longer than the limit."""
    import pandas as pd

    manifest = service / "data" / "sample" / "manifest.csv"
    clip = manifest.parent / str(pd.read_csv(manifest)["path"].iloc[0])
    too_long = _tone_wav(float(answers.get("max_clip_seconds") or 10.0) + 1.0,
                         int(answers.get("sample_rate") or 16000))
    calls = []
    with Served(service, package, venv) as url:
        with urllib.request.urlopen(f"{url}/metadata", timeout=60) as response:
            classes = json.loads(response.read())["classes"]
        status, body = _upload(f"{url}/predict", clip.name, clip.read_bytes())
        if status != 200 or body.get("label") not in classes:
            raise VerifyError(f"POST /predict with {clip.name} answered {status}: {body}")
        calls.append(f"POST /predict {clip.name}: {status}, {body['label']!r} "
                     f"(p={body['probabilities'][body['label']]:.3f})")
        for name, data, problem in (("notes.wav", b"these are not sounds", "not_audio"),
                                    ("empty.wav", b"", "empty"),
                                    ("long.wav", too_long, "too_long")):
            status, body = _upload(f"{url}/predict", name, data)
            if not (400 <= status < 500 and isinstance(body, dict)
                    and body.get("error") == problem):
                raise VerifyError(f"POST /predict with {name} should be refused as {problem}; "
                                  f"it answered {status}: {body}")
            calls.append(f"POST /predict {name}: {status} {problem}")
    return tuple(calls)


def check_texts(
    service: Path, package: str, venv: Path, answers: dict[str, Any]
) -> tuple[str, ...]:
    """Serve the trained service, send it a text of its data and expect a label of the model;
    then an empty text and a record without one, each refused with a 422 naming the field."""
    column = str(answers["text_column"])
    example = answers.get("example_record") or {}
    text = example.get(column) or "A text to classify."
    calls = []
    with Served(service, package, venv) as url:
        with urllib.request.urlopen(f"{url}/metadata", timeout=60) as response:
            classes = json.loads(response.read())["classes"]
        status, body = post_json(f"{url}/predict", {column: text})
        if status != 200 or body.get("label") not in classes:
            raise VerifyError(f"POST /predict with a text of the data answered {status}: {body}")
        calls.append(f"POST /predict (a text of the data): {status}, {body['label']!r}")
        for what, record in (("an empty text", {column: ""}), ("no text", {})):
            status, body = post_json(f"{url}/predict", record)
            fields = [p.get("field") for p in body.get("fields", [])] if isinstance(
                body, dict) else []
            if status != 422 or column not in fields:
                raise VerifyError(f"POST /predict with {what} should be a 422 naming {column!r}; "
                                  f"it answered {status}: {body}")
            calls.append(f"POST /predict ({what}): {status} naming {column!r}")
    return tuple(calls)


def _tone_wav(seconds: float, rate: int) -> bytes:
    """A 16-bit mono WAV of a quiet tone, ``seconds`` long."""
    import io

    import numpy as np

    samples = (3000 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def _upload(url: str, name: str, data: bytes) -> tuple[int, Any]:
    """POST ``data`` as the multipart field ``file`` (what ``curl -F file=@name`` sends)."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"'
            f"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() + data + (
        f"\r\n--{boundary}--\r\n").encode()
    return _send(urllib.request.Request(
        url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}))


def check_forecasts(service: Path, package: str, venv: Path) -> tuple[str, ...]:
    """Serve the trained service, ask /forecast for the first series of the model over its
    horizon (with future covariates when the model reads them) and feed back the first step's
    forecast as its actual value; raise :class:`VerifyError` on any answer that is not one
    point with an interval per step."""
    with Served(service, package, venv) as url:
        with urllib.request.urlopen(f"{url}/metadata", timeout=60) as response:
            meta = json.loads(response.read())
        horizon = int(meta["horizon"])
        body: dict[str, Any] = {"horizon": horizon}
        if meta["series"] and meta["series"][0]:
            body["series_id"] = meta["series"][0]
        known = [c["name"] for c in meta["covariates"] if c.get("known_future")]
        if known and meta["family"] == "lightgbm":
            body["future_covariates"] = {name: [0.0] * horizon for name in known}
        status, answer = post_json(f"{url}/forecast", body)
        points = answer.get("forecasts") if isinstance(answer, dict) else None
        if status != 200 or not isinstance(points, list) or len(points) != horizon:
            raise VerifyError(f"POST /forecast {body} answered {status}: {answer}")
        if not all(p["lower"] <= p["mean"] <= p["upper"] for p in points):
            raise VerifyError(f"POST /forecast returned a mean outside its interval: {points}")
        feedback = {"time": points[0]["time"], "value": points[0]["mean"]}
        if "series_id" in body:
            feedback["series_id"] = body["series_id"]
        status, receipt = post_json(f"{url}/feedback", feedback)
        if status != 200:
            raise VerifyError(f"POST /feedback {feedback} answered {status}: {receipt}")
    return (
        f"POST /forecast: {status}, {horizon} steps from {points[0]['time']}, first "
        f"{points[0]['mean']:.4g} [{points[0]['lower']:.4g}, {points[0]['upper']:.4g}]",
        f"POST /feedback: {status}, error {receipt['error']:.4g}",
    )


def check_recommendations(
    service: Path, package: str, venv: Path, answers: dict[str, Any]
) -> tuple[str, ...]:
    """Serve the trained service and call /recommend for a user of the data and for an unknown
    one, and /recommend/similar for the first one's items; raise :class:`VerifyError` on any
    answer that is not a ranked list with the strategy expected."""
    example = answers.get("example_record") or {}
    user, items = example.get("user_id"), example.get("items") or []
    if user is None or not items:
        user, items = _first_user(service, answers)
    k = int(answers.get("top_k") or 10)
    calls = []
    with Served(service, package, venv) as url:
        status, body = post_json(f"{url}/recommend", {"user_id": user, "k": k})
        calls.append(_checked("/recommend", f"user {user!r}", status, body, k))
        status, body = post_json(f"{url}/recommend", {"user_id": UNKNOWN_USER, "k": k})
        calls.append(_checked("/recommend", "a user never seen", status, body, k))
        if body.get("strategy") != "popularity":
            raise VerifyError(
                f"A user the model never saw should get the popularity fallback; the service "
                f"answered with strategy {body.get('strategy')!r}: {body}"
            )
        status, body = post_json(f"{url}/recommend/similar", {"items": items, "k": k})
        calls.append(_checked("/recommend/similar", f"{len(items)} items", status, body, k))
        repeated = set(map(str, items)) & {str(entry["item_id"]) for entry in body["items"]}
        if repeated:
            raise VerifyError(f"/recommend/similar returned the items it was asked about: "
                              f"{sorted(repeated)}")
    return tuple(calls)


def _first_user(service: Path, answers: dict[str, Any]) -> tuple[Any, list[Any]]:
    import pandas as pd

    rows = pd.read_csv(service / "data" / "sample.csv")
    user_column, item_column = answers["user_column"], answers["item_column"]
    user = rows[user_column].tolist()[0]
    items = rows.loc[rows[user_column] == user, item_column].head(3).tolist()
    return user, items


def _checked(route: str, what: str, status: int, body: Any, k: int) -> str:
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise VerifyError(f"POST {route} for {what} answered {status}: {body}")
    if not 0 < len(body["items"]) <= k:
        raise VerifyError(f"POST {route} for {what} returned {len(body['items'])} items "
                          f"(1 to {k} expected): {body}")
    first = body["items"][0].get("item_id")
    return (f"POST {route} ({what}): {status}, {len(body['items'])} items by "
            f"{body.get('strategy')}, first {first!r}")


def post_json(url: str, body: Any) -> tuple[int, Any]:
    return _send(urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    ))


def _send(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text


class Served:
    """The service's own `serve` command on a free local port, stopped on exit."""

    def __init__(self, service: Path, package: str, venv: Path) -> None:
        self.service, self.package, self.venv = service, package, venv

    def __enter__(self) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.log = self.service / ".mlgen-verify-serve.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "python"), "-m", self.package, "serve", "--host",
                 "127.0.0.1", "--port", str(port)],
                cwd=self.service, env=_env(self.venv), stdout=out, stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if self.proc.poll() is not None:
                self._stop()
                raise VerifyError(f"`{self.package} serve` exited with {self.proc.returncode}:\n"
                                  + self._tail())
            try:
                with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:
                    if response.status == 200:
                        return url
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self._stop()
                raise VerifyError(f"The service did not become ready in {SERVER_START_SECONDS} s:"
                                  "\n" + self._tail())
            time.sleep(0.3)

    def __exit__(self, *exc: object) -> None:
        self._stop()
        self.log.unlink(missing_ok=True)

    def _tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-TAIL_LINES:])

    def _stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
            run_step("install", [*pip, "--no-build-isolation", *target], service, venv)
        except VerifyError:
            run_step("install", [*pip, *target], service, venv)


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
            baseline_serves=_baseline_serves(metadata),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VerifyError(
            f"Training finished but its result could not be read from {metadata_file}: {exc!r}. "
            "The service's `train` should export the champion bundle there."
        ) from exc


def _baseline_serves(metadata: dict[str, Any]) -> str:
    instead = metadata.get("served_instead_of")
    if not isinstance(instead, dict):
        return ""
    return (
        f"{metadata.get('model_family', 'the baseline')} serves as the first champion: the "
        f"trained {instead.get('family')} (v{instead.get('version')}) is kept as a challenger, "
        f"{instead.get('reason')}"
    )


def _env(venv: Path) -> dict[str, str]:
    # The service uses its own local MLflow store during verification, whatever the shell says.
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI")
    env = {key: value for key, value in child_env().items() if key not in dropped}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_step(
    step: str, command: list[str], cwd: Path, venv: Path, error: type[MlgenError] = VerifyError
) -> str:
    """Run one step in ``venv``; its output, or ``error`` with the output's tail."""
    env = _env(venv)
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
        raise error(
            f"Step '{step}' failed (exit {done.returncode}) in {cwd}:\n  {' '.join(command)}\n"
            f"--- last {min(TAIL_LINES, len(output))} lines of its output ---\n{tail}"
        )
    return done.stdout
