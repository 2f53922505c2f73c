"""The *backtest* behind an investigation's recommendation: would a retrain have done better?

The champion's own pipeline (same features, same hyperparameters) is refitted on the labelled
observed rows before the latest window, in three ways: those recent rows alone, the training
data with them added, and the training data with them added and weighted so that the recent
rows weigh as much as all the older ones (recency weights). Each refit and the champion are
scored on the latest window, which none of them saw, and compared by the promotion gate's
paired test on the primary metric (compare.py). The recommended retrain is the best candidate
the test finds better; its data is written beside the report, for ``retrain --data``, where the
normal promotion gate decides again on its own holdout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from ..compare import compare_predictions
from ..scoring import METRICS

if TYPE_CHECKING:
    from .investigation import Section

# The tabular_investigation.TabularInvestigation that calls backtest (typed loosely here: that
# module imports this one, and the import graph stays acyclic).
Investigator = Any

# The latest window must hold this many labelled rows for a backtest worth reading.
MIN_HOLDOUT = 100
MIN_RECENT = 200
# A refit takes the latest this many rows before the latest window: three refits on a million
# rows would cost minutes, and the newest rows are the ones that show the new world. 20,000
# recent rows outweigh a typical training set already (the recency-weighted candidate weighs
# them as much as all the training data).
MAX_RECENT = 20_000
# The candidates are scored on at most this many rows of the latest window, drawn at random
# (seeded) and the same rows for all: the paired test on 20,000 rows resolves a difference of
# about 0.01 in ROC AUC or accuracy, far below what a retrain worth recommending gains.
MAX_HOLDOUT = 20_000


def backtest(
    inv: Investigator, sections: list[Section]
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """The candidates' scores on the latest window, the recommendation they support, and
    the data of the recommended retrain (all labelled rows of its kind, the latest window
    included: the retrain's own test split and the promotion gate judge it)."""
    from ..data import load_training_data

    config, observed = inv.config, inv.observed
    latest = inv.windows[-1]
    recent_start = _recent_start(inv, sections)
    holdout_rows = np.arange(latest.start, latest.stop)
    if len(holdout_rows) > MAX_HOLDOUT:
        rng = np.random.default_rng(config.seed)
        holdout_rows = np.sort(rng.choice(holdout_rows, MAX_HOLDOUT, replace=False))
    holdout = observed.frame.iloc[holdout_rows]
    recent = observed.frame.iloc[max(recent_start, latest.start - MAX_RECENT) : latest.start]
    if len(holdout) < MIN_HOLDOUT or len(recent) < MIN_RECENT:
        return {
            "summary": (
                f"too few labelled rows to backtest a retrain ({len(recent)} recent, "
                f"{len(holdout)} in the latest window; need {MIN_RECENT} and {MIN_HOLDOUT})"
            )
        }, None
    history = load_training_data(config)
    target, names = inv.target, inv.names
    # The champion's predictions of these rows are the investigation's own.
    champion = inv.observed_prediction(holdout_rows)
    weight = len(history) / len(recent)
    candidates = {
        "recent rows only": (recent, None),
        "training data + recent rows": (pd.concat([history, recent], ignore_index=True), None),
        "training data + recent rows, recency-weighted": (
            pd.concat([history, recent], ignore_index=True),
            np.r_[np.ones(len(history)), np.full(len(recent), weight)],
        ),
    }
    results: list[dict[str, Any]] = []
    for name, (rows, weights) in candidates.items():
        rows = rows[rows[target].notna()]
        model = clone(inv.bundle.pipeline)
        fit_params = {} if weights is None else {"model__sample_weight": weights[: len(rows)]}
        # One OpenMP thread, for the refit and for scoring the holdout: a refit of at most
        # MAX_RECENT rows gains little from a second, and on a busy machine spinning OpenMP
        # threads cost far more than they save (a 1M-row investigate spent over a minute of CPU
        # in two-thread refits that take ~1 s each on one; scoring the 20,000 holdout rows
        # waits at a barrier per tree, 14.6 of 78 s in a profile at load 6, on two threads).
        with threadpool_limits(limits=1, user_api="openmp"):
            model.fit(rows.reindex(columns=names), rows[target], **fit_params)
            original, inv.bundle = inv.bundle, _with_pipeline(inv.bundle, model)
            try:
                prediction = inv._predict(holdout, labelled=True)
            finally:
                inv.bundle = original
        comparison = compare_predictions(
            inv.primary,
            champion,
            prediction,
            paired=True,
            alpha=config.promotion.alpha,
            versions=(inv.bundle.model_version, name),
            samples=config.promotion.bootstrap_samples,
            seed=config.seed,
        )
        results.append(
            {
                "candidate": name,
                "rows": len(rows),
                inv.primary: comparison.challenger_value,
                "champion": comparison.champion_value,
                "test": comparison.test,
                "p_value": comparison.p_value,
                "better": comparison.better,
            }
        )
    higher = METRICS[inv.primary].higher_is_better
    better = sorted(
        (r for r in results if r["better"]),
        key=lambda r: -r[inv.primary] if higher else r[inv.primary],
    )
    evidence: dict[str, Any] = {
        "latest_window": {
            "from": latest.first,
            "to": latest.last,
            "rows": latest.stop - latest.start,
            "scored_rows": len(holdout),
        },
        "recent_rows": {"from": observed.when(recent_start), "rows": len(recent)},
        "candidates": results,
    }
    if not better:
        evidence["summary"] = (
            f"no retrain beat the champion on the latest window ({inv.primary} "
            f"{results[0]['champion']:.4f}); look at the data quality and slices before retraining"
        )
        return evidence, None
    best = better[0]
    evidence["recommended"] = best["candidate"]
    since = observed.frame.iloc[recent_start:].reindex(columns=history.columns)
    if best["candidate"] == "recent rows only":
        data = since
    else:
        data = pd.concat([history, since], ignore_index=True)
    weighted = "recency-weighted" in best["candidate"]
    evidence["summary"] = (
        f"retrain on {best['candidate']} (since {observed.when(recent_start)}): on the latest "
        f"window {inv.primary} {best[inv.primary]:.4f} vs the champion's {best['champion']:.4f} "
        f"({best['test']}, p={best['p_value']:.2g}). `retrain --data retrain.csv` (written "
        "beside this report) trains on "
        + ("these rows without the weights, which `train` does not take; " if weighted else "")
        + "its promotion gate then decides"
    )
    return evidence, data[data[target].notna()]


def _recent_start(inv: Investigator, sections: list[Section]) -> int:
    """The first row of the first window in which a section found a change (else the first
    row): what came before it is the old world."""
    starts = []
    for s in sections:
        for key in ("windows", "timeline"):
            for row in s.details.get(key, []) if s.found else []:
                if row.get("degraded") or row.get("shifted") or row.get("drifted"):
                    starts.append(inv.windows[row["window"]].start)
                    break
    start = min(starts) if starts else 0
    return min(start, inv.windows[-1].start)


def _with_pipeline(bundle: Any, pipeline: Any) -> Any:
    from dataclasses import replace

    return replace(bundle, pipeline=pipeline)
