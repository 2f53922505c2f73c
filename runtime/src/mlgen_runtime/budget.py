"""The *time budget* of one training run: ``tuning.time_budget_seconds``, counted from the start
of the ``train`` process, that model selection and tuning may spend, less a reserve for the
steps after them (the final fit, evaluation with bootstrap intervals, plots and permutation
importance, the serving parity check, MLflow logging and the bundle export).

A fixed reserve (12 s) held on a quiet machine and was 3-13x short under a load average of 20
(docs/benchmarks.md, "Model quality against FLAML"): on a shared machine everything is slower,
the imports before ``train`` starts too. So the reserve is estimated from this run's own
measurements:

* the *slowdown*: this process's wall time over its CPU time so far (about 1 on an idle machine,
  about 10 when ten busy processes share two cores), the largest seen in the run;
* the steps after the search that do not depend on the model (:data:`TAIL_CPU_SECONDS`, CPU
  seconds measured on this repository's benchmarks, and the drift reference's
  :data:`DRIFT_CPU_SECONDS_PER_NUMERIC` per numeric feature), times the slowdown;
* the model's own part, measured by cross-validation: the refit (a fold's fit time, scaled by
  the rows of the refit) and the predictions of the tail (a fold's predict time per row, times
  the rows the tail predicts).

Every piece of work is scheduled only if its estimate ends before that reserve (:meth:`fits`);
the skipped ones, the phases and the estimate are returned in the run's metadata
(:meth:`report`), so that a run that overran says where the time went.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# CPU seconds of the steps after the search that do not depend on the model's speed (MLflow
# logging and registration, plots, bootstrap intervals, the chance test, the ONNX conversion):
# 9.1 measured on ISLR Default (10,000 rows; docs/benchmarks.md), with a margin.
TAIL_CPU_SECONDS = 10.0
# CPU seconds per numeric feature of the drift reference (its simulated no-drift distances:
# 400 replicates at 8 window sizes, whatever the rows): 41.8 s for Caravan's 85 (0.49 each).
DRIFT_CPU_SECONDS_PER_NUMERIC = 0.5
# When the runtime was imported: the start of the clock where /proc is not available.
IMPORTED = time.monotonic()


def process_started() -> float:
    """When this process started, on the ``time.monotonic()`` clock: the time a user waits for
    ``train`` includes the interpreter's start and the imports. Linux reads it from /proc;
    elsewhere it is when the runtime was imported."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return IMPORTED
    return time.monotonic() - max(0.0, age)


class Budget:
    """The seconds of ``seconds`` left for the search (unbounded with None), counted from
    ``started`` (``clock()``'s time; default: now)."""

    def __init__(
        self,
        seconds: float | None,
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.seconds = seconds
        self.clock, self.cpu_clock = clock, cpu_clock
        self.start = clock() if started is None else started
        # process_time() counts from the process's start: from there too when the budget does.
        self.cpu_start = 0.0 if started is not None else cpu_clock()
        # Set by train: the model-independent CPU seconds of the tail, and the rows the tail
        # refits on and predicts.
        self.tail_cpu = 0.0
        self.refit_rows = 0
        self.tail_rows = 0
        # The chosen model's part of the tail (seconds), from its measured fold; a fold's
        # wall seconds (fit + predict) by family, measured by model selection.
        self.model_tail = 0.0
        self.fold_seconds: dict[str, float] = {}
        self.most_slowdown = 1.0
        self.decisions: list[dict[str, Any]] = []
        self.phases: dict[str, float] = {}
        self.phases_cpu: dict[str, float] = {}
        self._mark, self._cpu_mark = self.start, self.cpu_start

    def elapsed(self) -> float:
        return self.clock() - self.start

    def slowdown(self) -> float:
        """Wall over CPU time of the run so far, the largest seen (>= 1). Threads that run in
        parallel make CPU time exceed wall time: the largest ratio is the single-threaded one."""
        cpu = self.cpu_clock() - self.cpu_start
        if cpu > 0:
            self.most_slowdown = max(self.most_slowdown, self.elapsed() / cpu)
        return self.most_slowdown

    def model_part(
        self, fit_seconds: float, fit_rows: int, predict_seconds: float, predict_rows: int
    ) -> float:
        """The seconds a model measured on one fold (fitted on ``fit_rows`` in ``fit_seconds``,
        predicting ``predict_rows`` in ``predict_seconds``) adds to the tail: the refit on
        ``refit_rows``, the tail's ``tail_rows`` predictions."""
        refit = fit_seconds * max(1.0, self.refit_rows / max(fit_rows, 1))
        return refit + predict_seconds * self.tail_rows / max(predict_rows, 1)

    def tail(self, model_part: float = 0.0) -> float:
        """Estimated seconds of the steps after the search (with the larger of the chosen
        model's part and ``model_part``)."""
        return self.tail_cpu * self.slowdown() + max(self.model_tail, model_part)

    def left(self) -> float | None:
        """Seconds the search may still spend (None: no budget)."""
        if self.seconds is None:
            return None
        return max(0.0, self.seconds - self.elapsed() - self.tail())

    def spent(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def fits(self, seconds: float, what: str, model_part: float = 0.0) -> bool:
        """Whether work estimated at ``seconds`` (whose model would add ``model_part`` to the
        tail) ends in time for the tail; a no is recorded with its numbers."""
        if self.seconds is None:
            return True
        left = self.seconds - self.elapsed() - self.tail(model_part)
        if seconds <= left:
            return True
        self.decisions.append(
            {
                "skipped": what,
                "at_s": round(self.elapsed(), 2),
                "estimate_s": round(seconds, 2),
                "left_s": round(max(0.0, left), 2),
            }
        )
        return False

    def phase(self, name: str) -> None:
        """Mark the end of phase ``name`` (it began where the previous one ended)."""
        now, cpu = self.clock(), self.cpu_clock()
        self.phases[name] = round(now - self._mark, 3)
        self.phases_cpu[name] = round(cpu - self._cpu_mark, 3)
        self._mark, self._cpu_mark = now, cpu

    def report(self) -> dict[str, Any]:
        """The accounting: the budget, where the time went, the estimate, what was skipped."""
        return {
            "budget_s": self.seconds,
            "elapsed_s": round(self.elapsed(), 3),
            "phases_s": dict(self.phases),
            # CPU seconds of this process per phase (threads add up): the tail's calibrates
            # TAIL_CPU_SECONDS.
            "phases_cpu_s": dict(self.phases_cpu),
            "slowdown": round(self.slowdown(), 2),
            "tail_estimate_s": round(self.tail(), 2),
            "skipped": list(self.decisions),
        }


def describe(report: dict[str, Any]) -> str:
    """One paragraph of :meth:`Budget.report` for the training summary."""
    budget = report["budget_s"]
    limit = "no budget" if budget is None else f"of the {budget:g} s budget"
    phases = ", ".join(f"{name} {seconds:.1f}" for name, seconds in report["phases_s"].items())
    text = (
        f"Time: {report['elapsed_s']:.1f} s {limit} (tuning.time_budget_seconds): {phases}; "
        f"the machine ran {report['slowdown']:.1f}x slower than its CPU time"
    )
    skipped = report["skipped"]
    if skipped:
        first = skipped[0]
        text += (
            f"; stopped scheduling at {first['at_s']:.1f} s: {first['skipped']} "
            f"(estimated {first['estimate_s']:.1f} s, {first['left_s']:.1f} s left before the "
            f"steps after the search, estimated {report['tail_estimate_s']:.1f} s)"
        )
        if len(skipped) > 1:
            text += f", and {len(skipped) - 1} more skipped"
    return text + "."
