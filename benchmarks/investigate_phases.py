"""Where ``investigate``'s CPU goes: the command run in this process, with each step's CPU
seconds (``time.process_time``) and wall seconds printed to stderr as it ends.

The steps are the tabular investigation's sections and shared pieces (reading the log, scoring,
the backtest, writing the report), wrapped at import; nothing else changes. Run it on the
service and log of an earlier ``benchmarks/investigate.py --work FOLDER`` run:

    OMP_NUM_THREADS=2 PYTHONPATH=runtime/src:FOLDER/service/src python \\
        benchmarks/investigate_phases.py --root FOLDER/service investigate --since 30d --out OUT
"""

from __future__ import annotations

import functools
import resource
import sys
import time
from typing import Any

STEPS = (
    "__init__", "_predict", "run", "performance", "slices", "covariate_drift", "label_shift",
    "concept_drift", "without_labels", "data_quality", "recommendation",
)


def wrap(owner: Any, name: str, label: str, depth: list[int]) -> None:
    function = getattr(owner, name)

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        depth[0] += 1
        try:
            return function(*args, **kwargs)
        finally:
            depth[0] -= 1
            print(
                f"{'  ' * depth[0]}{label}: cpu {time.process_time() - cpu:.2f} s, "
                f"wall {time.perf_counter() - wall:.2f} s",
                file=sys.stderr,
            )

    setattr(owner, name, timed)


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    cpu = time.process_time()
    from mlgen_runtime import cli

    print(f"import cli: cpu {time.process_time() - cpu:.2f} s", file=sys.stderr)
    import mlgen_runtime.data as data
    import mlgen_runtime.monitoring.investigation as investigation
    import mlgen_runtime.monitoring.performance as performance
    import mlgen_runtime.monitoring.tabular_investigation as tabular

    depth = [0]
    wrap(performance, "read_log", "read_log", depth)
    wrap(investigation, "from_log", "from_log", depth)
    wrap(investigation, "write", "write the report", depth)
    wrap(data, "load_training_data", "load_training_data", depth)
    wrap(tabular, "investigate", "investigate (champion, data, sections)", depth)
    for name in STEPS:
        wrap(tabular.TabularInvestigation, name, name, depth)
    code = cli.main(argv)
    used = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"total: cpu {used.ru_utime + used.ru_stime:.2f} s (user {used.ru_utime:.2f}, system "
        f"{used.ru_stime:.2f}), wall {time.perf_counter() - started:.2f} s",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
