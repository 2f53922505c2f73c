"""*Drift* is a change in the distribution of the model's inputs since training.

The training split is summarised once into a *reference profile* (:func:`build_reference`, a
JSON-serialisable dict stored in the model bundle). A batch of current data is compared with it
offline (:func:`compare`), and live requests are compared continuously over a window of recent rows
(:class:`OnlineDrift`). Both paths score a feature with the same code, so they agree.

Each feature gets a *score*, an effect size (exported as the ``model_feature_drift`` gauge), and
alerts when the change is both large enough to matter (the score is above a configured floor) and
more than sampling noise at this number of rows (a test at level ``alpha / k``, k being the number
of monitored features: Bonferroni, so one check of all features raises a false alarm with
probability at most about ``alpha``, default 1%). At large n every test is significant and the
floor decides; at small n the test does.

Numeric features. Score: the Wasserstein distance between a quantile sketch of the reference (5,000
values) and the current values, divided by the reference standard deviation (Evidently's
normalisation: a 0.25 sigma mean shift scores 0.25). Values are first clipped to the reference's
0.1%-99.9% quantile range widened by half its width on each side: a single data error (diamonds has
a y of 58.9 mm among values of 4-9 mm) otherwise moved a 500-row window's distance by 0.09 and
paged; a 30% change of spread stays inside the range. Noise: ``build_reference`` simulates the
distance under "no drift" with a two-sample bootstrap (a window of n rows and a sketch of a
resampled reference, 400 times) at a grid of window sizes and stores a log-normal fit per size
(checked on diamonds, 5,000 held-out windows of 500 and of 1,000 rows per feature: its 99.9%
quantile was exceeded 0%-0.16% of the time). Between grid sizes the threshold is interpolated in
log-log space; beyond the largest size it is held (errs towards silence). The population stability
index over reference deciles is reported alongside, never alerting.

Categorical and boolean features (buckets: the categories, one for values unseen at training, one
for missing). Score: the Jensen-Shannon distance (base 2, in [0, 1]) of the bucket shares. Noise:
per bucket, Fisher's exact test of the 2x2 table (this bucket or not; reference or current),
two-sided, Bonferroni over the buckets that hold rows; ``p_value`` is the smallest. Why this and
not a test on the Jensen-Shannon distance: drift in a categorical input is often one category
growing (a new campaign, a source switching), and for that the best single-bucket test is the
stronger one. Simulated at this budget (alpha 0.001 per feature) on diamonds' cut, color and
clarity, a share moving 20% -> 27% at 1,000 rows is found 88-92% of the time by this test, 72-85%
by the Jensen-Shannon test; the exact test needs no simulated null (the fitted Jensen-Shannon tail
was exceeded up to 2.7x too often) and is valid at any n. 95% is reached at about 1,300 rows
(benchmarks/drift.py); at 1,000 rows even a test told in advance which category moves would reach
only ~96% (normal approximation), so no test of unknown categories reaches 95% there without taking
false-alarm budget from the other features, which this module does not do (a weighting chosen to
win one benchmark would not be a rule).

The default floors are 0.1 (numeric) and 0.05 (categorical): the 20% -> 27% move scores about
0.068, so Evidently's 0.1 would never page for it however large the batch.

A rise in a feature's missing rate alerts on its own when it exceeds ``missing_threshold``
(absolute) and the binomial noise of the reference rate at this n. Datetime and text features are
recorded as skipped.

The columns a service's feature transforms add (``transforms.py``) are monitored like raw
features: the reference keeps the fitted transforms (``transforms``), and every comparison
computes those columns from the raw values it is given, with the same code the model ran.
"""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

