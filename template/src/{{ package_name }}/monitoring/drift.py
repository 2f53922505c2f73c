"""*Drift* is a change in the distribution of the model's inputs since training.

The training split is summarised once into a *reference profile* (:func:`build_reference`, a
JSON-serialisable dict stored in the model bundle). A batch of current data is compared with it
offline (:func:`compare`), and live requests are compared continuously over a window of recent
rows (:class:`OnlineDrift`). Both paths score a feature with the same code, so they agree.

Measures are effect sizes, not p-values (at large n every p-value is tiny):

* numeric features: the Wasserstein distance between a seeded sample of reference values and
  the current values, divided by the reference standard deviation (Evidently's normalisation;
  a pure mean shift of 0.25 sigma scores 0.25). The population stability index over reference
  deciles is reported alongside, never used for alerting.
* categorical and boolean features: the Jensen-Shannon distance (base 2, in [0, 1]) between
  category frequencies, with one bucket for values unseen at training and one for missing.
* datetime and text features are recorded as skipped.

When does a score alert? A fixed threshold is wrong at both ends: on a window of 500 rows the
sampling noise alone reaches 0.1 for some features, while at a million rows a negligible change
is "significant". So a feature alerts when its score exceeds **both**

1. the configured threshold (``numeric_threshold`` / ``categorical_threshold``): the smallest
   change worth a page, which governs large batches; and
2. the score that sampling noise alone would reach at this number of rows: ``build_reference``
   simulates the score under "no drift" with a two-sample bootstrap from the reference values
   (a window of n rows and a reference of the stored size, both resampled) at a grid of window
   sizes and stores a fitted distribution: log-normal for the Wasserstein distance (its tail
   is heavier than a gamma's: one extreme value moves a small window), gamma for the squared
   Jensen-Shannon distance (close to a scaled chi-square). ``compare`` takes its
   ``1 - alpha / k`` quantile,
   where k is the number of monitored features (Bonferroni), so a check of all features raises
   a false alarm with probability about ``alpha`` (default 1%). Between grid sizes the
   threshold is interpolated in log-log space; beyond the largest size the largest size's
   threshold is kept (noise only shrinks as n grows, so this errs towards silence).

The default floors are 0.1 (numeric: a 0.25 sigma mean shift scores 0.25) and 0.05
(categorical): one category's share moving from 20% to 27% scores about 0.068, so Evidently's
0.1 would never page for it however large the batch (benchmarks/drift.py measures both).

A rise in a feature's missing rate alerts on its own when it exceeds ``missing_threshold``
(absolute) and the binomial noise of the reference rate at this n.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

PROFILE_VERSION = 1
OTHER = "__other__"
MISSING = "__missing__"
# Categorical features without a category list keep their most frequent values; the rest share
# the "other" bucket, so a high-cardinality id-like column cannot blow up the profile.
MAX_CATEGORIES = 50
PSI_BINS = 10
# Window sizes at which the no-drift score distribution is simulated, and how many times.
NULL_SIZES = (50, 100, 200, 500, 1000, 2000, 5000, 10000)
NULL_REPLICATES = 200
# Categorical nulls are cheap multinomial draws: more of them pin the fitted tail down (at 200,
# the 0.1% tail of a 1,000-row window was exceeded 0.02%-0.35% of the time, by seed).
CATEGORICAL_NULL_REPLICATES = 2000
# Keeps PSI finite when a bin is empty on one side.
PSI_EPSILON = 1e-4
NUMERIC = "numeric"
CATEGORICAL = "categorical"
SKIPPED = "skipped"
MEASURES = {NUMERIC: "wasserstein", CATEGORICAL: "jensen_shannon"}


@dataclass
class FeatureDrift:
    """How far one feature's current values are from its reference."""

    name: str
    kind: str
    measure: str
    score: float | None
    threshold: float
    psi: float | None
    missing_rate_reference: float
    missing_rate_current: float
    n: int
    drifted: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class DriftReport:
    """The drift of every monitored feature of one batch (or window) against the reference."""

    features: list[FeatureDrift]
    n_rows: int
    alpha: float
    skipped: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return any(f.drifted for f in self.features)

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "n_rows": self.n_rows,
            "alpha": self.alpha,
            "skipped": list(self.skipped),
            "features": [asdict(f) for f in self.features],
        }


