"""*Batch scoring* of partitioned Parquet: ``python -m <package> score --data IN --out OUT``.

Each Parquet file of ``IN`` is one partition and one task: read it, score it with the
champion, write ``OUT/<same relative path>``. The task is the same function whichever engine
runs it, so the outputs are identical bit for bit:

- ``local`` (the default): the tasks run one after another in this process (plain pandas);
- ``dask``: the tasks run on a Dask cluster (``engine.scheduler``, or ``$MLSERVICE_DASK_SCHEDULER``,
  e.g. ``tcp://scheduler:8786``; none starts a local cluster of ``engine.workers`` processes).
  Workers read and write the same paths, so ``IN`` and ``OUT`` must be on storage every worker
  sees (one machine, or a volume mounted on every pod). The model is sent once per worker.

What is scored is the kind's business: a kind offers ``batch_scorer(config, bundle)``, a
picklable :class:`BatchScorer` that names the input columns it needs and maps one partition's
frame to its output frame. The engine only moves files and tasks. Nothing is half-written:
the inputs' columns are checked before any task runs, each output file appears by an atomic
rename, and a failed run removes the files it wrote.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from .data import check_columns, partitions
from .engine import ENGINES, dask_client
from .errors import ConfigError, DataValidationError, UsageError

if TYPE_CHECKING:
    from .config import Config


class BatchScorer(Protocol):
    """What a kind scores a partition with (picklable: it travels to the workers)."""

    #: The input columns a partition must have.
    columns: Sequence[str]
    #: Columns copied to the output when a partition has them (row ids).
    keep: Sequence[str]

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The output rows of one partition, in the input's order."""


@dataclass(frozen=True)
class BatchResult:
    engine: str
    partitions: int
    rows: int
    seconds: float
    out: Path

    def summary(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else float("nan")
        return (
            f"Scored {self.rows:,} rows in {self.partitions} partitions with the {self.engine} "
            f"engine in {self.seconds:.1f} s ({rate:,.0f} rows/s) -> {self.out}"
        )


def score_partition(scorer: BatchScorer, source: str, target: str) -> int:
    """Score one Parquet file into ``target`` (atomically); the number of rows."""
    import pyarrow.parquet as pq

    present = set(pq.read_schema(source).names)
    kept = [name for name in scorer.keep if name in present and name not in scorer.columns]
    frame = pd.read_parquet(source, columns=[*dict.fromkeys(scorer.columns), *kept])
    try:
        scored = scorer(frame)
    except Exception as exc:
        raise DataValidationError(f"Cannot score {source}: {exc}") from exc
    destination = Path(target)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
    try:
        scored.to_parquet(partial, index=False)
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return len(scored)


def score_folder(
    config: Config,
    data: str | Path,
    out: str | Path,
    engine: str | None = None,
    scheduler: str | None = None,
    scorer: BatchScorer | None = None,
) -> BatchResult:
    """Score every partition of ``data`` into ``out`` with the champion (see the module doc)."""
    engine = engine or config.engine.name
    if engine not in ENGINES:
        raise UsageError(f"Unknown engine {engine!r}: use one of {', '.join(ENGINES)}.")
    source, target = Path(data).resolve(), Path(out).resolve()
    files = partitions(source)
    if target == source or source in target.parents:
        raise UsageError(f"--out {target} lies inside --data {source}: write elsewhere.")
    if target.is_dir() and any(target.rglob("*.parquet")):
        raise UsageError(
            f"{target} already holds Parquet files: pass an empty or new folder to --out, so "
            "old and new scores never mix."
        )
    scorer = scorer or champion_scorer(config)
    check_columns(files, scorer.columns)
    base = source if source.is_dir() else source.parent
    jobs = [(str(path), str(target / path.relative_to(base))) for path in files]
    target.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        if engine == "local":
            rows = sum(score_partition(scorer, s, t) for s, t in jobs)
        else:
            rows = _on_dask(config, scorer, jobs, scheduler)
    except BaseException:
        for _, written in jobs:
            Path(written).unlink(missing_ok=True)
        raise
    return BatchResult(engine, len(jobs), rows, time.perf_counter() - started, target)


def champion_scorer(config: Config) -> BatchScorer:
    """The kind's batch scorer around the registry's champion."""
    from .kinds import kind_of
    from .registry import load_champion

    kind = kind_of(config)
    make: Callable[..., BatchScorer] | None = getattr(kind, "batch_scorer", None)
    if make is None:
        raise ConfigError(f"The {kind.name} kind has no batch scoring.")
    return make(config, load_champion(config))


def _on_dask(
    config: Config, scorer: BatchScorer, jobs: Sequence[tuple[str, str]], scheduler: str | None
) -> int:
    from distributed import wait

    with dask_client(config, scheduler) as client:
        model = client.scatter(scorer, broadcast=True)
        futures = client.map(
            score_partition,
            [model] * len(jobs),
            [s for s, _ in jobs],
            [t for _, t in jobs],
            pure=False,
        )
        # Every task ends (done or failed) before the caller cleans up after a failure.
        wait(futures)
        return int(sum(client.gather(futures)))
