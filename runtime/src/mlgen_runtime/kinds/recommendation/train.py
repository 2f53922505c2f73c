"""*Training* a recommender: interactions -> split -> seeded search per family -> the winner on
validation -> refit on train + validation -> test metrics with intervals -> MLflow run and
registered version -> the promotion gate -> the champion's bundle.

The search: each candidate family is fitted on the training interactions with its defaults,
then with seeded draws from its search space (round-robin over the families) until
``recommendation.trials`` per family are done or the next trial and the refits would not fit
in ``time_budget_seconds``, which bounds the whole run; each trial is scored on the
validation users (users with training and validation interactions). The best
trial of each family is refitted on train + validation and scored on the test users, so the
leaderboard shows every family's test metrics too; the family that won on validation is the
model. The gate (registry.decide) asks it to beat the popularity baseline and the champion on
the primary metric, each by the one-sided paired t-test over the test users (metrics.py).

Same seed, data and threads: the same metrics, bit for bit (models.THREADS); a search that the
time budget cut short depends on the machine's speed, as the tabular kind's does.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import scipy.sparse as sp
from mlflow import MlflowClient

from ...bundle import save_bundle
from ...compare import Comparison
from ...config import Config
from ...data import file_hash, load_data
from ...errors import DataValidationError
from ...registry import (
    Decision,
    RegisteredRun,
    baseline_outcome,
    champion_version,
    decide,
    export_champion,
    git_commit,
    promote_with,
    read_version,
    register_version,
    serve_baseline,
    served_instead,
    setup,
)
from .data import Interactions, ItemMetadata, read_interactions, relevant, section, split
from .metrics import REPORTED, TEST, coverage, paired_test, per_user, popularity_bias, summarise
from .models import FAMILIES, THREADS, Content, plain, sample
from .recommender import Recommender, fit_recommender, load_recommender, save_model

log = logging.getLogger(__name__)

# What the run keeps of its time budget for MLflow logging, registration and the bundle's
# export. Measured on MovieLens latest-small, 2 cores (2026-12-03): 10-11 s at load 2-4, of
# which ~8 s waiting on SQLite's commits (30 trial runs); 8 s let the run end 5-15 s late.
LOGGING_SECONDS = 12.0
REFIT_FACTOR = 1.5
BASELINE = "popularity"


@dataclass(frozen=True)
class Trial:
    family: str
    params: dict[str, Any]
    validation: float
    fit_seconds: float


@dataclass(frozen=True)
class Scored:
    """A fitted recommender and its per-user metrics on a set of evaluated users."""

    recommender: Recommender
    per_user: dict[str, np.ndarray]
    ranked: np.ndarray

    def value(self, metric: str) -> float:
        return float(self.per_user[metric].mean())


@dataclass(frozen=True)
class RecommendationResult(RegisteredRun):
    """What one training run produced and decided (``summary()`` prints it)."""

    recommender: Recommender
    metadata: dict[str, Any]
    decision: Decision
    comparison: Comparison | None
    baseline_comparison: Comparison
    baseline_served: tuple[str, Decision] | None = None


def prepare(
    config: Config, data_path: str | Path | None = None
) -> tuple[Path, Interactions, ItemMetadata]:
    """The configured interaction file, read, checked and indexed (with item metadata)."""
    rec = section(config)
    path = config.resolve(data_path or config.data.path)
    items = load_data(config.resolve(rec.items_path)) if rec.items_path else None
    data, metadata = read_interactions(load_data(path), config, items)
    return path, data, metadata


def score(recommender: Recommender, users: np.ndarray, truth: sp.csr_matrix, k: int) -> Scored:
    """``recommender`` ranked for ``users`` (index rows) against their relevant items."""
    ranked, _ = recommender.top_codes(users, k)
    return Scored(recommender, per_user(ranked, truth), ranked)


def search(
    config: Config,
    fit: Interactions,
    held_out: Interactions,
    items: ItemMetadata,
    trials: int | None = None,
    deadline: float | None = None,
) -> list[Trial]:
    """Every trial of the seeded search, scored on ``held_out``'s users (see the module).

    A trial starts only if it (a drawn one: its family's slowest trial so far), and then the
    refit and test of every family's best (1.5x their slowest trials), fit before
    ``deadline`` (``time.monotonic()``; default: ``time_budget_seconds`` from now). The first
    family's defaults always run; a family whose defaults are not reached in time is skipped.
    """
    rec = section(config)
    users, truth = relevant(fit, held_out)
    if not len(users):
        raise DataValidationError(
            "No user has both training and validation interactions, so no model can be "
            "chosen: use more data, split: user_last, or a larger validation_size."
        )
    families = _families(config, items)
    per_family = rec.trials if trials is None else trials
    deadline = time.monotonic() + rec.time_budget_seconds if deadline is None else deadline
    draws = {f: np.random.default_rng([config.seed, i]) for i, f in enumerate(families)}
    slowest: dict[str, float] = {}
    tried: set[str] = set()
    done: list[Trial] = []
    for round_ in range(max(per_family, 1)):
        for family in families:
            if round_ and (not FAMILIES[family].space or family not in slowest):
                continue
            # The refits see more data and score the test users too: half as long again.
            reserve = REFIT_FACTOR * sum(slowest.values())
            if round_ and time.monotonic() + slowest[family] + reserve > deadline:
                log.info("Time budget spent after %d trials.", len(done))
                return done
            if done and not round_ and time.monotonic() + reserve > deadline:
                # As the tabular kind's selection does: a family not reached in time is skipped.
                log.warning("Time budget spent: candidate %s skipped.", family)
                continue
            params = defaults(family, config) if not round_ else sample(family, draws[family])
            key = json.dumps([family, plain(params)], sort_keys=True)
            if key in tried:
                continue
            tried.add(key)
            started = time.perf_counter()
            # Only the content model needs the metadata (the others' content fallback waits).
            metadata = items if family == "content" else ItemMetadata({})
            fitted = fit_recommender(family, params, config.seed, fit, metadata)
            seconds = time.perf_counter() - started
            value = score(fitted, users, truth, rec.k).value(rec.primary_metric)
            slowest[family] = max(slowest.get(family, 0.0), time.perf_counter() - started)
            done.append(Trial(family, plain(params), value, seconds))
    return done


def defaults(family: str, config: Config) -> dict[str, Any]:
    """The first trial of ``family``: its defaults, without recency for a random split (it
    holds out interactions whatever their age, so age says nothing about them: on MovieLens
    recency 10 took EASE's NDCG@10 from 0.344 to 0.197 there, and lifted it on user_last)."""
    params = dict(FAMILIES[family].defaults)
    if "recency" in params and section(config).split == "random":
        params["recency"] = 0.0
        # Nor does the order of use: item-kNN starts from BM25 there, EASE without it.
        if params.get("similarity") == "sequence":
            params["similarity"] = "bm25"
        if params.get("sequence"):
            params["sequence"] = 0.0
        if params.get("transition"):
            params["transition"] = 0.0
    return params


def _families(config: Config, items: ItemMetadata) -> list[str]:
    families: list[str] = list(dict.fromkeys(section(config).candidates))
    if "content" in families and not any(t.strip(" |") for t in items.texts()):
        log.warning("No item metadata (recommendation.item_columns): the content model is skipped.")
        families.remove("content")
    return families


def best_trials(trials: list[Trial]) -> dict[str, Trial]:
    """Each family's best trial (the first of equals), best family first."""
    best: dict[str, Trial] = {}
    for trial in trials:
        if trial.family not in best or trial.validation > best[trial.family].validation:
            best[trial.family] = trial
    return dict(sorted(best.items(), key=lambda item: -item[1].validation))


def train(
    config: Config,
    data_path: str | Path | None = None,
    trials: int | None = None,
    promote: bool = True,
) -> RecommendationResult:
    """Train, evaluate, log and register a recommender; promote it if it passes the gate."""
    rec = section(config)
    primary = rec.primary_metric
    started = time.perf_counter()
    # The budget bounds the whole run: the search leaves time for the refits and tests, and
    # for logging, registering and exporting the model.
    deadline = (
        time.monotonic()
        + rec.time_budget_seconds
        - min(LOGGING_SECONDS, rec.time_budget_seconds / 4)
    )
    # The data first, so a bad file stops the run before anything is written; then the
    # store, inside the budget: creating a new SQLite store (its migrations) takes ~5 s of
    # CPU, which the logging reserve did not cover.
    path, data, items = prepare(config, data_path)
    setup(config)
    parts = split(data, config)
    train_part = data.subset(parts.train)
    all_trials = search(config, train_part, data.subset(parts.validation), items, trials, deadline)
    finalists = best_trials(all_trials)
    chosen = next(iter(finalists))
    searched = time.perf_counter() - started

    fit_part = data.subset(np.concatenate([parts.train, parts.validation]))
    users, truth = relevant(fit_part, data.subset(parts.test))
    if not len(users):
        raise DataValidationError(
            "No user has both training and test interactions: the test split cannot judge "
            "the model. Use more data or split: user_last."
        )
    tested: dict[str, Scored] = {}
    content: Content | None = None  # the content fallback, fitted once for every refit
    for family, trial in [*finalists.items(), (BASELINE, None)]:
        if family in tested:
            continue
        params = trial.params if trial else {}
        fitted = fit_recommender(family, params, config.seed, fit_part, items, content=content)
        content = fitted.content
        tested[family] = score(fitted, users, truth, rec.k)
    model, baseline = tested[chosen], tested[BASELINE]
    samples = rec.bootstrap_samples
    metrics = _metrics(model, samples, config.seed)
    baseline_metrics = _metrics(baseline, samples, config.seed)
    against_baseline = paired_test(
        primary,
        baseline.per_user[primary],
        model.per_user[primary],
        config.promotion.alpha,
        ("popularity", "new"),
    )
    leaderboard = [
        {
            "family": family,
            "params": trial.params,
            "trials": sum(t.family == family for t in all_trials),
            f"validation_{primary}": trial.validation,
            **{
                f"test_{name}": value
                for name, value in summarise(tested[family].per_user, samples, config.seed).items()
            },
            "fit_seconds": trial.fit_seconds,
            "chosen": family == chosen,
        }
        for family, trial in finalists.items()
    ]
    metadata: dict[str, Any] = {
        "model_name": config.tracking.registered_model,
        "kind": "recommendation",
        "task": config.task,
        "model_family": chosen,
        "params": finalists[chosen].params,
        "primary_metric": primary,
        "higher_is_better": True,
        "k": rec.k,
        "max_k": rec.max_k,
        "metrics": metrics,
        "baseline_metrics": baseline_metrics,
        "baseline_test": {"test": against_baseline.test, "p_value": against_baseline.p_value},
        "leaderboard": leaderboard,
        "user_column": rec.user_column,
        "item_column": rec.item_column,
        "item_columns": list(items.columns),
        "split": rec.split,
        "rows": {
            "train": len(parts.train),
            "validation": len(parts.validation),
            "test": len(parts.test),
        },
        "evaluated_users": len(users),
        "users": int(np.count_nonzero(np.diff(fit_part.matrix.indptr))),
        "items": int(np.count_nonzero(np.diff(fit_part.matrix.tocsc().indptr))),
        "seed": config.seed,
        "threads": THREADS,
        "data_path": str(path),
        "data_hash": file_hash(path),
        "git_commit": git_commit(config.root),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Where the time went (the budget bounds the sum, logging included).
        "seconds": {
            "search": searched,
            "refit_and_test": time.perf_counter() - started - searched,
        },
    }
    current = champion_version(config)
    seconds = time.perf_counter() - started
    metadata = _log_run(config, model.recommender, metadata, all_trials, seconds)
    champion_value, comparison = _against_champion(config, current, model, users, data, truth)
    decision = _decide(
        config,
        metrics[primary],
        baseline_metrics[primary],
        current,
        champion_value,
        comparison,
        against_baseline,
    )
    if promote and decision.promote:
        apply_promotion(config, metadata["model_version"], decision.reason, model.recommender)
    served = None
    if promote and not decision.beats_baseline:
        served = _serve_baseline(
            config, current, metadata, decision, (model.recommender, baseline.recommender),
            started,
        )
    return RecommendationResult(
        model.recommender, metadata, decision, comparison, against_baseline, served
    )


def _serve_baseline(
    config: Config,
    current: Any | None,
    metadata: dict[str, Any],
    decision: Decision,
    models: tuple[Recommender, Recommender],
    started: float,
) -> tuple[str, Decision] | None:
    """Popularity as the first champion when no model beat it significantly
    (registry.serve_baseline): the popularity model of this run's test, fitted on the same
    rows as the run's model, as its own version. ``models``: the run's and popularity."""
    model, popularity = models
    recommenders = {str(metadata["model_version"]): model}

    def register() -> str:
        registered = _log_run(
            config,
            popularity,
            {
                **{k: v for k, v in metadata.items() if k not in ("model_version", "run_id")},
                "model_family": BASELINE,
                "params": {},
                "metrics": metadata["baseline_metrics"],
                "leaderboard": [{**row, "chosen": row["family"] == BASELINE}
                                for row in metadata["leaderboard"]],
                "served_instead_of": {"version": str(metadata["model_version"]),
                                      "family": metadata["model_family"],
                                      "reason": decision.reason},
            },
            [],
            time.perf_counter() - started,
        )
        recommenders[str(registered["model_version"])] = popularity
        return str(registered["model_version"])

    return serve_baseline(
        current, decision, (str(metadata["model_version"]), metadata["model_family"]),
        (BASELINE, "popularity"), register,
        lambda version, why: apply_promotion(config, version, why, recommenders[version]),
    )


def _decide(
    config: Config,
    value: float,
    baseline: float,
    current: Any | None,
    champion: float | None,
    comparison: Comparison | None,
    against_baseline: Comparison,
) -> Decision:
    """The runtime's promotion gate (registry.decide) on the primary metric, with popularity
    as the baseline."""
    return decide(
        section(config).primary_metric,
        value,
        baseline,
        champion,
        f"v{current.version}" if current is not None else "",
        config.promotion,
        comparison,
        against_baseline,
        higher=True,
        baseline_label="popularity",
    )


def _metrics(scored: Scored, samples: int, seed: int) -> dict[str, float]:
    recommender = scored.recommender
    return {
        **summarise(scored.per_user, samples, seed),
        "coverage": coverage(scored.ranked, int(np.count_nonzero(recommender.popularity))),
        "popularity_bias": popularity_bias(scored.ranked, recommender.popularity),
    }


def _log_run(
    config: Config,
    recommender: Recommender,
    metadata: dict[str, Any],
    trials: list[Trial],
    seconds: float,
) -> dict[str, Any]:
    """The MLflow run (a child run per trial), the bundle as its artifact, a registered
    ``challenger`` version; ``metadata`` completed with run id and version."""
    primary = metadata["primary_metric"]
    logged = {
        **{f"test_{key}": value for key, value in metadata["metrics"].items()},
        **{f"baseline_{key}": value for key, value in metadata["baseline_metrics"].items()},
        "baseline_test_p_value": metadata["baseline_test"]["p_value"],
        "training_seconds": seconds,
        **{f"{phase}_seconds": value for phase, value in metadata["seconds"].items()},
    }
    for row in metadata["leaderboard"]:
        logged[f"validation_{primary}_{row['family']}"] = row[f"validation_{primary}"]
        logged[f"test_{primary}_{row['family']}"] = row[f"test_{primary}"]
    params = {
        "family": metadata["model_family"],
        "k": metadata["k"],
        "split": metadata["split"],
        "seed": config.seed,
        "threads": THREADS,
        "trials": len(trials),
        **{f"model.{key}": value for key, value in metadata["params"].items()},
    }

    def trial_runs() -> None:
        for number, trial in enumerate(trials):
            with mlflow.start_run(run_name=f"trial {number}: {trial.family}", nested=True):
                mlflow.log_params({"family": trial.family, **trial.params})
                mlflow.log_metrics(
                    {f"validation_{primary}": trial.validation, "fit_seconds": trial.fit_seconds}
                )

    def bundle(folder: Path, registered: dict[str, Any]) -> Path:
        recommender.metadata.update(registered)
        return export_bundle(folder, recommender)

    return register_version(
        config, "recommendation", metadata, params, logged, bundle, trial_runs
    )


def export_bundle(folder: Path, recommender: Recommender) -> Path:
    """The recommender as a bundle folder (bundle.py's layout; the model folder is numpy
    arrays and JSON)."""
    reference = {
        "kind": "recommendation",
        "users": recommender.metadata.get("users"),
        "items": recommender.metadata.get("items"),
    }
    return save_bundle(folder, recommender, recommender.metadata, reference, model_saver=save_model)


def load_version(config: Config, reference: str) -> Recommender:
    """A registered version (number or alias) from the tracking store."""
    return read_version(config, reference, load_recommender)


def _against_champion(
    config: Config,
    current: Any | None,
    model: Scored,
    users: np.ndarray,
    data: Interactions,
    truth: sp.csr_matrix,
) -> tuple[float | None, Comparison | None]:
    """The champion re-scored on this run's test users (as it would serve them) and the
    paired test of the new model against it; its logged metric if it cannot be loaded."""
    if current is None:
        return None, None
    primary = section(config).primary_metric
    try:
        champion = load_version(config, str(current.version))
        ranked = _ranked_by(champion, data.users[users], data.items, section(config).k)
        values = per_user(ranked, truth)[primary]
    except Exception as exc:  # the champion's logged score is still a valid comparison
        log.warning(
            "Could not re-score champion v%s (%s); using its logged metric.", current.version, exc
        )
        logged = MlflowClient().get_run(current.run_id).data.metrics
        return logged.get(f"test_{primary}"), None
    comparison = paired_test(
        primary,
        values,
        model.per_user[primary],
        config.promotion.alpha,
        (str(current.version), str(model.recommender.metadata.get("model_version", "new"))),
    )
    return comparison.champion_value, comparison


def _ranked_by(
    recommender: Recommender, user_ids: np.ndarray, items: np.ndarray, k: int
) -> np.ndarray:
    """Another recommender's top ``k`` for these users, as codes of the index ``items``
    (users it does not know get its cold-start answer; items outside ``items`` never hit)."""
    position = {value: code for code, value in enumerate(items.tolist())}
    ranked = np.full((len(user_ids), k), -1, dtype=np.int64)
    for row, user in enumerate(user_ids.tolist()):
        answer = recommender.recommend(user, k)
        codes = [position.get(item, -1) for item in answer.items]
        ranked[row, : len(codes)] = codes
    return ranked


def promote_version(
    config: Config, version: str, reason: str = "", force: bool = False
) -> Decision:
    """The ``promote`` command: registered ``version`` against popularity and the champion,
    both re-scored with it on the test users of the configured data (the paired test over
    users, as at training), or ``force``d; a positive decision is applied."""
    setup(config)
    candidate = load_version(config, version)

    def judge(current: Any | None) -> Decision:
        rec = section(config)
        primary = rec.primary_metric
        _, data, items = prepare(config)
        parts = split(data, config)
        fit = data.subset(np.concatenate([parts.train, parts.validation]))
        users, truth = relevant(fit, data.subset(parts.test))
        ranked = _ranked_by(candidate, data.users[users], data.items, rec.k)
        new = Scored(candidate, per_user(ranked, truth), ranked)
        popular = fit_recommender(BASELINE, {}, config.seed, fit, items)
        baseline = score(popular, users, truth, rec.k)
        against_baseline = paired_test(
            primary,
            baseline.per_user[primary],
            new.per_user[primary],
            config.promotion.alpha,
            ("popularity", version),
        )
        champion_value, comparison = _against_champion(config, current, new, users, data, truth)
        if comparison is not None:
            print(comparison.summary())
        return _decide(
            config,
            new.value(primary),
            baseline.value(primary),
            current,
            champion_value,
            comparison,
            against_baseline,
        )

    return promote_with(
        config, version, reason, force, judge,
        lambda why: apply_promotion(config, version, why, candidate),
    )


def apply_promotion(config: Config, version: str, reason: str, recommender: Recommender) -> Path:
    """Move the ``champion`` alias to ``version`` and export its bundle (the outgoing
    champion's becomes ``previous/``, the serving fallback)."""
    return export_champion(
        config, version, reason, lambda folder: export_bundle(folder, recommender),
        model_card(config, recommender.metadata),
    )


def model_card(config: Config, metadata: dict[str, Any]) -> str:
    """MODEL_CARD.md of a recommender, from its metadata."""
    primary, k = metadata["primary_metric"], metadata["k"]
    metrics, baseline = metadata["metrics"], metadata["baseline_metrics"]
    rows = metadata["rows"]
    lines = [
        f"# Model card: {config.project.name}",
        "",
        f"Model `{metadata['model_name']}` version {metadata['model_version']} "
        f"(MLflow run `{metadata['run_id']}`), trained {metadata['trained_at']}: "
        f"{metadata['model_family']} with {json.dumps(metadata['params'], sort_keys=True)}.",
        "",
        "## Intended use",
        config.project.description or "Not described: set project.description in the config.",
        "",
        f"Recommends {metadata['item_column']} items to {metadata['user_column']} users "
        f"(top {k} by default, at most {metadata['max_k']}), and items related to a set of "
        "items. Users and items the model never saw get content-based (item metadata) or "
        "popularity answers; the response names the strategy used.",
        "",
        "## Data",
        f"- File: `{metadata['data_path']}` (sha256 `{metadata['data_hash'][:16]}...`)",
        f"- Split ({metadata['split']}, seed {metadata['seed']}): train {rows['train']}, "
        f"validation {rows['validation']}, test {rows['test']} interactions; "
        f"{metadata['evaluated_users']} test users with earlier interactions are evaluated.",
        "",
        f"## Metrics (test users, 95% bootstrap intervals over users; primary: {primary}@{k})",
        "| metric | model | 95% CI | popularity |",
        "| --- | --- | --- | --- |",
        *(
            f"| {name}@{k} | {metrics[name]:.4f} | [{metrics[f'{name}_ci_low']:.4f}, "
            f"{metrics[f'{name}_ci_high']:.4f}] | {baseline[name]:.4f} |"
            for name in REPORTED
        ),
        f"| catalogue coverage | {metrics['coverage']:.4f} | | {baseline['coverage']:.4f} |",
        f"| popularity bias | {metrics['popularity_bias']:.4f} | | "
        f"{baseline['popularity_bias']:.4f} |",
        *filter(None, [served_instead(metadata, "popularity")]),
        "",
        "## Candidates (best trial of each family)",
        f"| family | trials | validation {primary}@{k} | test {primary}@{k} |",
        "| --- | --- | --- | --- |",
        *(
            f"| {row['family']}{' (chosen)' if row['chosen'] else ''} | {row['trials']} | "
            f"{row[f'validation_{primary}']:.4f} | {row[f'test_{primary}']:.4f} |"
            for row in metadata["leaderboard"]
        ),
        "",
        "## Limitations",
        "- Measured on held-out interactions of one data file: a recommender changes what "
        "users see, and so what they use next; live hit-rate (POST /feedback) is the check.",
        "- Items without interactions are recommended only by the content model or not at all.",
        "",
        "## How to reproduce",
        f"1. Check out commit `{metadata['git_commit']}` and the data file with the hash above.",
        f"2. `python -m {config.project.package} train` (seed {metadata['seed']}, "
        f"{metadata['threads']} thread): the same seed and data give the same metrics bit for "
        "bit, when the search finishes inside its time budget.",
        "",
    ]
    return "\n".join(lines)


#: Fewer test users than this after a global time cut: ``summary`` suggests user_last.
FEW_USERS = 100


def summary(result: RecommendationResult) -> str:
    """A few lines for the terminal: the model vs popularity on the test users, the
    leaderboard, and the verdict."""
    meta = result.metadata
    primary, k = meta["primary_metric"], meta["k"]
    lines = [
        f"Trained {meta['model_name']} v{meta['model_version']} ({meta['model_family']}, run "
        f"{meta['run_id']}) on {meta['rows']['train'] + meta['rows']['validation']} "
        f"interactions; {meta['split']} split, {meta['evaluated_users']} test users.",
        f"{'metric':<20}{'model':>10}{'95% CI':>22}{'popularity':>12}",
    ]
    for name in REPORTED:
        marker = " *" if name == primary else ""
        ci = f"[{result.metrics[f'{name}_ci_low']:.4f}, {result.metrics[f'{name}_ci_high']:.4f}]"
        lines.append(
            f"{f'{name}@{k}' + marker:<20}{result.metrics[name]:>10.4f}{ci:>22}"
            f"{result.baseline_metrics[name]:>12.4f}"
        )
    for name in ("coverage", "popularity_bias"):
        lines.append(
            f"{name:<20}{result.metrics[name]:>10.4f}{'':>22}{result.baseline_metrics[name]:>12.4f}"
        )
    lines.append(f"Candidates (best trial of each; {primary}@{k} on validation, then test):")
    for row in meta["leaderboard"]:
        lines.append(
            f"  {row['family']:<18} {row['trials']:>3} trials  validation "
            f"{row[f'validation_{primary}']:.4f}  test {row[f'test_{primary}']:.4f}"
            + ("  <- chosen" if row["chosen"] else "")
        )
    lines.append(f"Against popularity: {TEST}, p={result.baseline_comparison.p_value:.3g}")
    if result.comparison is not None:
        lines.append(result.comparison.summary())
    lines.append(result.decision.verdict)
    if not result.decision.beats_baseline:
        served, until = baseline_outcome(
            result.baseline_served, "popularity", "`train` exits 1 until a model beats popularity"
        )
        lines.extend(served)
        lines.append(
            f"The model does not beat popularity on {primary}@{k}. Check that the user and item "
            "columns are right, that there are enough interactions per user, and the split; "
            f"{until}."
        )
        if meta["split"] == "time" and meta["evaluated_users"] < FEW_USERS:
            lines.append(
                f"Only {meta['evaluated_users']} users have interactions on both sides of the "
                "time cut: set recommendation.split: user_last (each user's latest "
                "interactions) in configs/config.yaml."
            )
    return "\n".join(lines)