# --------------------------------------------------------------------------- reference


def build_reference(
    df: pd.DataFrame,
    features: list[dict],
    sample_size: int = 5000,
    seed: int = 0,
) -> dict:
    """Summarise the training data's features into a JSON-serialisable drift reference."""
    rng = np.random.default_rng(seed)
    profiles = []
    for feature in features:
        name = feature["name"]
        column = feature_column(df, name)
        kind = _kind(feature.get("type", NUMERIC))
        if kind == NUMERIC:
            profile = _numeric_profile(column, sample_size, rng)
        elif kind == CATEGORICAL:
            profile = _categorical_profile(column, feature, rng)
        else:
            profile = {
                "kind": SKIPPED,
                "reason": f"{feature.get('type')} features are not monitored",
            }
        profiles.append({"name": name, "type": feature.get("type", NUMERIC), **profile})
    return {
        "version": PROFILE_VERSION,
        "n_rows": len(df),
        "seed": seed,
        "sample_size": sample_size,
        "null_sizes": list(NULL_SIZES),
        "features": profiles,
    }


def feature_column(df: pd.DataFrame, name: str) -> pd.Series:
    """The feature's column; all missing when the data lacks it (so its missing rate alerts)."""
    if name in df.columns:
        return df[name]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _kind(feature_type: str) -> str:
    if feature_type == NUMERIC:
        return NUMERIC
    if feature_type in ("categorical", "boolean"):
        return CATEGORICAL
    return SKIPPED


def _numeric_profile(column: pd.Series, sample_size: int, rng: np.random.Generator) -> dict:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    present = values[np.isfinite(values)]
    missing_rate = 1.0 - len(present) / len(values) if len(values) else 0.0
    if len(present) == 0:
        return {"kind": SKIPPED, "reason": "no numeric values in the reference data"}
    sample = np.sort(rng.choice(present, size=min(sample_size, len(present)), replace=False))
    std = float(np.std(present))
    # A constant feature has no spread to normalise by: its distance stays in raw units.
    scale = std if std > 0 else 1.0
    edges = np.unique(np.quantile(present, np.linspace(0, 1, PSI_BINS + 1))[1:-1])
    q1, q3 = np.quantile(present, [0.25, 0.75])
    null = _numeric_null(present, len(sample), scale, rng)
    return {
        "kind": NUMERIC,
        "n": len(present),
        "missing_rate": missing_rate,
        "mean": float(np.mean(present)),
        "std": std,
        "scale": scale,
        "iqr": float(q3 - q1),
        "min": float(present.min()),
        "max": float(present.max()),
        "bin_edges": edges.tolist(),
        "bin_frequencies": _bin_frequencies(present, edges).tolist(),
        "sample": sample.tolist(),
        "null": null,
    }


def _categorical_profile(column: pd.Series, feature: dict, rng: np.random.Generator) -> dict:
    counts = _key_counts(column)
    declared = feature.get("categories")
    if declared:
        categories = list(dict.fromkeys(_key(c) for c in declared))
    else:
        observed = sorted((k for k in counts if k != MISSING), key=lambda k: (-counts[k], k))
        categories = observed[:MAX_CATEGORIES]
    buckets = _bucket_counts(counts, categories)
    total = int(buckets.sum())
    frequencies = buckets / total if total else buckets
    return {
        "kind": CATEGORICAL,
        "n": total,
        "missing_rate": float(frequencies[-1]) if total else 0.0,
        "categories": categories,
        "frequencies": frequencies.tolist(),
        "null": _categorical_null(frequencies, total, rng),
    }


def _numeric_null(
    values: np.ndarray, reference_size: int, scale: float, rng: np.random.Generator
) -> dict:
    """The no-drift distance per window size, as a log-normal (mean and sd of log scores)."""
    references = np.sort(
        rng.choice(values, size=(NULL_REPLICATES, reference_size), replace=True), axis=1
    )
    means, sds = [], []
    for n in NULL_SIZES:
        windows = np.sort(rng.choice(values, size=(NULL_REPLICATES, n), replace=True), axis=1)
        # A constant feature scores exactly 0; the floor keeps the logarithm finite.
        logs = np.log(np.maximum(_wasserstein_sorted(windows, references) / scale, 1e-12))
        means.append(float(logs.mean()))
        sds.append(float(logs.std()))
    return {"family": "lognormal", "mean": means, "sd": sds}


