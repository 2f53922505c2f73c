"""*Training* a forecaster: series -> expanding-window backtests choose the family -> conformal
calibration -> test windows (the latest data) against seasonal naive -> refit on everything ->
MLflow run and registered version -> the promotion gate -> the champion's bundle.

Windows are counted back from each series' end, ``horizon`` steps each (``max_horizon`` when it
is longer): the last ``test_windows`` are the test set; the ``backtest_windows`` before them are
the backtests. Backtest k fits every candidate on the data before its window and forecasts the
window; the family with the lowest mean primary metric over the backtests wins. The winner,
fitted before the first backtest window, then forecasts from origins every ``horizon / 8``
steps up to the test set without refitting: their scaled absolute errors are the conformal
calibration set (metrics.conformal_quantiles). The test: the winner and seasonal naive, fitted
on everything before the test set, forecast each test window; the gate (registry.decide) asks
the winner to beat seasonal naive and the champion on the primary metric, by the paired test of
metrics.py. The served model is the winner refitted on all the data.

Same seed, data and threads (models.THREADS): the same metrics, bit for bit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient

from ...bundle import save_bundle
from ...compare import Comparison
from ...config import Config
from ...data import file_hash, load_data
from ...errors import DataValidationError, RequestError
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
from .data import Panel, read_panel, section
from .forecaster import Forecaster, keep_steps, load_forecaster, save_forecaster
from .metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    TEST,
    conformal_quantiles,
    forecast_metrics,
    paired_test,
    scaled_errors,
)
from .models import THREADS, Model, build, error_scale

log = logging.getLogger(__name__)

BASELINE = "seasonal_naive"


@dataclass(frozen=True)
class Windows:
    """Forecasts of a set of windows: actual and forecast values (windows x steps), each
    window's series scale."""

    actual: np.ndarray
    forecast: np.ndarray
    scales: np.ndarray

    def metric(self, name: str) -> float:
        return forecast_metrics(self.actual, self.forecast, self.scales)[name]

    @property
    def scaled(self) -> np.ndarray:
        return scaled_errors(self.actual, self.forecast, self.scales)


@dataclass(frozen=True)
class ForecastResult(RegisteredRun):
    forecaster: Forecaster
    metadata: dict[str, Any]
    decision: Decision
    comparison: Comparison | None
    baseline_comparison: Comparison
    baseline_served: tuple[str, Decision] | None = None


def settings(config: Config, panel: Panel) -> dict[str, Any]:
    fc = section(config)
    return {
        "season": panel.season_length,
        "frequency": panel.frequency,
        "horizon": max(fc.horizon, fc.max_horizon or 0),
        "strategy": fc.strategy,
        "known": [c.name for c in fc.covariates if c.known_future],
        "unknown": [c.name for c in fc.covariates if not c.known_future],
        "seed": config.seed,
    }


def fit(family: str, config: Config, panel: Panel) -> Model:
    return build(family, **settings(config, panel)).fit(panel)


def cut(panel: Panel, steps_before_end: int) -> Panel:
    """Every series without its last ``steps_before_end`` steps."""
    return panel.head({key: len(s) - steps_before_end for key, s in panel.series.items()})


def forecast_windows(
    model: Model,
    panel: Panel,
    origins_before_end: list[int],
    horizon: int,
    scales: dict[str, float],
) -> Windows:
    """``model``'s forecasts of ``horizon`` steps from each origin (steps before each series'
    end) of each series, with the actual values."""
    actual, forecast, scale = [], [], []
    for back in origins_before_end:
        histories, futures, truths = [], [], []
        for key, series in panel.series.items():
            origin = len(series) - back
            histories.append(series.head(origin))
            futures.append({k: v[origin : origin + horizon] for k, v in series.covariates.items()})
            truths.append(series.y[origin : origin + horizon])
            scale.append(scales[key])
        forecast.append(model.forecast(histories, horizon, futures))
        actual.append(np.stack(truths))
    return Windows(np.concatenate(actual), np.concatenate(forecast), np.asarray(scale))


def _scales(panel: Panel) -> dict[str, float]:
    return {key: error_scale(s.y, panel.season_length) for key, s in panel.series.items()}


