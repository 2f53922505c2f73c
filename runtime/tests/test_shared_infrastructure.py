"""Beyond one machine, on real servers started on 127.0.0.1: an MLflow tracking server backed
by PostgreSQL and serving artifacts, 8 trainings at once sharing one Optuna study there, the
champion served by ``MLFLOW_TRACKING_URI`` alone, one search spread over a two-worker Dask
cluster, and two service processes sharing their feedback store and rollout log in one
PostgreSQL database."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import mlflow
import numpy as np
import optuna
import pytest
import yaml
from mlgen_runtime.clusters import (
    create_database,
    dask_cluster,
    mlflow_server,
    tracked,
    train_at_once,
)
from mlgen_runtime.config import LOCAL_FILE, RolloutSettings, load_config
from mlgen_runtime.errors import ConfigError
from mlgen_runtime.monitoring.performance import FEEDBACK_DB_ENV
from mlgen_runtime.registry import load_champion
from mlgen_runtime.serving.predictor import Predictor
from mlgen_runtime.serving.rollout import ROLLOUT_LOG_ENV, PredictionLog
from mlgen_runtime.tuning import study_name, tune
from rollout_support import baseline_bundle, save
from service_fixture import SERVICE_ROOT, isolated_config
from serving_support import free_port, sample_value, serve_command, server_processes, service_root
from test_feedback import as_record, outcome_field, real_rows
from test_train import tuning_inputs

RUNTIME_SRC = Path(__file__).resolve().parents[1] / "src"


def worker_path() -> str:
    """Where separate processes find the runtime under test and the fixture's package."""
    parts = [str(RUNTIME_SRC), str(SERVICE_ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(filter(None, parts))


@pytest.fixture(scope="module")
def tracking_server(database, tmp_path_factory):
    """``mlflow server`` on PostgreSQL, serving artifacts; its URL and artifacts folder."""
    artifacts = tmp_path_factory.mktemp("mlflow") / "artifacts"
    with mlflow_server(create_database(database, "mlflow"), artifacts) as url:
        yield url, artifacts


def test_eight_trainings_at_once_share_the_server_and_one_study(
    database, tracking_server, tmp_path, sample_data
) -> None:
    """8 `train` processes of one service start together against the PostgreSQL-backed
    server, each adding a trial to one shared study: every run finishes with its metrics, every
    model is registered once, the trials are numbered without gaps and none repeats another;
    the champion is then served from the server's registry by the URI alone."""
    storage = create_database(database, "optuna")
    url, artifacts = tracking_server
    config = isolated_config(
        tmp_path / "service",
        {
            "data": {"path": str(sample_data)},
            "model": {"family": "linear"},
            "tuning": {"trials": 1, "storage": storage, "study": "shared"},
        },
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": url,
        "PYTHONPATH": worker_path(),
        "OMP_NUM_THREADS": "1",
    }
    for code, output in train_at_once(config.root, 8, env):
        assert code == 0, output[-3000:]

    # The runs are complete on the server, their models registered there, their artifacts
    # stored through the server in its --artifacts-destination.
    server = tracked(
        url, config.tracking.experiment, config.tracking.registered_model, config.metric.primary
    )
    assert server.statuses == ["FINISHED"] * 8
    assert len(server.test_metrics) == 8 and np.isfinite(server.test_metrics).all()
    assert server.versions == [str(n) for n in range(1, 9)]
    assert any(artifacts.rglob("MLmodel"))

    # One study: a trial from each process, numbered without gaps, the warm start once; each
    # process sampled with its own seed, so nothing was tried twice.
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(8))
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    sampled = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(sampled)) == len(sampled)

    # Served by MLFLOW_TRACKING_URI alone: the champion comes from the server's registry.
    champion = mlflow.MlflowClient(url).get_registered_model(config.tracking.registered_model)
    os.environ["MLFLOW_TRACKING_URI"] = url
    try:
        bundle = load_champion(load_config(config.root))
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    assert bundle.source != "file" and bundle.model_version == champion.aliases["champion"]
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