PROFILE_VERSION = 2
OTHER = "__other__"
MISSING = "__missing__"
# The words training reads as booleans. features.py imports them from here, so that training
# and monitoring cannot disagree, while this module still loads on its own (numpy, pandas and
# scipy only; benchmarks/drift.py loads it from its file).
TRUE_WORDS = frozenset({"true", "yes", "y", "t", "1"})
FALSE_WORDS = frozenset({"false", "no", "n", "f", "0"})
# Categorical features without a category list keep their most frequent values; the rest share
# the "other" bucket, so a high-cardinality id-like column cannot blow up the profile.
MAX_CATEGORIES = 50
PSI_BINS = 10
# Numeric values are clipped to the reference's 0.1%-99.9% quantile range, widened by half
# its width on each side, before they are scored: one gross outlier (a data error) cannot page,
# a real change of spread is left whole. See the module docstring.
CLIP_SHARE = 0.001
CLIP_MARGIN = 0.5
# How many distinct request strings OnlineDrift remembers the bucket of per feature; the cap
# keeps random ids sent as a category from growing memory without bound.
MAX_REMEMBERED_VALUES = 10_000
# Window sizes at which the no-drift score distribution is simulated, and how many times.
NULL_SIZES = (50, 100, 200, 500, 1000, 2000, 5000, 10000)
NULL_REPLICATES = 400
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
    # Categorical features: the share test's p-value (Bonferroni over buckets); else None.
    p_value: float | None = None


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
    transforms: dict | None = None,
) -> dict:
    """Summarise the training data's features into a JSON-serialisable drift reference.

    ``transforms`` (``FeatureTransforms.fitted_spec()``) adds its columns to ``df``; list them
    in ``features`` to monitor them.
    """
    df = with_derived({"transforms": transforms}, df)
    rng = np.random.default_rng(seed)
    profiles = []
    for feature in features:
        name = feature["name"]
        column = feature_column(df, name)
        kind = _kind(feature.get("type", NUMERIC))
        if kind == NUMERIC:
            profile = _numeric_profile(column, sample_size, rng)
        elif kind == CATEGORICAL:
            profile = _categorical_profile(column, feature)
        else:
            profile = {
                "kind": SKIPPED,
                "reason": f"{feature.get('type')} features are not monitored",
            }
        profiles.append({"name": name, "type": feature.get("type", NUMERIC), **profile})
    reference = {
        "version": PROFILE_VERSION,
        "n_rows": len(df),
        "seed": seed,
        "sample_size": sample_size,
        "null_sizes": list(NULL_SIZES),
        "features": profiles,
    }
    if transforms:
        reference["transforms"] = transforms
    return reference


def _transforms(reference: Mapping[str, Any]) -> Any:
    """The reference's fitted feature transforms (``transforms.Fitted``), or None."""
    fitted = reference.get("transforms")
    if not fitted:
        return None
    # Imported here: references without transforms (and benchmarks/drift.py, which loads this
    # file on its own) never need it.
    from ..transforms import compile_fitted

    return compile_fitted(fitted)


def with_derived(reference: Mapping[str, Any], df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (raw feature columns) with the columns of the reference's transforms added."""
    compiled = _transforms(reference)
    if compiled is None:
        return df
    added = pd.DataFrame(compiled.columns(df, len(df)), index=df.index)
    return pd.concat([df.drop(columns=[c for c in added.columns if c in df.columns]), added],
                     axis=1)


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
    present = np.sort(values[np.isfinite(values)])
    missing_rate = 1.0 - len(present) / len(values) if len(values) else 0.0
    if len(present) == 0:
        return {"kind": SKIPPED, "reason": "no numeric values in the reference data"}
    low, high = np.quantile(present, [CLIP_SHARE, 1.0 - CLIP_SHARE])
    clip = np.array([low - CLIP_MARGIN * (high - low), high + CLIP_MARGIN * (high - low)])
    clipped = np.clip(present, *clip)
    sample = clipped[_sketch_positions(len(clipped), sample_size)]
    std = float(np.std(present))
    # A constant feature has no spread to normalise by: its distance stays in raw units.
    scale = std if std > 0 else 1.0
    edges = np.unique(np.quantile(present, np.linspace(0, 1, PSI_BINS + 1))[1:-1])
    q1, q3 = np.quantile(present, [0.25, 0.75])
    null = _numeric_null(clipped, len(sample), scale, rng)
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
        "clip": clip.tolist(),
        "sample": sample.tolist(),
        "null": null,
    }


def _categorical_profile(column: pd.Series, feature: dict) -> dict:
    key = _key_function(feature)
    counts = _key_counts(column, key)
    declared = feature.get("categories")
    if declared:
        categories = list(dict.fromkeys(key(c) for c in declared))
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
        "counts": buckets.astype(int).tolist(),
    }


