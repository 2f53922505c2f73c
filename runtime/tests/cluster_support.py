"""Helpers shared by the shared-infrastructure tests and benchmarks/scale.py: ``train`` in
several processes at once against one tracking server, and what the server kept of them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TRAIN = "import sys; from mlgen_runtime.cli import main; sys.exit(main(sys.argv[1:]))"


def train_at_once(root: Path, n: int, env: Mapping[str, str]) -> list[tuple[int, str]]:
    """Run ``train`` of the service at ``root`` in ``n`` processes started together (tuning
    worker i each, so their searches of a shared study are seeded apart); each one's exit code
    and output."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", TRAIN, "--root", str(root), "train"],
            env={**env, "MLSERVICE_TUNING_WORKER": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(n)
    ]
    outputs = [p.communicate(timeout=1800)[0].decode(errors="replace") for p in processes]
    return [(p.returncode, out) for p, out in zip(processes, outputs, strict=True)]


@dataclass(frozen=True)
class Tracked:
    """The top-level runs of an experiment on a tracking server and the versions of a model."""

    statuses: list[str]
    # The primary metric on the test split of each finished run.
    test_metrics: list[float]
    versions: list[str]


def tracked(url: str, experiment: str, model: str, metric: str) -> Tracked:
    import mlflow

    client = mlflow.MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs([found.experiment_id], filter_string="tags.mlflow.parentRunId IS NULL")
        if found is not None
        else []
    )
    return Tracked(
        statuses=[run.info.status for run in runs],
        test_metrics=[
            run.data.metrics.get(f"test_{metric}", float("nan"))
            for run in runs
            if run.info.status == "FINISHED"
        ],
        versions=sorted(v.version for v in client.search_model_versions(f"name='{model}'")),
    )