def test_two_service_processes_share_feedback_and_the_rollout_log_through_postgresql(
    database, tmp_path, trained_service
) -> None:
    """Two pods on one database (named by the environment alone): a prediction served by one,
    its outcome sent to the other, joins; both export the live performance of the outcomes, per
    variant too (the baseline shadows the champion), and `compare` finds the labelled rows."""
    url = create_database(database, "service_logs")
    bundle, config = trained_service.bundle, trained_service.config
    challenger = baseline_bundle(trained_service)
    serving = config.serving.model_copy(
        update={
            "feedback_min_rows": 5,
            "rollout": RolloutSettings(
                mode="shadow", challenger=str(save(challenger, tmp_path / "dummy"))
            ),
        }
    )
    root = service_root(config.model_copy(update={"serving": serving}), tmp_path / "service")
    env = {"MLSERVICE_ROOT": str(root), FEEDBACK_DB_ENV: url, ROLLOUT_LOG_ENV: url}
    rows = real_rows(trained_service, 8)
    records = [as_record(row, bundle.features) for _, row in rows.iterrows()]
    truths = rows[config.data.target].tolist()
    ports = free_port(), free_port()
    with server_processes([(serve_command(port), port) for port in ports], env) as servers:
        first, second = servers
        answers = [httpx.post(f"{first.url}/predict", json=r).json() for r in records]
        for answer, truth in zip(answers, truths, strict=True):
            receipt = httpx.post(
                f"{second.url}/feedback",
                json={"request_id": answer["request_id"], **outcome_field(trained_service, truth)},
            )
            assert receipt.status_code == 200, receipt.text
            assert receipt.json()["prediction"] == answer["prediction"]
        # Once more to the first: each prediction takes one outcome, whichever pod got it.
        first_outcome = {
            "request_id": answers[0]["request_id"], **outcome_field(trained_service, truths[0])
        }
        again = httpx.post(f"{first.url}/feedback", json=first_outcome)
        assert again.status_code == 409, again.text
        scrapes = [httpx.get(f"{server.url}/metrics").text for server in (first, second)]

    predicted = [answer["prediction"] for answer in answers]
    if bundle.task == "regression":
        metric, value = "mae", np.mean(np.abs(np.array(truths) - np.array(predicted)))
    else:
        hits = [str(t) == str(p) for t, p in zip(truths, predicted, strict=True)]
        metric, value = "accuracy", np.mean(hits)
    live, champion = {"metric": metric}, {"variant": "champion", "metric": metric}
    for scrape in scrapes:
        assert sample_value(scrape, "model_live_performance_rows", {}) == len(truths)
        assert sample_value(scrape, "model_live_performance", live) == pytest.approx(value)
        assert sample_value(scrape, "model_variant_live_performance", champion) == pytest.approx(
            value
        )
    # The servers wrote the challenger's shadow predictions before they stopped.
    log = PredictionLog(url)
    try:
        labelled = list(log.labelled())
    finally:
        log.close()
    assert sorted(row["variant"] for row in labelled) == ["challenger"] * 8 + ["champion"] * 8
    shadow = Predictor(challenger).predict(records)
    expected = {a["request_id"]: s.prediction for a, s in zip(answers, shadow, strict=True)}
    for row in labelled:
        if row["variant"] == "challenger":
            assert row["prediction"] == expected[row["request_id"]]


def test_an_alias_set_by_another_process_at_the_same_moment_is_set_again():
    """The MLflow server's alias upsert races between processes (seen with eight trains on
    PostgreSQL: a UniqueViolation on registered_model_alias_pk); the loser tries again.
    Other registry errors are not retried."""
    from mlflow.exceptions import MlflowException
    from mlgen_runtime.registry import set_alias

    class Racing:
        def __init__(self, failures: list[str]) -> None:
            self.failures, self.calls = failures, []

        def set_registered_model_alias(self, name, alias, version):
            self.calls.append((name, alias, version))
            if self.failures:
                raise MlflowException(self.failures.pop(0))

    race = "BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key value violates"
    won = Racing([race, race])
    set_alias(won, "model", "challenger", "2")
    assert won.calls == [("model", "challenger", "2")] * 3
    other = Racing(["RESOURCE_DOES_NOT_EXIST: Registered Model with name=model not found"])
    with pytest.raises(MlflowException, match="not found"):
        set_alias(other, "model", "challenger", "2")
    assert len(other.calls) == 1