def _categorical_null(frequencies: np.ndarray, total: int, rng: np.random.Generator) -> dict:
    """The no-drift squared distance per window size, as a gamma (its mean and variance).

    The squared Jensen-Shannon distance of two samples from one distribution is close to a
    scaled chi-square, which a gamma matches; a log-normal would overstate its tail.
    """
    means, variances = [], []
    size = CATEGORICAL_NULL_REPLICATES
    references = rng.multinomial(max(total, 1), frequencies, size=size) / max(total, 1)
    for n in NULL_SIZES:
        windows = rng.multinomial(n, frequencies, size=size) / n
        squares = np.nan_to_num(jensenshannon(windows, references, base=2, axis=1)) ** 2
        means.append(float(squares.mean()))
        variances.append(float(squares.var()))
    return {"family": "gamma_squared", "mean": means, "var": variances}


def _wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise 1-Wasserstein distance between sorted samples ``a`` (r x n) and ``b`` (r x m).

    In one dimension it is the area between the quantile functions. Both are step functions
    with breaks at multiples of 1/n and 1/m, the same for every row, so one set of interval
    indices serves the whole batch.
    """
    n, m = a.shape[1], b.shape[1]
    breaks = np.unique(np.concatenate([np.arange(1, n + 1) / n, np.arange(1, m + 1) / m]))
    widths = np.diff(breaks, prepend=0.0)
    middles = breaks - widths / 2
    ia = np.minimum((middles * n).astype(int), n - 1)
    ib = np.minimum((middles * m).astype(int), m - 1)
    return np.abs(a[:, ia] - b[:, ib]) @ widths


# --------------------------------------------------------------------------- keys and counts


def _key(value: Any) -> str:
    """The bucket name of a categorical value, the same for CSV, Parquet and JSON inputs."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower()
    return str(value)


def _key_counts(column: pd.Series) -> dict[str, int]:
    """Counts per bucket name; counts distinct values first so large batches stay fast."""
    counts: dict[str, int] = {}
    for value, count in column.value_counts(dropna=False).items():
        key = _key(value)
        counts[key] = counts.get(key, 0) + int(count)
    return counts


def _bucket_counts(counts: Mapping[str, int], categories: list[str]) -> np.ndarray:
    """Counts in the profile's bucket order: categories..., other, missing."""
    index = {c: i for i, c in enumerate(categories)}
    buckets = np.zeros(len(categories) + 2, dtype=float)
    for key, count in counts.items():
        if key == MISSING:
            buckets[-1] += count
        else:
            buckets[index.get(key, len(categories))] += count
    return buckets


def category_counts(profile: dict, column: pd.Series) -> np.ndarray:
    """A column's counts in a categorical profile's buckets: categories..., unseen, missing."""
    return _bucket_counts(_key_counts(column), profile["categories"])


