"""Beyond one machine, on real servers started on 127.0.0.1: an MLflow tracking server backed
by PostgreSQL and serving artifacts, two processes sharing one Optuna study there
(benchmarks/scale.py runs 8 trainings at once), the champion served by ``MLFLOW_TRACKING_URI``
alone, and one search spread over a two-worker Dask cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from mlgen_runtime.clusters import create_database, dask_cluster, mlflow_server, postgres
from mlgen_runtime.config import LOCAL_FILE, load_config
from mlgen_runtime.errors import ConfigError
from mlgen_runtime.registry import load_champion
from mlgen_runtime.serving.predictor import Predictor
from mlgen_runtime.tuning import study_name, tune
from service_fixture import SERVICE_ROOT, isolated_config
from test_train import tuning_inputs

RUNTIME_SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def database():
    try:
        with postgres() as url:
            yield url
    except RuntimeError as exc:  # pragma: no cover - CI installs it (.ci/run)
        pytest.fail(f"PostgreSQL could not start: {exc}")


def worker_path() -> str:
    """Where separate processes find the runtime under test and the fixture's package."""
    parts = [str(RUNTIME_SRC), str(SERVICE_ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(filter(None, parts))


TUNER = """
import sys
from mlgen_runtime.config import load_config
from mlgen_runtime.tuning import tune
from test_train import tuning_inputs

config = load_config(sys.argv[1])
make, x, y = tuning_inputs(config, sys.argv[2])
print(tune(make, x, y, config).trials)
"""


def test_a_training_and_a_tuner_share_the_server_and_one_study(
    database, tmp_path, sample_data
) -> None:
    """`train` tracks to the PostgreSQL-backed server while a second process searches the same
    study; the champion is then served from the server's registry by the URI alone."""
    backend = create_database(database, "mlflow")
    storage = create_database(database, "optuna")
    with mlflow_server(backend, tmp_path / "artifacts") as url:
        config = isolated_config(
            tmp_path / "service",
            {
                "data": {"path": str(sample_data)},
                "model": {"family": "linear"},
                "tuning": {"trials": 3, "storage": storage, "study": "shared"},
            },
        )
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": url,
            "PYTHONPATH": worker_path(),
            "OMP_NUM_THREADS": "1",
        }
        trainer = subprocess.Popen(
            [
                sys.executable, "-c",
                "import sys; from mlgen_runtime.cli import main; sys.exit(main(sys.argv[1:]))",
                "--root", str(config.root), "train",
            ],
            env={**env, "MLSERVICE_TUNING_WORKER": "0"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        tuner = subprocess.Popen(
            [sys.executable, "-c", TUNER, str(config.root), str(sample_data)],
            env={**env, "MLSERVICE_TUNING_WORKER": "1",
                 "PYTHONPATH": f"{worker_path()}{os.pathsep}{Path(__file__).parent}"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        outputs = [p.communicate(timeout=600)[0].decode() for p in (trainer, tuner)]
        assert trainer.returncode == 0, outputs[0]
        assert tuner.returncode == 0, outputs[1]
        assert outputs[1].strip().splitlines()[-1] == "3"

        # The run is complete on the server, its model registered and promoted there, its
        # artifacts stored through the server in its --artifacts-destination.
        client = mlflow.MlflowClient(url)
        experiment = client.get_experiment_by_name(config.tracking.experiment)
        runs = client.search_runs(
            [experiment.experiment_id], filter_string="tags.mlflow.parentRunId IS NULL"
        )
        assert [run.info.status for run in runs] == ["FINISHED"]
        assert np.isfinite(runs[0].data.metrics[f"test_{config.metric.primary}"])
        model = client.get_registered_model(config.tracking.registered_model)
        assert model.aliases.get("champion") == "1"
        assert any((tmp_path / "artifacts").rglob("MLmodel"))

        # One study: 3 trials from each process, numbered without gaps, the warm start once.
        study = optuna.load_study(study_name="shared", storage=storage)
        trials = study.get_trials(deepcopy=False)
        assert sorted(t.number for t in trials) == list(range(6))
        assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
        # Each process sampled with its own seed: nothing was tried twice.
        sampled = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(sampled)) == len(sampled)

        # Served by MLFLOW_TRACKING_URI alone: the champion comes from the server's registry.
        os.environ["MLFLOW_TRACKING_URI"] = url
        try:
            bundle = load_champion(load_config(config.root))
        finally:
            del os.environ["MLFLOW_TRACKING_URI"]
        assert bundle.source != "file" and bundle.model_version == "1"
        row = {f["name"]: None for f in bundle.features}
        assert len(Predictor(bundle).predict([row])) == 1


def test_one_search_runs_on_two_dask_workers(
    database, tmp_path, trained_service, sample_data
) -> None:
    storage = create_database(database, "dask_tuning")
    config = trained_service.config.model_copy(
        update={
            "tuning": trained_service.config.tuning.model_copy(update={"storage": storage}),
            "engine": trained_service.config.engine.model_copy(update={"name": "dask"}),
        }
    )
    make, x, y = tuning_inputs(config, sample_data)
    with dask_cluster(workers=2, env={"PYTHONPATH": worker_path()}, folder=tmp_path) as address:
        config = config.model_copy(
            update={"engine": config.engine.model_copy(update={"scheduler": address})}
        )
        result = tune(make, x, y, config, trials=4)
    assert result.trials == 4 and np.isfinite(result.cv_score)
    study = optuna.load_study(study_name=study_name(config), storage=storage)
    assert len(study.trials) == 4
    assert result.cv_score == study.best_value
    # The best parameters refit here score as they did on the worker: per-trial reproducible.
    from mlgen_runtime.scoring import METRICS
    from mlgen_runtime.tuning import _folds, _scoring
    from sklearn.model_selection import cross_val_score

    refit = cross_val_score(
        make(study.best_params),
        x,
        y,
        cv=_folds(config),
        scoring=_scoring(METRICS[config.metric.primary].scorer, y, config.task),
    )
    assert float(np.mean(refit)) == study.best_value


def test_dask_tuning_without_a_shared_study_is_refused(trained_service, sample_data) -> None:
    config = trained_service.config.model_copy(
        update={"engine": trained_service.config.engine.model_copy(update={"name": "dask"})}
    )
    make, x, y = tuning_inputs(config, sample_data)
    with pytest.raises(ConfigError, match="tuning.storage"):
        tune(make, x, y, config, trials=2)


def test_a_storage_url_without_its_driver_names_the_fix(trained_service, sample_data) -> None:
    config = trained_service.config.model_copy(
        update={
            "tuning": trained_service.config.tuning.model_copy(
                update={"storage": "postgresql+nosuchdriver://u@127.0.0.1:1/x"}
            )
        }
    )
    make, x, y = tuning_inputs(config, sample_data)
    with pytest.raises(ConfigError, match="postgresql\\+psycopg2://"):
        tune(make, x, y, config, trials=1)


def test_local_yaml_turns_each_piece_on(tmp_path) -> None:
    """The settings the READMEs name are the config's."""
    isolated_config(tmp_path, {})
    local = yaml.safe_load((tmp_path / LOCAL_FILE).read_text())
    local["engine"] = {"name": "dask", "scheduler": "tcp://127.0.0.1:8786", "workers": 2}
    local["tuning"]["storage"] = "postgresql+psycopg2://postgres@127.0.0.1:5432/optuna"
    (tmp_path / LOCAL_FILE).write_text(yaml.safe_dump(local))
    config = load_config(tmp_path)
    assert (config.engine.name, config.engine.scheduler) == ("dask", "tcp://127.0.0.1:8786")
    assert config.tuning.storage.startswith("postgresql+psycopg2://")
