"""The benchmarks still run: each one at a tiny size (correctness only, never timings)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """A benchmark script as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_drift_benchmark_quick(tmp_path, capsys):
    drift = load_benchmark("drift")
    output = tmp_path / "drift.json"
    args = ["--trials", "6", "--null-trials", "6", "--splits", "1", "--speed-rows", "5000"]
    assert drift.main([*args, "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    cells = {(c["shift"], c["window"]): c for c in results["cells"]}
    assert set(cells) == {(s.name, n) for s in drift.SHIFTS for n in drift.WINDOWS}
    assert all(c["trials"] == 6 and 0.0 <= c["rate"] <= 1.0 for c in cells.values())
    # Shifts far beyond any noise at 1,000 rows: every trial must see them.
    assert cells[("new_category", 1000)]["rate"] == 1.0
    assert cells[("missing", 1000)]["rate"] == 1.0
    assert cells[("mean", 10_000)]["rate"] == 1.0
    assert results["speed"]["rows"] == 5000 and results["speed"]["columns"] == 20
    assert results["table"] in capsys.readouterr().out
