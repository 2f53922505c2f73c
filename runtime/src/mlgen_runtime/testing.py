"""Test helpers for a service and for the runtime's own tests: throwaway copies of a service.

A test must never write into the service's MLflow store, artifacts or reports, nor read the
developer's ``MLFLOW_TRACKING_URI``: :func:`isolated_config` gives the config of a copy of the
service rooted in a temporary folder, and :func:`bounded_sample` the data tests train on.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from threadpoolctl import threadpool_limits

from .config import CONFIG_FILE, LOCAL_FILE, Config, deep_merge, load_config
from .data import load_data

# Tests train several models: a bounded sample keeps them quick on any data size.
MAX_ROWS = 2000


@contextmanager
def isolated_environment() -> Iterator[None]:
    """A test session's environment: no tracking URI or service root of the developer's, and
    one thread per native library.

    ``MLFLOW_TRACKING_URI`` wins over the config, so a developer's setting would receive test
    runs. On busy CI runners OpenMP threads spin against each other: gradient boosting on a
    small sample ran 10x slower with two threads than with one; results do not change.
    """
    saved = {name: os.environ.pop(name, None) for name in ("MLFLOW_TRACKING_URI", "MLSERVICE_ROOT")}
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        os.environ.update({name: value for name, value in saved.items() if value is not None})


def isolated_config(
    service_root: Path, folder: Path, overrides: dict[str, Any] | None = None
) -> Config:
    """The config of a throwaway copy of the service at ``service_root``, rooted at ``folder``.

    Its MLflow store, artifacts, reports and model card land in ``folder`` (so a server started
    with ``MLSERVICE_ROOT=folder`` sees the same models); ``overrides`` go to its local.yaml.
    """
    folder = folder.resolve()
    shipped = load_config(service_root)
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(service_root) / CONFIG_FILE, folder / CONFIG_FILE)
    local = deep_merge(
        shipped.model_dump(mode="json", exclude={"root"}),
        {
            "data": {
                "path": str(shipped.resolve(shipped.data.path)),
                "sample_path": shipped.data.sample_path
                and str(shipped.resolve(shipped.data.sample_path)),
            },
            # Whatever the developer's local.yaml says, test runs stay in the folder. Absolute
            # paths, so a copy of this config elsewhere still points at the same store.
            "tracking": {
                "uri": f"sqlite:///{folder / 'mlflow.db'}",
                "artifact_location": str(folder / "mlartifacts"),
            },
            "paths": {
                "artifacts": str(folder / "artifacts"),
                "reports": str(folder / "reports"),
                "model_card": str(folder / "MODEL_CARD.md"),
            },
        },
    )
    local = deep_merge(local, overrides or {})
    (folder / LOCAL_FILE).write_text(yaml.safe_dump(local))
    return load_config(folder)


def bounded_sample(service_root: Path, folder: Path, max_rows: int = MAX_ROWS) -> Path:
    """The data tests train on: data.sample_path if present, else data.path, at most
    ``max_rows`` rows (a seeded sample written into ``folder``)."""
    config = load_config(service_root)
    sample = config.data.sample_path and config.resolve(config.data.sample_path)
    source = sample if sample and sample.is_file() else config.resolve(config.data.path)
    df = load_data(source)
    if len(df) <= max_rows:
        return source
    bounded = Path(folder) / "sample.csv"
    df.sample(n=max_rows, random_state=config.seed).to_csv(bounded, index=False)
    return bounded