def _bin_frequencies(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    ref = np.clip(np.asarray(reference, dtype=float), PSI_EPSILON, None)
    cur = np.clip(np.asarray(current, dtype=float), PSI_EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class _Limits:
    numeric: float
    categorical: float
    psi: float
    missing: float
    alpha: float


def _null_levels(null: dict, quantile: float) -> np.ndarray:
    """The ``quantile`` of the no-drift score at each simulated window size."""
    mean = np.asarray(null["mean"], dtype=float)
    if null["family"] == "lognormal":
        return np.exp(mean + stats.norm.ppf(quantile) * np.asarray(null["sd"], dtype=float))
    var = np.asarray(null["var"], dtype=float)
    # Every simulated score was 0 (one category only): noise cannot move this feature.
    if not np.all((mean > 0) & (var > 0)):
        return np.full_like(mean, 1e-12)
    return np.sqrt(stats.gamma.ppf(quantile, mean**2 / var, scale=var / mean))


def _null_threshold(profile: dict, reference: dict, n: int, quantile: float) -> float:
    """The score sampling noise alone exceeds with probability 1 - quantile at n rows."""
    sizes = np.asarray(reference["null_sizes"], dtype=float)
    levels = np.maximum(_null_levels(profile["null"], quantile), 1e-12)
    # Noise shrinks like 1/sqrt(n): extrapolate below the grid, hold the last value above it.
    if n <= sizes[0]:
        return float(levels[0] * math.sqrt(sizes[0] / max(n, 1)))
    if n >= sizes[-1]:
        return float(levels[-1])
    return float(np.exp(np.interp(math.log(n), np.log(sizes), np.log(levels))))


def _missing_noise(reference_rate: float, n: int, quantile: float) -> float:
    if n == 0 or reference_rate <= 0:
        return 0.0
    return float(stats.binom.ppf(quantile, n, reference_rate) / n - reference_rate)


def _numeric_measures(profile: dict, values: np.ndarray) -> tuple[int, int, Any, Any, float]:
    """(rows, rows scored, score, psi, missing rate) of numeric values with NaN for missing."""
    present = values[np.isfinite(values)]
    n = len(values)
    if len(present) == 0:
        return n, 0, None, None, 1.0 if n else 0.0
    score = float(stats.wasserstein_distance(profile["sample"], present) / profile["scale"])
    psi = _psi(profile["bin_frequencies"], _bin_frequencies(present, profile["bin_edges"]))
    return n, len(present), score, psi, 1.0 - len(present) / n


def _categorical_measures(profile: dict, counts: np.ndarray) -> tuple[int, int, Any, Any, float]:
    """The same for bucket counts; missing is a bucket here, so every row is scored."""
    n = int(counts.sum())
    if n == 0:
        return 0, 0, None, None, 0.0
    current = counts / n
    score = float(jensenshannon(profile["frequencies"], current, base=2))
    return n, n, score, _psi(profile["frequencies"], current), float(current[-1])


def _score_feature(
    profile: dict, reference: dict, values: np.ndarray, limits: _Limits, quantile: float
) -> FeatureDrift:
    """Score one feature. ``values``: numeric values with NaN for missing, or bucket counts."""
    kind = profile["kind"]
    if kind == NUMERIC:
        n, n_scored, score, psi, missing = _numeric_measures(profile, values)
        floor = limits.numeric
    else:
        n, n_scored, score, psi, missing = _categorical_measures(profile, values)
        floor = limits.categorical
    threshold = max(floor, _null_threshold(profile, reference, n_scored, quantile))
    reasons = []
    if score is not None and score > threshold:
        reasons.append(f"{MEASURES[kind]} {score:.3f} > {threshold:.3f}")
    reference_missing = profile["missing_rate"]
    missing_limit = max(limits.missing, _missing_noise(reference_missing, n, quantile))
    if n and missing - reference_missing > missing_limit:
        reasons.append(f"missing rate {reference_missing:.1%} -> {missing:.1%}")
    if reasons and psi is not None and psi > limits.psi:
        # Context for the reader only: PSI never raises an alert by itself.
        reasons.append(f"psi {psi:.3f} > {limits.psi:.3f}")
    return FeatureDrift(
        name=profile["name"],
        kind=kind,
        measure=MEASURES[kind],
        score=score,
        threshold=threshold,
        psi=psi,
        missing_rate_reference=reference_missing,
        missing_rate_current=missing,
        n=n,
        drifted=bool(reasons),
        reasons=reasons,
    )


def _monitored(reference: dict) -> list[dict]:
    if reference.get("version") != PROFILE_VERSION:
        raise ValueError(
            f"Drift reference has version {reference.get('version')!r}, this code reads "
            f"version {PROFILE_VERSION}. Retrain (`make train`) to rebuild the reference profile."
        )
    return [p for p in reference["features"] if p["kind"] != SKIPPED]


def _report(
    reference: dict, columns: Iterable[tuple[dict, np.ndarray]], n_rows: int, limits: _Limits
) -> DriftReport:
    monitored = _monitored(reference)
    quantile = 1.0 - limits.alpha / max(len(monitored), 1)
    return DriftReport(
        features=[_score_feature(p, reference, v, limits, quantile) for p, v in columns],
        n_rows=n_rows,
        alpha=limits.alpha,
        skipped=[p["name"] for p in reference["features"] if p["kind"] == SKIPPED],
    )


def compare(
    reference: dict,
    current: pd.DataFrame,
    numeric_threshold: float = 0.1,
    categorical_threshold: float = 0.05,
    psi_threshold: float = 0.2,
    missing_threshold: float = 0.05,
    alpha: float = 0.01,
) -> DriftReport:
    """Compare a batch with the reference profile (thresholds: see the module docstring).

    A PSI above ``psi_threshold`` is named in the ``reasons`` of a drifted feature, for the
    reader; it never raises an alert by itself.
    """
    limits = _Limits(
        numeric_threshold, categorical_threshold, psi_threshold, missing_threshold, alpha
    )
    columns = []
    for profile in _monitored(reference):
        name = profile["name"]
        column = feature_column(current, name)
        if profile["kind"] == NUMERIC:
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        else:
            values = category_counts(profile, column)
        columns.append((profile, values))
    return _report(reference, columns, len(current), limits)


class OnlineDrift:
    """Drift of the last ``window`` request rows, for the Prometheus gauges.

    ``observe`` is called on every request: it only writes each feature's value into a
    fixed-size ring buffer (a float for numeric features, a bucket index for categorical
    ones), O(features) per row. ``scores`` runs the same scoring as :func:`compare` on the
    buffer, once per batch of new observations (cached), and only when ``min_rows`` rows
    have been seen. All methods are thread-safe.
    """

    def __init__(
        self,
        reference: dict,
        window: int = 1000,
        min_rows: int = 50,
        numeric_threshold: float = 0.1,
        categorical_threshold: float = 0.05,
        psi_threshold: float = 0.2,
        missing_threshold: float = 0.05,
        alpha: float = 0.01,
    ) -> None:
        if window < 1 or min_rows < 1:
            raise ValueError(f"window ({window}) and min_rows ({min_rows}) must be positive.")
        self.reference = reference
        self.window = window
        self.min_rows = min_rows
        self._limits = _Limits(
            numeric_threshold, categorical_threshold, psi_threshold, missing_threshold, alpha
        )
        self._profiles = _monitored(reference)
        self._index = [
            {c: i for i, c in enumerate(p["categories"])} if p["kind"] == CATEGORICAL else None
            for p in self._profiles
        ]
        self._buffers = [
            np.full(window, np.nan) if p["kind"] == NUMERIC else np.zeros(window, dtype=np.int64)
            for p in self._profiles
        ]
        self._lock = threading.Lock()
        self._position = 0
        self._seen = 0
        self._cached: DriftReport | None = None

    @property
    def rows(self) -> int:
        """How many rows the window holds (at most ``window``)."""
        return min(self._seen, self.window)

    def observe(self, records: list[dict]) -> None:
        """Add request rows (dicts of raw feature values; missing keys count as missing)."""
        with self._lock:
            for record in records:
                slot = self._position
                for profile, index, buffer in zip(
                    self._profiles, self._index, self._buffers, strict=True
                ):
                    value = record.get(profile["name"])
                    if index is None:
                        buffer[slot] = _as_float(value)
                    else:
                        key = _key(value)
                        buffer[slot] = (
                            len(index) + 1 if key == MISSING else index.get(key, len(index))
                        )
                self._position = (slot + 1) % self.window
                self._seen += 1
            if records:
                self._cached = None

    def report(self) -> DriftReport | None:
        """The full drift report of the window, or None before ``min_rows`` rows."""
        with self._lock:
            rows = self.rows
            if rows < self.min_rows:
                return None
            if self._cached is None:
                columns = [
                    (
                        profile,
                        buffer[:rows]
                        if profile["kind"] == NUMERIC
                        else np.bincount(buffer[:rows], minlength=len(index) + 2).astype(float),
                    )
                    for profile, index, buffer in zip(
                        self._profiles, self._index, self._buffers, strict=True
                    )
                ]
                self._cached = _report(self.reference, columns, rows, self._limits)
            return self._cached

    def scores(self) -> dict[str, dict]:
        """feature -> {"measure", "score", "alert", "n"}; empty before ``min_rows`` rows."""
        report = self.report()
        if report is None:
            return {}
        return {
            f.name: {"measure": f.measure, "score": f.score, "alert": f.drifted, "n": f.n}
            for f in report.features
        }


def _as_float(value: Any) -> float:
    """A request value as a float; anything that is not a number counts as missing."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
