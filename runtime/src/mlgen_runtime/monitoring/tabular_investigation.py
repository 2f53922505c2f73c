"""The tabular kind's *investigation*: why a classifier or regressor got worse, section by section.

The reference is the champion on the test split of its configured data (``data.path``): rows
it never trained on, from the time it was known to be good. Against it, the observed rows
(monitoring/investigation.py) are cut into windows of equal row counts, and each section tests
one explanation (the budget of false alarms: see investigation.py):

- performance over time: the primary metric per window with a 95% interval (analytic: binomial,
  mean losses, DeLong for ROC AUC; else a bootstrap), a one-sided z-test of "worse than the
  test split" per window, and when the drop started (the change point of the per-row loss,
  by its cumulative sum);
- where it dropped: the mean per-row loss (log loss for classifiers, absolute error for
  regression) of each slice (categories, quartiles of numbers) against the same slice of the
  test split (Welch's test);
- covariate drift: drift.compare of each window with the training reference;
- label shift: the target's distribution per window against the test split's, by the same
  tests as a feature (drift.py), and features whose drift the new class priors explain;
- concept drift (classifiers): the per-row loss minus the loss the (calibrated, and when the
  priors moved, prior-adjusted) probabilities expect. Under covariate shift alone that gap does
  not move, so a rise, overall or in a slice, is a change of P(y|x). Regression: the error of
  each slice against the same slice of the test split;
- performance without labels (binary and multiclass): CBPE, the metric expected from the
  probabilities after isotonic calibration on the test split;
- data quality: columns gone, new categories, out-of-range values, newly missing values;
- fairness: per-group metrics for ``fairness.sensitive_attributes`` (fairness.py);
- recommendation: the champion's pipeline refitted on recent labelled rows (alone, added to the
  training data, or added with recency weights), backtested against the champion on the latest
  window by the promotion gate's paired test.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from ..compare import _delong_parts
from ..scoring import METRICS, REGRESSION, Prediction, row_log_loss
from .drift import build_reference, compare
from .investigation import (
    Investigation,
    Observed,
    Section,
    figure_png,
    holm,
    section_alpha,
)

if TYPE_CHECKING:
    from ..bundle import Bundle
    from ..config import Config

Z95 = 1.959963984540054
SLICE_BINS = 4
MAX_SLICE_CATEGORIES = 20
MIN_SLICE_ROWS = 30
TOP_SLICES = 10
# Sections that test (each takes an equal share of the report's alpha).
TESTING = (
    "performance",
    "slices",
    "covariate_drift",
    "label_shift",
    "concept_drift",
    "data_quality",
)
# Bootstrap draws for a metric without an analytic interval, and at most this many rows each.
BOOTSTRAP_DRAWS = 100
BOOTSTRAP_ROWS = 20_000
# The recommended retrain's data, written beside the report for `retrain --data`.
RETRAIN_FILE = "retrain.csv"


def prepare(config: Config) -> pd.DataFrame:
    """Ahead of :func:`investigate` (cli.py runs this while the log is read in a thread): the
    modules a report imports as it goes, and the training data (its ``history``), which do not
    depend on the rows under investigation."""
    import matplotlib.pyplot  # noqa: F401  (the plots)
    import sklearn.isotonic  # noqa: F401  (the calibration)

    from ..data import load_training_data
    from . import retrain_backtest  # noqa: F401  (the recommendation's backtest)

    return load_training_data(config)


def investigate(
    config: Config,
    observed: Observed,
    bundle: Bundle | None = None,
    history: pd.DataFrame | None = None,
) -> Investigation:
    """The tabular kind's report on ``observed`` (``history``: the training data, when
    :func:`prepare` read it already)."""
    from ..data import load_training_data, split

    bundle = bundle or served_champion(config, observed)
    if history is None:
        history = load_training_data(config)
    return TabularInvestigation(
        config, bundle, observed, history, split(history, config).test
    ).run()


def served_champion(config: Config, observed: Observed) -> Bundle:
    """The champion to investigate: the exported folder (``artifacts/champion``) when its
    version is the one that served the latest logged row, else the registry's.

    The folder is what ``promote`` exports, so when the versions agree it holds the same
    pipeline as the registry, and loading it skips MLflow's import and its tracking store
    (~3 s of CPU of a run)."""
    from ..bundle import load_bundle_dir, load_metadata
    from ..fallback import CHAMPION_DIR, fallback_dir

    if observed.served_version is not None:
        folder = fallback_dir(config, CHAMPION_DIR)
        try:
            exported = load_metadata(folder)
        except (OSError, ValueError):
            exported = {}
        if (
            str(exported.get("model_version")) == observed.served_version
            and exported.get("model_name") == config.tracking.registered_model
        ):
            return load_bundle_dir(folder, source="file")
    from ..registry import load_champion

    return load_champion(config)


class TabularInvestigation:
    def __init__(
        self,
        config: Config,
        bundle: Bundle,
        observed: Observed,
        history: pd.DataFrame,
        reference: pd.DataFrame,
    ) -> None:
        settings = config.investigate
        self.config = config
        self.bundle = bundle
        self.observed = observed
        self.settings = settings
        self.task = config.task
        self.target = config.data.target
        self.primary = config.metric.primary
        self.names = [f["name"] for f in bundle.features]
        self.windows = observed.windows(settings.windows, settings.min_window_rows)
        self.alpha = section_alpha(settings.alpha, len(TESTING))
        # The configured data (training history) and its test split, the reference.
        self.history = history
        self.reference = reference.reset_index(drop=True)
        self.ref = self._predict(self.reference, labelled=True)
        self.cur = self._predict(observed.frame, labelled=observed.labelled)
        self.calibrate = self._calibrator()

    # ------------------------------------------------------------------ shared pieces

    def _predict(self, frame: pd.DataFrame, labelled: bool) -> Prediction:
        x = frame.reindex(columns=self.names)
        truth = frame[self.target].to_numpy() if labelled else np.full(len(frame), None)
        model = self.bundle.pipeline
        if self.task == REGRESSION:
            truth = truth.astype(float) if labelled else np.full(len(frame), np.nan)
            return Prediction(truth, np.asarray(model.predict(x), dtype=float))
        proba = model.predict_proba(x)
        classes = np.asarray(model.classes_)
        if labelled:
            # Labels as the model knows them, whether the file wrote 1 or "1".
            # Mapped once per distinct value, not per row.
            known = {str(c): c for c in classes.tolist()}
            rows, distinct = pd.factorize(truth, use_na_sentinel=False)
            mapped = np.empty(len(distinct), dtype=object)
            mapped[:] = [known.get(str(v), v) for v in distinct.tolist()]
            truth = mapped[rows]
        return Prediction(truth, classes[proba.argmax(axis=1)], proba, classes.tolist())

    def observed_prediction(self, rows: Any) -> Prediction:
        """The champion's prediction of ``rows`` of the observed rows."""
        return _subset(self.cur, rows)

    def row_loss(self, p: Prediction) -> np.ndarray:
        if self.task == REGRESSION:
            return np.abs(p.y_true - p.predicted)
        return row_log_loss(p)

    @property
    def loss_name(self) -> str:
        return "absolute error" if self.task == REGRESSION else "log loss"

    def _calibrator(self) -> Any:
        """Isotonic calibration of the positive-class probability on the test split (binary),
        for CBPE and the concept section; None otherwise (probabilities taken as they are)."""
        if self.task != "binary_classification":
            return None
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4)
        iso.fit(self.ref.probabilities[:, 1], self.ref.positive.astype(float))
        return iso

    def calibrated(self, p: Prediction, priors: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities; with ``priors`` (a row of class priors per row), adjusted
        to them from the test split's (Saerens et al., 2002: the posterior is reweighted by
        the ratio of new to old prior, class by class)."""
        proba = p.probabilities
        if self.calibrate is not None:
            positive = self.calibrate.predict(proba[:, 1])
            proba = np.column_stack([1 - positive, positive])
        if priors is not None:
            old = np.maximum(self._priors(slice(None), self.ref), 1e-12)
            proba = proba * (priors / old)
            proba = proba / proba.sum(axis=1, keepdims=True)
        return proba

    def _row_priors(self, label_shift: Section) -> np.ndarray | None:
        """Per row, the class priors of its window where the label shift section found them
        moved (the test split's elsewhere); None when the priors held or are not classes."""
        if not label_shift.found or "classes" not in label_shift.details:
            return None
        priors = np.tile(self._priors(slice(None), self.ref), (len(self.cur.y_true), 1))
        for row in label_shift.details["windows"]:
            if row["shifted"]:
                priors[self.windows[row["window"]].rows] = row["priors"]
        return priors

    def metric_value(self, p: Prediction, rows: Any = slice(None)) -> tuple[float, float]:
        """The primary metric on ``rows`` of ``p`` and its standard error."""
        p = _subset(p, rows)
        n = len(p.y_true)
        metric = self.primary
        if n == 0:
            return math.nan, math.nan
        if metric == "accuracy":
            hits = (p.true_codes == p.predicted_codes).astype(float)
            return float(hits.mean()), float(hits.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        if metric in ("log_loss", "mae"):
            values = row_log_loss(p) if metric == "log_loss" else np.abs(p.y_true - p.predicted)
            return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        if metric == "rmse":
            squared = (p.y_true - p.predicted) ** 2
            rmse = math.sqrt(squared.mean())
            se = squared.std(ddof=1) / math.sqrt(n) / (2 * rmse) if rmse > 0 and n > 1 else 0.0
            return rmse, float(se)
        if metric == "roc_auc":
            parts = _delong_parts(p)
            if parts is None:
                return math.nan, math.nan
            variance = np.var(parts.per_positive, ddof=1) / len(parts.per_positive) + np.var(
                parts.per_negative, ddof=1
            ) / len(parts.per_negative)
            return parts.auc, float(math.sqrt(max(variance, 0.0)))
        measure = METRICS[metric]
        rng = np.random.default_rng(self.config.seed)
        size = min(n, BOOTSTRAP_ROWS)
        draws = rng.integers(0, n, size=(BOOTSTRAP_DRAWS, size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = measure.compute(p, draws)
            value = measure.value(p)
        values = values[~np.isnan(values)]
        # The spread of resamples of `size` rows, scaled to n rows.
        se = float(np.std(values, ddof=1) * math.sqrt(size / n)) if len(values) > 1 else math.nan
        return value, se

    # ------------------------------------------------------------------ the report

    def run(self) -> Investigation:
        label_shift = self.label_shift()
        sections = [
            self.performance(),
            self.slices(),
            self.covariate_drift(label_shift),
            label_shift,
            self.concept_drift(self._row_priors(label_shift)),
            self.without_labels(),
            self.data_quality(),
        ]
        if self.config.fairness.sensitive_attributes:
            sections.append(self.fairness())
        sections.append(self.recommendation(sections))
        settings = self.settings
        return Investigation(
            source=self.observed.source,
            rows=len(self.observed.frame),
            labelled=self.observed.labelled,
            model=f"{self.bundle.model_name} v{self.bundle.model_version}",
            alpha=settings.alpha,
            multiple_testing=(
                f"Multiple testing: the report's false-alarm budget alpha={settings.alpha} is "
                f"split equally over its {len(TESTING)} testing sections (Bonferroni, "
                f"{self.alpha:.4g} each), and each section controls its family of tests by "
                "Holm's step-down procedure (drift: Bonferroni over windows and features). An "
                "alarm also needs an effect above its floor (configs: investigate, drift)."
            ),
            sections=sections,
        )

    def _needs_labels(self, name: str, title: str) -> Section | None:
        if self.observed.labelled:
            return None
        return Section(
            name,
            title,
            False,
            "needs labelled rows (the target column, or outcomes fed back to POST /feedback)",
            tests=False,
        )

    def performance(self) -> Section:
        title = "Performance over time"
        missing = self._needs_labels("performance", title)
        if missing:
            return missing
        ref_value, ref_se = self.metric_value(self.ref)
        higher = METRICS[self.primary].higher_is_better
        floor = self.settings.min_relative_drop * abs(ref_value)
        rows: list[dict[str, Any]] = []
        p_values: list[float] = []
        for w in self.windows:
            value, se = self.metric_value(self.cur, w.rows)
            worse = (ref_value - value) if higher else (value - ref_value)
            spread = math.hypot(se, ref_se)
            z = worse / spread if spread > 0 else 0.0
            p_values.append(float(stats.norm.sf(z)) if np.isfinite(z) else 1.0)
            rows.append(
                {
                    "window": w.index,
                    "from": w.first,
                    "to": w.last,
                    "rows": w.stop - w.start,
                    self.primary: value,
                    "ci_low": value - Z95 * se,
                    "ci_high": value + Z95 * se,
                    "worse_by": worse,
                }
            )
        rejected = holm(p_values, self.alpha)
        for row, p, r in zip(rows, p_values, rejected, strict=True):
            row["p_value"] = p
            row["degraded"] = bool(r and row["worse_by"] >= floor)
        degraded = [r for r in rows if r["degraded"]]
        details: dict[str, Any] = {
            "metric": self.primary,
            "test_split": {
                "value": ref_value,
                "ci_low": ref_value - Z95 * ref_se,
                "ci_high": ref_value + Z95 * ref_se,
                "rows": len(self.ref.y_true),
            },
            "windows": rows,
        }
        if degraded:
            change = self._change_point()
            details["drop_started"] = change
            first = degraded[0]
            summary = (
                f"{self.primary} {ref_value:.4f} on the test split; worse in "
                f"{len(degraded)} of {len(rows)} windows, first {first['from']} .. "
                f"{first['to']} ({first[self.primary]:.4f}); the drop started near {change}"
            )
        else:
            summary = (
                f"{self.primary} {ref_value:.4f} on the test split; no window significantly worse"
            )
        plot = self._plot_timeline(rows, ref_value, ref_se)
        return Section("performance", title, bool(degraded), summary, details, [plot])

    def _change_point(self) -> str:
        """The row after which the per-row loss's mean shifted most (the maximum of its
        centred cumulative sum), as a time."""
        loss = self.row_loss(self.cur)
        path = np.cumsum(loss - loss.mean())
        return self.observed.when(int(np.argmax(np.abs(path))))

    def _plot_timeline(self, rows: list[dict], ref: float, ref_se: float) -> tuple[str, str]:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.2))
        x = [r["window"] for r in rows]
        values = np.array([r[self.primary] for r in rows])
        low = values - np.array([r["ci_low"] for r in rows])
        high = np.array([r["ci_high"] for r in rows]) - values
        colors = ["#c33" if r["degraded"] else "#37a" for r in rows]
        ax.errorbar(x, values, yerr=[low, high], fmt="none", ecolor="#999")
        ax.scatter(x, values, c=colors, zorder=3)
        ax.axhspan(
            ref - Z95 * ref_se,
            ref + Z95 * ref_se,
            color="#8c8",
            alpha=0.3,
            label="test split (95% CI)",
        )
        ax.set_xlabel("window (oldest first)")
        ax.set_ylabel(self.primary)
        ax.legend(fontsize=8)
        return f"{self.primary} per window", figure_png(fig)

    # ------------------------------------------------------------------ slices

    def _slices(self, frame: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
        """(name, mask) of every slice: each category, each quartile of a number (cut at the
        test split's quartiles, so a slice means the same rows in both)."""
        result = []
        for feature in self.bundle.features:
            name = feature["name"]
            if name not in frame.columns or name not in self.reference.columns:
                continue
            column = frame[name]
            if feature.get("type") == "numeric":
                values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
                ref = pd.to_numeric(self.reference[name], errors="coerce").to_numpy(dtype=float)
                edges = np.unique(np.nanquantile(ref, np.linspace(0, 1, SLICE_BINS + 1)[1:-1]))
                codes = np.searchsorted(edges, values, side="right")
                bounds = [-np.inf, *edges.tolist(), np.inf]
                for code in range(len(edges) + 1):
                    label = f"{name} in [{bounds[code]:.4g}, {bounds[code + 1]:.4g})"
                    result.append((label, (codes == code) & np.isfinite(values)))
            elif feature.get("type") in ("categorical", "boolean"):
                # Codes of the distinct values: one comparison of integers per category.
                codes, distinct = pd.factorize(column.astype(str))
                position = {value: code for code, value in enumerate(distinct.tolist())}
                top = self.reference[name].astype(str).value_counts().index[:MAX_SLICE_CATEGORIES]
                for category in top:
                    result.append((f"{name} = {category}", codes == position.get(category, -2)))
        return result

    def slices(self) -> Section:
        title = "Where it dropped"
        missing = self._needs_labels("slices", title)
        if missing:
            return missing
        rows = self._slice_tests(self.row_loss(self.ref), self.row_loss(self.cur))
        floor = self._loss_floor()
        # Ranked by the lower end of the increase's interval: the slice surely worst first, not a
        # small slice whose point estimate is high by chance.
        top = sorted(rows, key=lambda r: -r["ci_low"])
        found = [r for r in top if r["significant"] and r["increase"] >= floor]
        top = top[:TOP_SLICES]
        summary = (
            f"{len(found)} slice(s) lost significantly; largest: {found[0]['slice']} "
            f"({self.loss_name} {found[0]['test_split']:.3f} -> {found[0]['current']:.3f}, "
            f"n={found[0]['rows']})"
            if found
            else f"no slice's {self.loss_name} rose significantly"
        )
        plot = self._plot_slices(top)
        return Section(
            "slices",
            title,
            bool(found),
            summary,
            {
                "loss": self.loss_name,
                "largest_loss": top,
                "significant": [r["slice"] for r in found],
            },
            [plot],
        )

    def _loss_floor(self) -> float:
        floor = self.settings.min_loss_increase
        if self.task == REGRESSION:
            # Absolute error in the target's units: the floor is a share of the test split's.
            return floor * float(np.mean(self.row_loss(self.ref)))
        return floor

    def _slice_tests(self, ref_values: np.ndarray, cur_values: np.ndarray) -> list[dict]:
        ref_masks = dict(self._slices(self.reference))
        rows: list[dict[str, Any]] = []
        p_values: list[float] = []
        for name, mask in self._slices(self.observed.frame):
            ref_mask = ref_masks.get(name)
            if ref_mask is None or mask.sum() < MIN_SLICE_ROWS or ref_mask.sum() < MIN_SLICE_ROWS:
                continue
            cur, ref = cur_values[mask], ref_values[ref_mask]
            increase, se, p = _welch_greater(cur, ref)
            rows.append(
                {
                    "slice": name,
                    "rows": int(mask.sum()),
                    "test_rows": int(ref_mask.sum()),
                    "test_split": float(ref.mean()),
                    "current": float(cur.mean()),
                    "increase": increase,
                    "ci_low": increase - Z95 * se,
                    "ci_high": increase + Z95 * se,
                }
            )
            p_values.append(p)
        for row, p, r in zip(rows, p_values, holm(p_values, self.alpha), strict=True):
            row["p_value"] = p
            row["significant"] = bool(r)
        return rows

    def _plot_slices(self, top: list[dict]) -> tuple[str, str]:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 0.4 * max(len(top), 3) + 1))
        names = [r["slice"] for r in top][::-1]
        values = np.array([r["increase"] for r in top][::-1])
        errors = values - np.array([r["ci_low"] for r in top][::-1])
        ax.barh(
            names,
            values,
            xerr=errors,
            color=["#c33" if r["significant"] else "#37a" for r in top][::-1],
        )
        ax.axvline(0, color="#444", linewidth=0.8)
        ax.set_xlabel(f"rise in mean {self.loss_name} vs the test split (95% CI)")
        ax.tick_params(axis="y", labelsize=7)
        return "slices with the largest loss", figure_png(fig)

    # ------------------------------------------------------------------ drift

    def _drift_limits(self, alpha: float) -> dict[str, Any]:
        d = self.config.drift
        return {
            "numeric_threshold": d.numeric_threshold,
            "categorical_threshold": d.categorical_threshold,
            "psi_threshold": d.psi_threshold,
            "alpha": alpha,
        }

    def _drift_timeline(self, reference: dict) -> tuple[list[dict], dict[str, dict]]:
        """Per window, every feature's score; per feature drifted anywhere, when and how much."""
        limits = self._drift_limits(self.alpha / len(self.windows))
        timeline: list[dict[str, Any]] = []
        moved: dict[str, dict[str, Any]] = {}
        frame = self.observed.frame
        for w in self.windows:
            report = compare(reference, frame.iloc[w.rows], **limits)
            timeline.append(
                {
                    "window": w.index,
                    "from": w.first,
                    "to": w.last,
                    "scores": {f.name: f.score for f in report.features},
                    "drifted": report.drifted_features,
                }
            )
            for f in report.features:
                if f.drifted:
                    entry = moved.setdefault(
                        f.name,
                        {
                            "feature": f.name,
                            "measure": f.measure,
                            "first_window": w.index,
                            "since": w.first,
                            "max_score": 0.0,
                            "threshold": f.threshold,
                            "reasons": f.reasons,
                        },
                    )
                    entry["max_score"] = max(entry["max_score"], f.score or 0.0)
        return timeline, moved

    def covariate_drift(self, label_shift: Section) -> Section:
        title = "Covariate drift"
        timeline, moved = self._drift_timeline(self.bundle.reference)
        explained: list[str] = []
        if moved and label_shift.found and "adjusted_priors" in label_shift.details:
            # Features that moved only because the classes' mix moved: compared again with the
            # test split resampled to the new priors, they no longer drift.
            adjusted = self._prior_adjusted_reference(label_shift.details["adjusted_priors"])
            _, still = self._drift_timeline(adjusted)
            explained = [name for name in moved if name not in still]
        drifted = sorted(
            (m for name, m in moved.items() if name not in explained),
            key=lambda m: -m["max_score"] / max(m["threshold"], 1e-12),
        )
        if drifted:
            summary = "moved: " + ", ".join(
                f"{m['feature']} (since {m['since']}, {m['measure']} up to {m['max_score']:.3f})"
                for m in drifted
            )
        else:
            summary = "no feature moved beyond its threshold and the noise"
        if explained:
            summary += "; moved with the label shift: " + ", ".join(explained)
        plot = self._plot_drift(timeline)
        return Section(
            "covariate_drift",
            title,
            bool(drifted),
            summary,
            {"features": drifted, "explained_by_label_shift": explained, "timeline": timeline},
            [plot] if plot else [],
        )

    def _prior_adjusted_reference(self, priors: list[float]) -> dict:
        """The drift reference of the training data resampled (as many rows, so the tests'
        noise is the original's) so that its classes have ``priors``."""
        classes = [str(c) for c in self.ref.labels]
        truth = self.history[self.target].astype(str).to_numpy()
        codes = np.array([classes.index(t) if t in classes else -1 for t in truth])
        counts = np.bincount(codes[codes >= 0], minlength=len(classes)).astype(float)
        weights = np.asarray(priors) / np.maximum(counts / counts.sum(), 1e-12)
        row_weights = np.where(codes >= 0, weights[np.maximum(codes, 0)], 0.0)
        rng = np.random.default_rng(self.config.seed)
        picked = rng.choice(len(codes), size=len(codes), p=row_weights / row_weights.sum())
        resampled = self.history.iloc[picked]
        features = [f for f in self.bundle.features if f["name"] in resampled.columns]
        return build_reference(
            resampled,
            features,
            seed=self.config.seed,
            transforms=self.bundle.reference.get("transforms"),
        )

    def _plot_drift(self, timeline: list[dict]) -> tuple[str, str] | None:
        import matplotlib.pyplot as plt

        names = sorted({n for row in timeline for n, s in row["scores"].items() if s is not None})
        if not names:
            return None
        grid = np.array([[row["scores"].get(n) or 0.0 for row in timeline] for n in names])
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.5))
        image = ax.imshow(grid, aspect="auto", cmap="Reds", vmin=0)
        for i, name in enumerate(names):
            for j, row in enumerate(timeline):
                if name in row["drifted"]:
                    ax.text(j, i, "x", ha="center", va="center", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("window (oldest first); x = drifted")
        fig.colorbar(image, ax=ax, label="drift score")
        return "covariate drift per window", figure_png(fig)

    # ------------------------------------------------------------------ label shift

    def label_shift(self) -> Section:
        title = "Label shift"
        missing = self._needs_labels("label_shift", title)
        if missing:
            return missing
        kind = "numeric" if self.task == REGRESSION else "categorical"
        spec: dict[str, Any] = {"name": self.target, "type": kind}
        if kind == "categorical":
            spec["categories"] = [str(c) for c in self.ref.labels]
        reference = build_reference(
            pd.DataFrame({self.target: _as_text(self.ref.y_true, kind)}),
            [spec],
            seed=self.config.seed,
        )
        limits = self._drift_limits(self.alpha / len(self.windows))
        rows, shifted = [], []
        for w in self.windows:
            truth = _as_text(self.cur.y_true[w.rows], kind)
            feature = compare(reference, pd.DataFrame({self.target: truth}), **limits).features[0]
            row: dict[str, Any] = {
                "window": w.index,
                "from": w.first,
                "to": w.last,
                "measure": feature.measure,
                "score": feature.score,
                "shifted": feature.drifted,
            }
            if kind == "categorical":
                row["priors"] = self._priors(w.rows).tolist()
            rows.append(row)
            if feature.drifted:
                shifted.append(row)
        details: dict[str, Any] = {"windows": rows}
        if kind == "categorical":
            details["classes"] = [str(c) for c in self.ref.labels]
            details["test_split_priors"] = self._priors(slice(None), self.ref).tolist()
        if shifted:
            first = shifted[0]
            if kind == "categorical":
                # The priors of the shifted windows: what the posterior adjustment uses.
                rows_after = slice(self.windows[first["window"]].start, None)
                details["adjusted_priors"] = self._priors(rows_after).tolist()
                change = ", ".join(
                    f"{c} {a:.1%} -> {b:.1%}"
                    for c, a, b in zip(
                        details["classes"],
                        details["test_split_priors"],
                        details["adjusted_priors"],
                        strict=True,
                    )
                )
            else:
                change = (
                    f"{self.target} distribution moved ({first['measure']} {first['score']:.3f})"
                )
            summary = f"since {first['from']}: {change}"
        else:
            summary = "the target's distribution is the test split's, within noise"
        return Section("label_shift", title, bool(shifted), summary, details)

    def _priors(self, rows: Any, p: Prediction | None = None) -> np.ndarray:
        p = p or self.cur
        codes = p.true_codes[rows]
        counts = np.bincount(codes[codes >= 0], minlength=len(p.labels)).astype(float)
        return counts / max(counts.sum(), 1.0)

    # ------------------------------------------------------------------ concept drift

    def concept_drift(self, priors: np.ndarray | None) -> Section:
        title = "Concept drift"
        missing = self._needs_labels("concept_drift", title)
        if missing:
            return missing
        if self.task == REGRESSION:
            # No probabilities to expect a loss from: each slice against itself in the test
            # split, where a move of the inputs across slices cannot hide or fake a change.
            ref_gap, cur_gap = self.row_loss(self.ref), self.row_loss(self.cur)
            measure = "absolute error, slice against the same slice of the test split"
        else:
            ref_gap = self._gap(self.ref, None)
            cur_gap = self._gap(self.cur, priors)
            measure = "log loss minus the log loss the calibrated probabilities expect" + (
                " (adjusted to the new class priors)" if priors is not None else ""
            )
        floor = self._loss_floor()
        increase, se, p_all = _welch_greater(cur_gap, ref_gap)
        slices = self._slice_tests(ref_gap, cur_gap)
        # The overall test is one more member of the section's family.
        rejected = holm([p_all, *[r["p_value"] for r in slices]], self.alpha)
        overall = bool(rejected[0] and increase >= floor and self.task != REGRESSION)
        found = [
            r for r, rej in zip(slices, rejected[1:], strict=True) if rej and r["increase"] >= floor
        ]
        found.sort(key=lambda r: -r["ci_low"])  # surely worst first, as in slices()
        if found:
            summary = "P(y|x) changed in " + ", ".join(
                f"{r['slice']} (+{r['increase']:.3f}, n={r['rows']})" for r in found[:5]
            )
        elif overall:
            summary = f"P(y|x) changed across the data (+{increase:.3f} per row)"
        else:
            summary = "the relation between inputs and target held"
        return Section(
            "concept_drift",
            title,
            bool(found) or overall,
            summary,
            {
                "measure": measure,
                "overall_increase": increase,
                "overall_ci": [increase - Z95 * se, increase + Z95 * se],
                "overall_p_value": p_all,
                "slices": [r for r in found],
                "assumption": (
                    "Under covariate shift alone P(y|x) is unchanged, so the realised loss keeps "
                    "to the loss the model's calibrated probabilities expect."
                ),
            },
        )

    def _gap(self, p: Prediction, priors: np.ndarray | None) -> np.ndarray:
        proba = self.calibrated(p, priors)
        expected = -(proba * np.log(np.clip(proba, 1e-12, 1))).sum(axis=1)
        chosen = proba[np.arange(len(proba)), np.maximum(p.true_codes, 0)]
        realised = -np.log(np.clip(chosen, 1e-12, 1))
        return np.where(p.true_codes >= 0, realised - expected, 0.0)

    # ------------------------------------------------------------------ without labels

    def without_labels(self) -> Section:
        title = "Performance without labels"
        if self.task == REGRESSION:
            return Section(
                "without_labels",
                title,
                False,
                "not estimated: a regressor states no distribution of its errors",
                tests=False,
            )
        metric = self.primary if self.primary in ESTIMATORS else "accuracy"
        estimate = ESTIMATORS[metric]
        ref_estimate = estimate(self.calibrated(self.ref))
        ref_actual = METRICS[metric].value(self.ref)
        rows = []
        for w in self.windows:
            p = _subset(self.cur, w.rows)
            row = {
                "window": w.index,
                "from": w.first,
                "to": w.last,
                f"estimated_{metric}": estimate(self.calibrated(p)),
            }
            if self.observed.labelled:
                row[f"actual_{metric}"] = METRICS[metric].value(p)
            rows.append(row)
        last = rows[-1][f"estimated_{metric}"]
        summary = (
            f"CBPE estimates {metric} {last:.4f} in the latest window (test split: estimated "
            f"{ref_estimate:.4f}, actual {ref_actual:.4f})"
        )
        return Section(
            "without_labels",
            title,
            False,
            summary,
            {
                "metric": metric,
                "windows": rows,
                "test_split_estimate": ref_estimate,
                "test_split_actual": ref_actual,
                "assumptions": (
                    "CBPE (confidence-based performance estimation): the metric expected if each "
                    "row's class follows the model's probabilities after isotonic calibration on "
                    "the test split (binary; multiclass as predicted). It holds under covariate "
                    "shift alone; label shift or concept drift make it optimistic, so it is shown, "
                    "never alarmed on."
                ),
            },
            tests=False,
        )

    # ------------------------------------------------------------------ data quality

    def data_quality(self) -> Section:
        title = "Data quality"
        frame = self.observed.frame
        missing_columns = [n for n in self.names if n not in frame.columns]
        rows: list[dict[str, Any]] = []
        p_values: list[float] = []
        for feature in self.bundle.features:
            name = feature["name"]
            if name in missing_columns:
                continue
            for problem, cur, ref in self._quality_shares(feature, frame):
                _, _, p = _welch_greater(cur, ref)
                rows.append(
                    {
                        "feature": name,
                        "problem": problem,
                        "test_split": float(ref.mean()),
                        "current": float(cur.mean()),
                    }
                )
                p_values.append(p)
        for row, p, r in zip(rows, p_values, holm(p_values, self.alpha), strict=True):
            row["p_value"] = p
            row["alarm"] = bool(
                r and row["current"] - row["test_split"] >= self.settings.min_quality_share
            )
        alarms = [r for r in rows if r["alarm"]]
        problems = [f"columns gone: {', '.join(missing_columns)}"] if missing_columns else []
        problems += [
            f"{r['feature']}: {r['problem']} {r['test_split']:.1%} -> {r['current']:.1%}"
            for r in alarms
        ]
        summary = (
            "; ".join(problems)
            or "no missing columns, new categories, out-of-range or newly missing values"
        )
        extra = [c for c in frame.columns if c not in self.names and c != self.target]
        return Section(
            "data_quality",
            title,
            bool(problems),
            summary,
            {
                "missing_columns": missing_columns,
                "extra_columns": extra,
                "checks": sorted(rows, key=lambda r: r["p_value"])[:30],
            },
        )

    def _quality_shares(
        self, feature: dict, frame: pd.DataFrame
    ) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(problem, per-row 0/1 of the observed rows, of the test split's) per check."""
        name = feature["name"]
        cur, ref = frame[name], self.reference[name]
        checks = [("missing", cur.isna().to_numpy(float), ref.isna().to_numpy(float))]
        if feature.get("type") == "numeric" and feature.get("min") is not None:
            low, high = float(feature["min"]), float(feature["max"])

            def outside(column: pd.Series) -> np.ndarray:
                values = pd.to_numeric(column, errors="coerce").to_numpy(float)
                return ((values < low) | (values > high)).astype(float)

            checks.append(("out of the training range", outside(cur), outside(ref)))
            checks.append(
                (
                    "not a number",
                    (pd.to_numeric(cur, errors="coerce").isna() & cur.notna()).to_numpy(float),
                    (pd.to_numeric(ref, errors="coerce").isna() & ref.notna()).to_numpy(float),
                )
            )
        elif feature.get("categories"):
            known = {str(c) for c in feature["categories"]}

            def unseen(column: pd.Series) -> np.ndarray:
                return (column.notna() & ~column.astype(str).isin(known)).to_numpy(float)

            checks.append(("new categories", unseen(cur), unseen(ref)))
        return checks

    # ------------------------------------------------------------------ fairness

    def fairness(self) -> Section:
        from ..fairness import fairness_report

        title = "Fairness"
        attributes = self.config.fairness.sensitive_attributes
        report = fairness_report(
            self.observed.frame,
            self.cur,
            attributes,
            self.task,
            labelled=self.observed.labelled,
        )
        return Section("fairness", title, False, report["summary"], report, tests=False)

    # ------------------------------------------------------------------ recommendation

    def recommendation(self, sections: list[Section]) -> Section:
        title = "Recommendation"
        found = [s for s in sections if s.found]
        if not found:
            return Section(
                "recommendation", title, False, "nothing to act on: keep the champion", tests=False
            )
        if not self.observed.labelled:
            return Section(
                "recommendation",
                title,
                False,
                "collect outcomes (POST /feedback) or a labelled file: a retrain needs labels, "
                "and its backtest needs a labelled latest window",
                tests=False,
            )
        from .retrain_backtest import backtest

        result, data = backtest(self, sections)
        files = {} if data is None else {RETRAIN_FILE: data}
        return Section(
            "recommendation", title, False, result["summary"], result, tests=False, files=files
        )


# Metrics estimated from probabilities alone (CBPE), by metric name.
def _cbpe_accuracy(proba: np.ndarray) -> float:
    return float(proba.max(axis=1).mean())


def _cbpe_auc(proba: np.ndarray) -> float:
    """Expected ROC AUC when each row is positive with its probability: the weighted share of
    (positive, negative) pairs the score orders rightly (ties count one half)."""
    p = proba[:, 1]
    order = np.argsort(p, kind="stable")
    s, w = p[order], p[order]
    negatives_below = np.cumsum(1 - w) - (1 - w)
    # Pairs of equal scores count one half.
    _, starts, counts = np.unique(s, return_index=True, return_counts=True)
    tie_negatives = np.repeat(np.add.reduceat(1 - w, starts), counts)
    below = np.repeat(negatives_below[starts], counts)
    pairs = (w * (below + 0.5 * tie_negatives - 0.5 * (1 - w))).sum()
    total = w.sum() * (1 - w).sum() - (w * (1 - w)).sum()
    return float(pairs / total) if total > 0 else math.nan


def _cbpe_log_loss(proba: np.ndarray) -> float:
    return float(-(proba * np.log(np.clip(proba, 1e-12, 1))).sum(axis=1).mean())


def _cbpe_f1(proba: np.ndarray) -> float:
    said = proba.argmax(axis=1) == 1
    tp, fp, fn = proba[said, 1].sum(), proba[said, 0].sum(), proba[~said, 1].sum()
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn > 0 else math.nan


ESTIMATORS = {
    "accuracy": _cbpe_accuracy,
    "roc_auc": _cbpe_auc,
    "log_loss": _cbpe_log_loss,
    "f1": _cbpe_f1,
}


def _subset(p: Prediction, rows: Any) -> Prediction:
    if isinstance(rows, slice) and rows == slice(None):
        return p
    return Prediction(
        p.y_true[rows],
        p.predicted[rows],
        None if p.proba is None else p.proba[rows],
        p.classes,
    )


def _welch_greater(current: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(mean of current - mean of reference, its standard error, one-sided p of "greater")."""
    current, reference = np.asarray(current, float), np.asarray(reference, float)
    difference = float(current.mean() - reference.mean())
    variance = (current.var(ddof=1) / len(current) if len(current) > 1 else 0.0) + (
        reference.var(ddof=1) / len(reference) if len(reference) > 1 else 0.0
    )
    se = math.sqrt(variance)
    if se == 0:
        return difference, 0.0, 0.0 if difference > 0 else 1.0
    return difference, se, float(stats.norm.sf(difference / se))


def _as_text(values: np.ndarray, kind: str) -> Any:
    if kind == "numeric":
        return np.asarray(values, dtype=float)
    return [str(v) for v in values.tolist()]