def check_length(config: Config, panel: Panel) -> int:
    fc = section(config)
    horizon = max(fc.horizon, fc.max_horizon or 0)
    needed = horizon * (fc.test_windows + fc.backtest_windows) + 2 * panel.season_length + 10
    short = {key: len(s) for key, s in panel.series.items() if len(s) < needed}
    if short:
        shown = ", ".join(f"{key or 'the series'} ({n})" for key, n in list(short.items())[:5])
        raise DataValidationError(
            f"{len(short)} series are shorter than the {needed} steps that "
            f"{fc.test_windows} test and {fc.backtest_windows} backtest windows of {horizon} "
            f"steps need, beside two seasons of {panel.season_length} to fit on: {shown}. Lower "
            "forecasting.horizon / test_windows / backtest_windows, or give more history."
        )
    return horizon


def backtest(config: Config, panel: Panel, horizon: int) -> dict[str, list[float]]:
    """Each candidate's primary metric on each expanding-window backtest."""
    fc = section(config)
    primary = fc.primary_metric
    test_span = fc.test_windows * horizon
    scores: dict[str, list[float]] = {}
    for k in range(fc.backtest_windows, 0, -1):
        back = test_span + k * horizon
        train_part = cut(panel, back)
        scales = _scales(train_part)
        for family in dict.fromkeys([*fc.candidates, BASELINE]):
            try:
                model = fit(family, config, train_part)
                windows = forecast_windows(model, panel, [back], horizon, scales)
            except (RequestError, ValueError) as exc:
                log.warning("Backtest %d: %s failed (%s); it is not a candidate.", k, family, exc)
                scores[family] = [float("nan")]
                continue
            scores.setdefault(family, []).append(windows.metric(primary))
    return scores


