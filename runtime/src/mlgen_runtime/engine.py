"""The *engine*: where batch scoring (batch.py) and tuning trials (tuning.py) run.

``engine.name`` is ``local`` (this process) or ``dask`` (a Dask cluster: ``engine.scheduler``,
or ``$MLSERVICE_DASK_SCHEDULER``; neither starts a local cluster of ``engine.workers``
one-thread processes). Why Dask: docs/internals.md, "Beyond one machine".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config

SCHEDULER_ENV = "MLSERVICE_DASK_SCHEDULER"
ENGINES = ("local", "dask")

# Dask's nanny starts each worker with MALLOC_TRIM_THRESHOLD_=65536, which switches off glibc's
# dynamic mmap threshold: every array of more than 128 KiB is then mmapped and page-faulted
# afresh, and scoring a partition took 12-20% longer in a worker than in this process
# (docs/internals.md, "Beyond one machine"). Set in the environment of `dask worker` (or of
# the process starting a LocalCluster), this leaves glibc's default; the worker's memory limit
# still restarts a worker that outgrows it.
WORKER_ENVIRON = {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": "{'MALLOC_TRIM_THRESHOLD_': None}"}


@contextmanager
def dask_client(config: Config, scheduler: str | None = None) -> Iterator[Any]:
    """A client of the configured cluster: ``scheduler``, else $MLSERVICE_DASK_SCHEDULER, else
    ``engine.scheduler``, else a local cluster of ``engine.workers`` processes (stopped after)."""
    import dask
    from distributed import Client, LocalCluster

    address = scheduler or os.environ.get(SCHEDULER_ENV) or config.engine.scheduler
    cluster = None
    if not address:
        # Processes with one thread each: the model's native code scales by processes here,
        # as serving does.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(
                n_workers=config.engine.workers,
                threads_per_worker=1,
                dashboard_address=None,
                host="127.0.0.1",
            )
    try:
        try:
            client = Client(cluster if cluster is not None else address, timeout="30s")
        except OSError as exc:
            raise ConfigError(
                f"Cannot reach the Dask scheduler at {address}: {exc}. Start it (dask "
                f"scheduler) or fix engine.scheduler / ${SCHEDULER_ENV}."
            ) from exc
        with client:
            yield client
    finally:
        if cluster is not None:
            cluster.close()