def _sketch_positions(count: int, size: int) -> np.ndarray:
    """Which of ``count`` sorted values make the reference sample: the middles of ``size``
    equal-probability slices (all values when there are fewer).

    A quantile sketch of the whole reference, not a random subsample: a random 5,000 of 27,000
    rows added its own noise to every later distance, and the false alarm rate of one
    reference ranged 0.2%-2.9% across the benchmark's splits (0.0%-1.8% with the sketch).
    """
    if count <= size:
        return np.arange(count)
    return ((np.arange(size) + 0.5) * count / size).astype(np.int64)


def _numeric_null(
    values: np.ndarray, sample_size: int, scale: float, rng: np.random.Generator
) -> dict:
    """The no-drift distance per window size, as a log-normal (mean and sd of log scores).

    ``values`` are the sorted reference values; each replicate compares a resampled window
    with the sketch of a resampled reference, as ``compare`` does with the real ones.
    """
    references = _resampled_sketches(values, len(values), sample_size, rng)
    means, sds = [], []
    for n in NULL_SIZES:
        windows = _resampled_sketches(values, n, n, rng)
        # A constant feature scores exactly 0; the floor keeps the logarithm finite.
        logs = np.log(np.maximum(_wasserstein_sorted(windows, references) / scale, 1e-12))
        means.append(float(logs.mean()))
        sds.append(float(logs.std()))
    return {"family": "lognormal", "mean": means, "sd": sds}