def calibrate(config: Config, family: str, panel: Panel, horizon: int) -> np.ndarray:
    """Conformal quantiles per step from the winner's forecasts between the first backtest
    window and the test set (see the module docstring)."""
    fc = section(config)
    test_span = fc.test_windows * horizon
    start = test_span + fc.backtest_windows * horizon
    train_part = cut(panel, start)
    model = fit(family, config, train_part)
    stride = max(1, horizon // 8)
    origins = list(range(start, test_span + horizon - 1, -stride))
    windows = forecast_windows(model, panel, origins, horizon, _scales(train_part))
    return conformal_quantiles(windows.scaled, fc.interval_level)


def prepare(config: Config, data_path: str | Path | None = None) -> tuple[Path, Panel]:
    path = config.resolve(data_path or config.data.path)
    return path, read_panel(load_data(path), config)


def train(
    config: Config, data_path: str | Path | None = None, promote: bool = True
) -> ForecastResult:
    """Backtest, calibrate, test, log, register; promote if the gate allows it."""
    fc = section(config)
    primary = fc.primary_metric
    started = time.perf_counter()
    path, panel = prepare(config, data_path)
    horizon = check_length(config, panel)
    scores = backtest(config, panel, horizon)
    means = {f: float(np.mean(v)) for f, v in scores.items() if np.all(np.isfinite(v))}
    ranked = sorted(
        (f for f in means if f in fc.candidates), key=lambda f: (means[f], fc.candidates.index(f))
    )
    if not ranked:
        raise DataValidationError(
            "No candidate forecaster could be fitted in the backtests (see the warnings)."
        )
    chosen = ranked[0]
    quantiles = calibrate(config, chosen, panel, horizon)

    test_span = fc.test_windows * horizon
    before_test = cut(panel, test_span)
    scales = _scales(before_test)
    origins = [test_span - w * horizon for w in range(fc.test_windows)]
    model_test = forecast_windows(fit(chosen, config, before_test), panel, origins, horizon, scales)
    baseline_test = forecast_windows(
        fit(BASELINE, config, before_test), panel, origins, horizon, scales
    )
    width = quantiles[None, :] * model_test.scales[:, None]
    metrics = forecast_metrics(
        model_test.actual, model_test.forecast, model_test.scales,
        model_test.forecast - width, model_test.forecast + width,
    )
    baseline_metrics = forecast_metrics(
        baseline_test.actual, baseline_test.forecast, baseline_test.scales
    )
    against_baseline = paired_test(
        baseline_test.scaled, model_test.scaled, config.promotion.alpha, (BASELINE, "new"), primary
    )

    final = fit(chosen, config, panel)
    full_scales = _scales(panel)
    keep = keep_steps(final, panel.season_length)
    histories = {key: s.tail(keep) for key, s in panel.series.items()}
    leaderboard = [
        {
            "family": family,
            f"backtest_{primary}": means.get(family, float("nan")),
            f"backtest_{primary}_by_window": scores[family],
            "chosen": family == chosen,
        }
        for family in sorted(scores, key=lambda f: means.get(f, float("inf")))
    ]
    metadata: dict[str, Any] = {
        "model_name": config.tracking.registered_model,
        "kind": "forecasting",
        "task": config.task,
        "model_family": chosen,
        "strategy": fc.strategy if chosen == "lightgbm" else None,
        "primary_metric": primary,
        "higher_is_better": False,
        "horizon": fc.horizon,
        "max_horizon": horizon,
        "frequency": panel.frequency,
        "season_length": panel.season_length,
        "interval_level": fc.interval_level,
        "target": config.data.target,
        "time_column": fc.time_column,
        "series_column": fc.series_column,
        "covariates": [c.model_dump() for c in fc.covariates],
        "series": len(panel.series),
        "rows": panel.rows,
        "fixes": panel.fixes,
        "metrics": metrics,
        "baseline_metrics": baseline_metrics,
        "baseline_test": {"test": against_baseline.test, "p_value": against_baseline.p_value},
        "leaderboard": leaderboard,
        "windows": {"backtest": fc.backtest_windows, "test": fc.test_windows},
        "test_start": {key: str(s.times[len(s) - test_span]) for key, s in panel.series.items()},
        "reference": reference(panel, model_test),
        "seed": config.seed,
        "threads": THREADS,
        "data_path": str(path),
        "data_hash": file_hash(path),
        "git_commit": git_commit(config.root),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    forecaster = Forecaster(
        final, histories, full_scales, quantiles, fc.interval_level, panel.frequency, metadata
    )
    setup(config)
    current = champion_version(config)
    metadata = _log_run(config, forecaster, time.perf_counter() - started)
    champion_value, comparison = _against_champion(
        config, current, panel, origins, horizon, scales, model_test
    )
    decision = decide(
        primary,
        metrics[primary],
        baseline_metrics[primary],
        champion_value,
        f"v{current.version}" if current is not None else "",
        config.promotion,
        comparison,
        against_baseline,
        higher=False,
        baseline_label="seasonal naive",
    )
    if promote and decision.promote:
        apply_promotion(config, metadata["model_version"], decision.reason, forecaster)
    served = None
    if promote and not decision.beats_baseline:
        served = _serve_baseline(
            config, current, forecaster, decision, panel, horizon, baseline_test, started
        )
    return ForecastResult(forecaster, metadata, decision, comparison, against_baseline, served)


def _serve_baseline(
    config: Config,
    current: Any | None,
    candidate: Forecaster,
    decision: Decision,
    panel: Panel,
    horizon: int,
    baseline_test: Windows,
    started: float,
) -> tuple[str, Decision] | None:
    """Seasonal naive as the first champion when nothing beat it significantly
    (registry.serve_baseline): registered as its own version, calibrated like any winner,
    refitted on all the data."""
    meta = candidate.metadata

    def register() -> str:
        fc = section(config)
        width = calibrate(config, BASELINE, panel, horizon)
        bounds = width[None, :] * baseline_test.scales[:, None]
        metrics = forecast_metrics(
            baseline_test.actual, baseline_test.forecast, baseline_test.scales,
            baseline_test.forecast - bounds, baseline_test.forecast + bounds,
        )
        final = fit(BASELINE, config, panel)
        keep = keep_steps(final, panel.season_length)
        metadata = {
            **{k: v for k, v in meta.items() if k not in ("model_version", "run_id")},
            "model_family": BASELINE,
            "strategy": None,
            "metrics": metrics,
            "leaderboard": [{**row, "chosen": row["family"] == BASELINE}
                            for row in meta["leaderboard"]],
            "reference": reference(panel, baseline_test),
            "served_instead_of": {"version": str(meta["model_version"]),
                                  "family": meta["model_family"], "reason": decision.reason},
        }
        naive = Forecaster(
            final, {key: s.tail(keep) for key, s in panel.series.items()}, _scales(panel),
            width, fc.interval_level, panel.frequency, metadata,
        )
        registered = _log_run(config, naive, time.perf_counter() - started)
        served[str(registered["model_version"])] = naive
        return str(registered["model_version"])

    served = {str(meta["model_version"]): candidate}
    return serve_baseline(
        current, decision, (str(meta["model_version"]), meta["model_family"]),
        (BASELINE, "seasonal naive"), register,
        lambda version, why: apply_promotion(config, version, why, served[version]),
    )


def reference(panel: Panel, tested: Windows) -> dict[str, Any]:
    """What monitoring compares live data with: the test windows' scaled residuals (signed)
    and each series' seasonal profile (mean by position in the season, standardised)."""
    residuals = ((tested.actual - tested.forecast) / tested.scales[:, None]).ravel()
    return {
        "residual_mean": float(residuals.mean()),
        "residual_sd": float(residuals.std(ddof=1)) if len(residuals) > 1 else 1.0,
        "residuals": np.sort(residuals).tolist()[:: max(1, len(residuals) // 500)],
        "profiles": {
            key: seasonal_profile(s.y[-8 * panel.season_length :], s.times, panel.season_length)
            for key, s in panel.series.items()
        } if panel.season_length > 1 else {},
    }


def seasonal_profile(y: np.ndarray, times: Any, season: int) -> list[float]:
    """The mean of ``y`` at each position of the season (its last steps aligned to the end),
    minus its mean, over its standard deviation."""
    n = len(y) - len(y) % season
    if n < season:
        return []
    cycles = y[len(y) - n :].reshape(-1, season)
    profile = cycles.mean(axis=0)
    spread = profile.std()
    return ((profile - profile.mean()) / spread).tolist() if spread > 0 else [0.0] * season


def _log_run(config: Config, forecaster: Forecaster, seconds: float) -> dict[str, Any]:
    metadata = forecaster.metadata
    primary = metadata["primary_metric"]
    logged = {
        **{f"test_{k}": v for k, v in metadata["metrics"].items()},
        **{f"baseline_{k}": v for k, v in metadata["baseline_metrics"].items()},
        "baseline_test_p_value": metadata["baseline_test"]["p_value"],
        "training_seconds": seconds,
    }
    for row in metadata["leaderboard"]:
        logged[f"backtest_{primary}_{row['family']}"] = row[f"backtest_{primary}"]
    params = {
        "family": metadata["model_family"],
        "strategy": metadata["strategy"],
        "horizon": metadata["horizon"],
        "frequency": metadata["frequency"],
        "season_length": metadata["season_length"],
        "seed": config.seed,
        "threads": THREADS,
    }

    def candidates() -> None:
        for row in metadata["leaderboard"]:
            with mlflow.start_run(run_name=f"candidate: {row['family']}", nested=True):
                mlflow.log_params({"family": row["family"], "chosen": row["chosen"]})
                for step, value in enumerate(row[f"backtest_{primary}_by_window"]):
                    if np.isfinite(value):
                        mlflow.log_metric(f"backtest_{primary}", value, step=step)

    def bundle(folder: Path, registered: dict[str, Any]) -> Path:
        metadata.update(registered)
        return export_bundle(folder, forecaster)

    register_version(config, "forecasting", metadata, params, logged, bundle, candidates)
    return metadata


def export_bundle(folder: Path, forecaster: Forecaster) -> Path:
    meta = forecaster.metadata
    return save_bundle(
        folder,
        forecaster,
        meta,
        {"kind": "forecasting", **meta["reference"]},
        model_saver=save_forecaster,
    )


def load_version(config: Config, reference: str) -> Forecaster:
    """A registered version (number or alias) from the tracking store."""
    return read_version(config, reference, load_forecaster)


def _against_champion(
    config: Config,
    current: Any | None,
    panel: Panel,
    origins: list[int],
    horizon: int,
    scales: dict[str, float],
    tested: Windows,
) -> tuple[float | None, Comparison | None]:
    """The champion's forecasts of this run's test windows (as it would serve them, from the
    same histories) and the paired test against it; its logged metric if it cannot."""
    if current is None:
        return None, None
    primary = section(config).primary_metric
    try:
        champion = load_version(config, str(current.version))
        windows = forecast_windows(champion.model, panel, origins, horizon, scales)
    except Exception as exc:  # the champion's logged score is still a valid comparison
        log.warning("Could not re-score champion v%s (%s); using its logged metric.",
                    current.version, exc)
        logged = MlflowClient().get_run(current.run_id).data.metrics
        return logged.get(f"test_{primary}"), None
    comparison = paired_test(
        windows.scaled, tested.scaled, config.promotion.alpha,
        (str(current.version), "new"), primary,
    )
    return windows.metric(primary), comparison


def promote_version(
    config: Config, version: str, reason: str = "", force: bool = False
) -> Decision:
    """The ``promote`` command: registered ``version`` against seasonal naive and the
    champion, all forecasting the test windows of the configured data from the same histories
    (the paired test, as at training), or ``force``d; a positive decision is applied.

    A served model was refitted on all of its data: when that data holds these test windows,
    both versions have seen them, and the comparison is optimistic for both."""
    setup(config)
    candidate = load_version(config, version)

    def judge(current: Any | None) -> Decision:
        fc = section(config)
        primary = fc.primary_metric
        _, panel = prepare(config)
        horizon = check_length(config, panel)
        test_span = fc.test_windows * horizon
        before_test = cut(panel, test_span)
        scales = _scales(before_test)
        origins = [test_span - w * horizon for w in range(fc.test_windows)]
        new = forecast_windows(candidate.model, panel, origins, horizon, scales)
        naive = forecast_windows(fit(BASELINE, config, before_test), panel, origins, horizon,
                                 scales)
        against_baseline = paired_test(
            naive.scaled, new.scaled, config.promotion.alpha, (BASELINE, version), primary
        )
        champion_value, comparison = _against_champion(
            config, current, panel, origins, horizon, scales, new
        )
        if comparison is not None:
            print(comparison.summary())
        return decide(
            primary,
            new.metric(primary),
            naive.metric(primary),
            champion_value,
            f"v{current.version}" if current is not None else "",
            config.promotion,
            comparison,
            against_baseline,
            higher=False,
            baseline_label="seasonal naive",
        )

    return promote_with(
        config, version, reason, force, judge,
        lambda why: apply_promotion(config, version, why, candidate),
    )


def apply_promotion(config: Config, version: str, reason: str, forecaster: Forecaster) -> Path:
    """Move the ``champion`` alias to ``version`` and export its bundle (the outgoing
    champion's becomes ``previous/``)."""
    return export_champion(
        config, version, reason, lambda folder: export_bundle(folder, forecaster),
        model_card(config, forecaster.metadata),
    )


def _against_naive(metadata: dict[str, Any]) -> str:
    tested = f"Against seasonal naive: {TEST}, p={metadata['baseline_test']['p_value']:.3g}."
    return " ".join(filter(None, [tested, served_instead(metadata, "seasonal naive")]))


def model_card(config: Config, metadata: dict[str, Any]) -> str:
    """MODEL_CARD.md of a forecaster, from its metadata."""
    primary = metadata["primary_metric"]
    metrics, baseline = metadata["metrics"], metadata["baseline_metrics"]
    level = metadata["interval_level"]
    lines = [
        f"# Model card: {config.project.name}",
        "",
        f"Model `{metadata['model_name']}` version {metadata['model_version']} (MLflow run "
        f"`{metadata['run_id']}`), trained {metadata['trained_at']}: {metadata['model_family']}"
        + (f" ({metadata['strategy']})" if metadata.get("strategy") else "") + ".",
        "",
        "## Intended use",
        config.project.description or "Not described: set project.description in the config.",
        "",
        f"Forecasts `{metadata['target']}` {metadata['horizon']} steps of "
        f"{metadata['frequency']} ahead (at most {metadata['max_horizon']}) for "
        f"{metadata['series']} series, with {level:.0%} conformal prediction intervals.",
        "",
        "## Data",
        f"- File: `{metadata['data_path']}` (sha256 `{metadata['data_hash'][:16]}...`), "
        f"{metadata['rows']} steps; season length {metadata['season_length']}.",
        *(f"- Fix applied: {fix}" for fix in metadata["fixes"]),
        f"- Test: the last {metadata['windows']['test']} windows of each series; model chosen "
        f"on {metadata['windows']['backtest']} expanding-window backtests before them.",
        "",
        f"## Metrics (test windows; primary: {primary})",
        "| metric | model | seasonal naive |",
        "| --- | --- | --- |",
        *(
            f"| {name} | {metrics[name]:.4f} | "
            + (f"{baseline[name]:.4f} |" if name in baseline else "|")
            for name in METRICS
        ),
        _against_naive(metadata),
        "",
        f"## Candidates (mean backtest {primary})",
        "| family | backtest |",
        "| --- | --- |",
        *(
            f"| {row['family']}{' (chosen)' if row['chosen'] else ''} | "
            f"{row[f'backtest_{primary}']:.4f} |"
            for row in metadata["leaderboard"]
        ),
        "",
        "## Limitations",
        "- Intervals are calibrated on backtest errors; they assume the future errs as the "
        "recent past did (watch live coverage from POST /feedback).",
        "- Covariates not known in advance enter only with values at least a horizon old.",
        "",
        "## How to reproduce",
        f"`python -m {config.project.package} train` at commit `{metadata['git_commit']}` with "
        f"the data file above (seed {metadata['seed']}, {metadata['threads']} thread).",
        "",
    ]
    return "\n".join(lines)


def summary(result: ForecastResult) -> str:
    meta = result.metadata
    primary = meta["primary_metric"]
    lines = [
        f"Trained {meta['model_name']} v{meta['model_version']} ({meta['model_family']}, run "
        f"{meta['run_id']}) on {meta['series']} series, {meta['rows']} steps of "
        f"{meta['frequency']}; horizon {meta['horizon']}.",
        f"{'metric':<12}{'model':>10}{'seasonal naive':>16}",
    ]
    for name in METRICS:
        marker = " *" if name == primary else ""
        base = meta["baseline_metrics"].get(name)
        lines.append(
            f"{name + marker:<12}{result.metrics[name]:>10.4f}"
            + (f"{base:>16.4f}" if base is not None else f"{'':>16}")
        )
    lines.append(f"Candidates (mean backtest {primary}):")
    for row in meta["leaderboard"]:
        lines.append(
            f"  {row['family']:<16} {row[f'backtest_{primary}']:.4f}"
            + ("  <- chosen" if row["chosen"] else "")
        )
    lines.append(f"Against seasonal naive: {TEST}, p={result.baseline_comparison.p_value:.3g}")
    if result.comparison is not None:
        lines.append(result.comparison.summary())
    lines.append(result.decision.verdict)
    if not result.decision.beats_baseline:
        test = result.baseline_comparison
        model, naive = result.metrics[primary], meta["baseline_metrics"].get(primary)
        higher = HIGHER_IS_BETTER.get(primary, False)
        served, until = baseline_outcome(
            result.baseline_served, "seasonal naive", "`train` exits 1 until one does"
        )
        lines.extend(served)
        if meta["model_family"] == BASELINE:
            # The backtests chose the baseline itself: it cannot beat itself on the test.
            lines.append(
                f"The backtests chose seasonal naive itself: no candidate beat it on {primary} "
                "over the backtest windows, so there is no model better than the baseline to "
                f"promote; {until}. Check the frequency and season length, the covariates and "
                "the horizon, or give more history."
            )
        elif naive is not None and (model > naive if higher else model < naive):
            # Better, but the test cannot tell: a short series' few test windows.
            n = min(test.n_champion, test.n_challenger)
            lines.append(
                f"The model scores better than seasonal naive on {primary} ({model:.4f} vs "
                f"{naive:.4f}), but the test holds only {n} paired test errors, too few to "
                f"tell the two apart at alpha {test.alpha}; {until}. Give the test more "
                "windows (forecasting.test_windows) or more history, or promote this version "
                "by hand (`promote --version VERSION --force --reason TEXT`)."
            )
        else:
            lines.append(
                f"The model does not beat seasonal naive on {primary}; {until}. Check the "
                "frequency and season length, the covariates and the horizon."
            )
    return "\n".join(lines)