def _resampled_sketches(
    values: np.ndarray, draws: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``NULL_REPLICATES`` bootstrap samples of ``draws`` sorted ``values``, each sketched
    to ``size`` values as :func:`_sketch_positions` does: shape (replicates, sketch length).

    Nothing is sorted and nothing of size ``draws`` is drawn: the chosen order statistics of
    ``draws`` uniforms are normalised cumulative sums of gamma variables (shape: the gaps
    between the chosen ranks), and read through the values' quantile function they are the
    chosen order statistics of a sample drawn with replacement.
    """
    ranks = _sketch_positions(draws, size) + 1
    gaps = np.diff(ranks, prepend=0, append=draws + 1).astype(float)
    sums = np.cumsum(rng.standard_gamma(gaps, size=(NULL_REPLICATES, len(gaps))), axis=1)
    positions = (sums[:, :-1] / sums[:, -1:] * len(values)).astype(np.int64)
    return values[np.minimum(positions, len(values) - 1)]


def _wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance between sorted samples ``a`` and ``b``, as scipy computes it.

    The area between the empirical CDFs, summed over the gaps of the merged sample; merging
    two sorted samples is linear, where ``scipy.stats.wasserstein_distance`` sorts both again
    (at a million rows its sorts were ~80% of ``compare``).
    """
    at = np.searchsorted(a, b, side="right")
    merged = np.insert(a, at, b)
    from_b = np.zeros(len(merged), dtype=bool)
    from_b[at + np.arange(len(b))] = True  # b[k] lands after the k values of b before it
    b_below = np.cumsum(from_b)[:-1]
    a_below = np.arange(1, len(merged)) - b_below
    # A product and a sum, not `@`: a vector dot through OpenBLAS took milliseconds here when
    # its threads competed with other processes.
    return float(np.sum(np.abs(a_below / len(a) - b_below / len(b)) * np.diff(merged)))


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


def _boolean_key(value: Any) -> str:
    """The bucket name of a boolean feature's value: ``true`` or ``false`` for JSON booleans
    and for the words training reads as booleans (Yes/No, 1/0, ...), so that a service fed
    ``true`` is compared with training data that said ``Yes``. Other words keep their name
    (an unseen value)."""
    key = _key(value)
    word = key.strip().lower()
    return "true" if word in TRUE_WORDS else "false" if word in FALSE_WORDS else key


def _key_function(profile: Mapping[str, Any]) -> Callable[[Any], str]:
    """How a feature's (or its profile's) raw values are named as buckets."""
    return _boolean_key if profile.get("type") == "boolean" else _key


def _key_counts(column: pd.Series, key: Callable[[Any], str] = _key) -> dict[str, int]:
    """Counts per bucket name; counts distinct values first so large batches stay fast."""
    counts: dict[str, int] = {}
    for value, count in column.value_counts(dropna=False).items():
        name = key(value)
        counts[name] = counts.get(name, 0) + int(count)
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
    return _bucket_counts(_key_counts(column, _key_function(profile)), profile["categories"])


def _bin_frequencies(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Shares of sorted ``values`` per bin: below the first edge, between edges, from the last.

    A value equal to an edge counts in the bin above it.
    """
    cuts = np.searchsorted(values, edges, side="left")
    counts = np.diff(np.concatenate([[0], cuts, [len(values)]]))
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


def _null_threshold(profile: dict, reference: dict, n: int, quantile: float) -> float:
    """The score sampling noise alone exceeds with probability 1 - quantile at n rows."""
    sizes = np.asarray(reference["null_sizes"], dtype=float)
    null = profile["null"]
    z = stats.norm.ppf(quantile)
    levels = np.maximum(np.exp(np.asarray(null["mean"]) + z * np.asarray(null["sd"])), 1e-12)
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


@dataclass(frozen=True)
class _Measured:
    """One feature's measures against its reference, before the missing-rate check."""

    n: int
    score: float | None
    threshold: float
    psi: float | None
    missing_rate: float
    reason: str | None = None
    p_value: float | None = None


def _numeric_measured(
    profile: dict, reference: dict, values: np.ndarray, limits: _Limits, quantile: float
) -> _Measured:
    """Measures of numeric values (NaN for missing): Wasserstein against the bootstrap null."""
    n = len(values)
    present = np.sort(np.clip(values[np.isfinite(values)], *profile["clip"]))
    if len(present) == 0:
        return _Measured(n, None, limits.numeric, None, 1.0 if n else 0.0)
    sample = np.asarray(profile["sample"], dtype=float)
    score = _wasserstein_1d(present, sample) / profile["scale"]
    psi = _psi(profile["bin_frequencies"], _bin_frequencies(present, profile["bin_edges"]))
    threshold = max(limits.numeric, _null_threshold(profile, reference, len(present), quantile))
    reason = f"wasserstein {score:.3f} > {threshold:.3f}" if score > threshold else None
    return _Measured(n, score, threshold, psi, 1.0 - len(present) / n, reason)


def _categorical_measured(
    profile: dict, counts: np.ndarray, limits: _Limits, alpha: float
) -> _Measured:
    """Measures of bucket counts: Jensen-Shannon above the floor and a significant share.

    Missing is a bucket here, so every row is scored.
    """
    n = int(counts.sum())
    if n == 0:
        return _Measured(0, None, limits.categorical, None, 0.0)
    current = counts / n
    score = float(jensenshannon(profile["frequencies"], current, base=2))
    p_value, bucket = _share_test(np.asarray(profile["counts"], dtype=float), counts)
    reason = None
    if score > limits.categorical and p_value < alpha:
        names = [*profile["categories"], "(unseen)", "(missing)"]
        reason = (
            f"share of {names[bucket]} {profile['frequencies'][bucket]:.1%} -> "
            f"{current[bucket]:.1%} (p={p_value:.1g}); "
            f"jensen_shannon {score:.3f} > {limits.categorical:.3f}"
        )
    psi = _psi(profile["frequencies"], current)
    return _Measured(n, score, limits.categorical, psi, float(current[-1]), reason, p_value)


def _share_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, int]:
    """(p-value, bucket): did any bucket's share change more than sampling noise explains?

    Per bucket, Fisher's exact test of the 2x2 table (this bucket or not, reference or
    current): given both totals and the bucket's count over both samples, the current count
    is hypergeometric when nothing changed. Two-sided: twice the smaller tail. Bonferroni over
    the buckets that hold any row, so the p-value is the feature's.
    """
    n, m = current.sum(), reference.sum()
    both = current + reference
    lower = stats.hypergeom.cdf(current, n + m, both, n)
    upper = stats.hypergeom.sf(current - 1, n + m, both, n)
    p = np.where(both > 0, np.minimum(1.0, 2.0 * np.minimum(lower, upper)), 1.0)
    bucket = int(np.argmin(p))
    return float(min(1.0, p[bucket] * max(int(np.sum(both > 0)), 1))), bucket


def _score_feature(
    profile: dict, reference: dict, values: np.ndarray, limits: _Limits, quantile: float
) -> FeatureDrift:
    """Score one feature. ``values``: numeric values with NaN for missing, or bucket counts."""
    kind = profile["kind"]
    if kind == NUMERIC:
        measured = _numeric_measured(profile, reference, values, limits, quantile)
    else:
        measured = _categorical_measured(profile, values, limits, 1.0 - quantile)
    n, missing = measured.n, measured.missing_rate
    reasons = [measured.reason] if measured.reason else []
    reference_missing = profile["missing_rate"]
    missing_limit = max(limits.missing, _missing_noise(reference_missing, n, quantile))
    if n and missing - reference_missing > missing_limit:
        reasons.append(f"missing rate {reference_missing:.1%} -> {missing:.1%}")
    if reasons and measured.psi is not None and measured.psi > limits.psi:
        # Context for the reader only: PSI never raises an alert by itself.
        reasons.append(f"psi {measured.psi:.3f} > {limits.psi:.3f}")
    return FeatureDrift(
        name=profile["name"],
        kind=kind,
        measure=MEASURES[kind],
        score=measured.score,
        threshold=measured.threshold,
        psi=measured.psi,
        missing_rate_reference=reference_missing,
        missing_rate_current=missing,
        n=n,
        drifted=bool(reasons),
        reasons=reasons,
        p_value=measured.p_value,
    )


def bucket_drift(
    name: str,
    buckets: Sequence[str],
    reference_counts: Sequence[float] | np.ndarray,
    current_counts: Sequence[float] | np.ndarray,
    threshold: float = 0.05,
    alpha: float = 0.01,
) -> FeatureDrift:
    """Drift of counts over named buckets, scored exactly as a categorical feature is: the
    Jensen-Shannon distance above ``threshold`` and a bucket's share changed beyond sampling
    noise (the exact test at level ``alpha``).

    For a kind's own signals (e.g. the recommendation kind's item-popularity bins).
    ``reference_counts`` and ``current_counts`` hold one count per bucket, then one for
    values unseen in the reference.
    """
    reference = np.asarray(reference_counts, dtype=float)
    current = np.asarray(current_counts, dtype=float)
    if len(reference) != len(buckets) + 1 or len(current) != len(buckets) + 1:
        raise ValueError(
            f"{name}: expected {len(buckets) + 1} counts (the buckets, then unseen), got "
            f"{len(reference)} and {len(current)}"
        )
    # The categorical profile's layout: the buckets, unseen, missing (never, here).
    counts = np.append(reference, 0.0)
    profile = {
        "name": name,
        "kind": CATEGORICAL,
        "categories": list(buckets),
        "counts": counts.tolist(),
        "frequencies": (counts / max(counts.sum(), 1.0)).tolist(),
        "missing_rate": 0.0,
    }
    limits = _Limits(math.inf, threshold, math.inf, math.inf, alpha)
    return _score_feature(profile, {}, np.append(current, 0.0), limits, 1.0 - alpha)


def monitored_profiles(reference: dict) -> list[dict]:
    """The reference's monitored feature profiles, as every comparison reads them."""
    if reference.get("version") != PROFILE_VERSION:
        raise ValueError(
            f"Drift reference has version {reference.get('version')!r}, this code reads "
            f"version {PROFILE_VERSION}. Retrain (`make train`) to rebuild the reference profile."
        )
    monitored = []
    for profile in reference["features"]:
        if profile["kind"] == SKIPPED:
            continue
        if profile.get("type") == "boolean":
            # References built before boolean words were named true/false ("No", "Yes"): the
            # same buckets, in the same order, renamed.
            profile = {**profile, "categories": [_boolean_key(c) for c in profile["categories"]]}
        monitored.append(profile)
    return monitored


def _report(
    reference: dict, columns: Iterable[tuple[dict, np.ndarray]], n_rows: int, limits: _Limits
) -> DriftReport:
    monitored = monitored_profiles(reference)
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
    current = with_derived(reference, current)
    columns = []
    for profile in monitored_profiles(reference):
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

    ``observe`` (rows) or ``observe_columns`` (a sequence per feature) is called on every
    request: it only writes each feature's values into a fixed-size ring buffer (floats for
    numeric features, bucket indices for categorical ones), a few numpy operations per
    feature and batch (1,000 rows x 10 features: ~0.25-0.4 ms). ``scores`` runs the same
    scoring as :func:`compare` on the buffer, once per batch of new observations (cached),
    and only when ``min_rows`` rows have been seen. All methods are thread-safe.
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
        self._profiles = monitored_profiles(reference)
        # Transform columns are computed from the raw columns of each batch.
        self._transforms = _transforms(reference)
        self._names = list(dict.fromkeys(
            [p["name"] for p in self._profiles]
            + ([] if self._transforms is None else self._transforms.inputs)
        ))
        # Per categorical feature: raw request value -> bucket index, grown as values arrive.
        self._codes = [
            _initial_codes(p["categories"]) if p["kind"] == CATEGORICAL else None
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

    def observe(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Add request rows (dicts of raw feature values; missing keys count as missing)."""
        self.observe_columns(
            {name: _column(records, name) for name in self._names}, rows=len(records)
        )

    def observe_columns(
        self, columns: Mapping[str, Sequence | np.ndarray], rows: int | None = None
    ) -> None:
        """Add rows given as one sequence of raw values per feature name.

        All columns must have the same length. A monitored feature absent from ``columns``
        counts as missing in every row; ``rows`` says how many rows that is when no column
        is given (it defaults to the columns' length).
        """
        lengths = {len(values) for values in columns.values()}
        if rows is not None:
            lengths.add(rows)
        if len(lengths) > 1:
            raise ValueError(
                f"Drift columns have different lengths {sorted(lengths)}: pass one value per "
                "row for every feature (None for a missing value)."
            )
        n = lengths.pop() if lengths else 0
        if n == 0:
            return
        if self._transforms is not None:
            columns = {**columns, **self._transforms.columns(columns, n)}
        # Only the last `window` rows can stay in the ring: convert just those.
        kept = min(n, self.window)
        encoded = []
        for profile, codes in zip(self._profiles, self._codes, strict=True):
            values = columns.get(profile["name"])
            if isinstance(values, pd.Series):
                values = values.to_numpy()  # positions, not index labels, from here on
            if values is not None and kept < n:
                values = values[n - kept :]
            if codes is None:
                encoded.append(_floats(values, kept))
            else:
                encoded.append(_bucket_indices(profile, codes, values, kept))
        with self._lock:
            slots = (self._position + n - kept + np.arange(kept)) % self.window
            for buffer, values in zip(self._buffers, encoded, strict=True):
                buffer[slots] = values
            self._position = (self._position + n) % self.window
            self._seen += n
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
                        else np.bincount(
                            buffer[:rows], minlength=len(profile["categories"]) + 2
                        ).astype(float),
                    )
                    for profile, buffer in zip(self._profiles, self._buffers, strict=True)
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


def _column(records: Sequence[Mapping[str, Any]], name: str) -> list:
    """One feature's values across records; None where a record lacks the key."""
    try:
        return list(map(operator.itemgetter(name), records))
    except KeyError:
        return [record.get(name) for record in records]


def _floats(values: Sequence | np.ndarray | None, n: int) -> np.ndarray:
    """Request values as floats, NaN for missing or unusable ones (as :func:`_as_float`)."""
    if values is None:
        return np.full(n, np.nan)
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        # One value numpy cannot convert (a word, a list): convert value by value.
        return np.fromiter(map(_as_float, values), dtype=float, count=n)


def _initial_codes(categories: list[str]) -> dict[Any, int]:
    codes: dict[Any, int] = {c: i for i, c in enumerate(categories)}
    codes[None] = len(categories) + 1
    return codes


def _bucket_indices(
    profile: dict, codes: dict[Any, int], values: Sequence | np.ndarray | None, n: int
) -> np.ndarray:
    """Bucket indices of raw categorical values: categories..., unseen, missing.

    ``codes`` remembers the bucket of each string seen, so a typical batch is one dict look-up
    per value. Only strings and None are remembered: a dict cannot tell True from 1 or 1.0
    (equal hashes), whose bucket names differ ("true", "1"); other values go through
    :func:`_key` each time.
    """
    categories = profile["categories"]
    if values is None:
        return np.full(n, len(categories) + 1, dtype=np.int64)
    try:
        found = list(map(codes.get, values))
    except TypeError:  # an unhashable value, such as a list
        found = [None] * n
    try:
        return np.array(found, dtype=np.int64)
    except TypeError:  # None in `found`: a value not remembered yet
        pass
    index = {c: i for i, c in enumerate(categories)}
    key_of = _key_function(profile)
    for i, bucket in enumerate(found):
        if bucket is None:
            value = values[i]
            # Booleans (a JSON boolean feature) are common and cheap to name.
            key = "true" if value is True else "false" if value is False else key_of(value)
            code = len(categories) + 1 if key == MISSING else index.get(key, len(categories))
            found[i] = code
            if isinstance(value, str) and len(codes) < MAX_REMEMBERED_VALUES:
                codes[value] = code
    return np.array(found, dtype=np.int64)
