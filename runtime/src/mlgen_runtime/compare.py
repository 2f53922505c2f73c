"""The *comparison* of a challenger with the champion on ground truth, by a stated test.

Both models are judged on the service's primary metric (``metric.primary``), by the one-sided
test of "the challenger is better" that fits the metric and how the rows were collected:
paired (both models scored every row: a shadow rollout, or the test split at training) or
unpaired (a split rollout: each request saw one model).

- accuracy: exact McNemar test (paired), two-proportion z-test (unpaired);
- log_loss: t-test on the per-row log loss, paired or Welch's;
- rmse: t-test on the per-row squared errors, paired or Welch's;
- mae: Wilcoxon signed-rank test on the absolute errors (paired), Mann-Whitney U (unpaired);
- roc_auc: DeLong test, of two correlated AUCs (paired) or of independent ones;
- pr_auc, f1, f1_macro, balanced_accuracy, roc_auc_ovr, r2: bootstrap, paired (both models on
  the same resampled rows) or of independent samples.

Metrics that are a mean over rows are tested on their per-row values; ranking and threshold
metrics exist only for a set of rows, so their difference is resampled. Accuracy alone is the
wrong judge of most models: with rare positives a constant "no" is as accurate as a model that
ranks every positive first.

The challenger is ``better`` only when each variant has at least ``min_samples`` rows and the
p-value is below ``alpha``. Fewer rows give the verdict ``insufficient data``, whatever the
numbers say: a promotion on a handful of lucky requests is how a bad model reaches production.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import stats

from .scoring import BOOTSTRAP_CELLS, METRICS, Metric, Prediction, row_log_loss

INSUFFICIENT = "insufficient data"
BETTER = "challenger better"
NOT_BETTER = "no significant improvement"
# Resamples of a bootstrap test: a p-value is resolved to about 1/BOOTSTRAP_SAMPLES.
BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class Comparison:
    """The outcome of one test of "the challenger is better than the champion"."""

    test: str
    metric: str
    paired: bool
    champion_version: str
    challenger_version: str
    n_champion: int
    n_challenger: int
    champion_value: float
    challenger_value: float
    statistic: float
    p_value: float
    alpha: float
    min_samples: int
    higher_is_better: bool = True
    # Why the metric is not the primary one, when it is not (see compare_log).
    note: str = ""

    @property
    def enough_data(self) -> bool:
        return min(self.n_champion, self.n_challenger) >= self.min_samples

    @property
    def verdict(self) -> str:
        if not self.enough_data:
            return INSUFFICIENT
        return BETTER if self.p_value < self.alpha else NOT_BETTER

    @property
    def better(self) -> bool:
        return self.verdict == BETTER

    def summary(self) -> str:
        design = "paired rows (both models scored each row)" if self.paired else "unpaired rows"
        direction = "higher" if self.higher_is_better else "lower"
        lines = [
            f"Challenger v{self.challenger_version} vs champion v{self.champion_version}, {design}",
            f"  metric:     {self.metric} ({direction} is better)"
            + (f"; {self.note}" if self.note else ""),
            f"  test:       {self.test} (one-sided: challenger better), alpha {self.alpha}",
            f"  values:     champion {self.champion_value:.4f} (n={self.n_champion}), "
            f"challenger {self.challenger_value:.4f} (n={self.n_challenger})",
            f"  statistic:  {self.statistic:.4f}, p-value {self.p_value:.4g}",
        ]
        if self.min_samples > 1:
            lines.append(f"  minimum:    {self.min_samples} labelled rows per variant")
        lines.append(f"  verdict:    {self.verdict}")
        return "\n".join(lines)


def compare_predictions(
    metric: str,
    champion: Prediction,
    challenger: Prediction,
    paired: bool,
    alpha: float,
    min_samples: int = 1,
    versions: tuple[str, str] = ("?", "?"),
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    note: str = "",
) -> Comparison:
    """Test whether ``challenger`` is better than ``champion`` on ``metric``.

    ``paired``: row i of both predictions is the same record (they have one length).
    ``samples`` and ``seed`` drive the bootstrap, for the metrics tested by one.
    """
    if paired and len(champion.y_true) != len(challenger.y_true):
        raise ValueError("paired predictions need one row per record for both models")
    measure = METRICS[metric]
    with warnings.catch_warnings():
        # A resample without a positive row has no AUC: such draws are left out.
        warnings.simplefilter("ignore", RuntimeWarning)
        test, statistic, p_value = _test(metric, champion, challenger, paired, samples, seed)
        values = [
            measure.value(prediction) if len(prediction.y_true) else float("nan")
            for prediction in (champion, challenger)
        ]
    return Comparison(
        test=test,
        metric=metric,
        paired=paired,
        champion_version=versions[0],
        challenger_version=versions[1],
        n_champion=len(champion.y_true),
        n_challenger=len(challenger.y_true),
        champion_value=float(values[0]),
        challenger_value=float(values[1]),
        statistic=float(statistic),
        p_value=float(p_value) if np.isfinite(p_value) else 1.0,
        alpha=alpha,
        min_samples=min_samples,
        higher_is_better=measure.higher_is_better,
        note=note,
    )


# Rows the permutation test shuffles, at most.
CHANCE_TEST_ROWS = 20_000


class ChanceTest(NamedTuple):
    """A model's metric against what its own predictions score when they mean nothing."""

    value: float  # the metric on the true labels
    null_mean: float  # its mean over the permutations: the chance level of these predictions
    p_value: float  # one-sided, of "better than chance"
    permutations: int


def chance_test(
    metric: str, prediction: Prediction, permutations: int = 1000, seed: int = 0
) -> ChanceTest:
    """Permutation test of "the predictions carry information about the labels".

    The labels are shuffled against the fixed predictions ``permutations`` times: under the
    null hypothesis (predictions independent of labels) every shuffle is as likely as the
    observed order, so the p-value is the share of shuffles that score at least as well
    (counting the observed one). The null keeps both the labels' distribution and the
    predictions' own, which is what a constant baseline misses: on macro-F1 a model that
    guesses every class at random scores about 1/K, above any constant prediction, while
    knowing nothing. Rows are assumed exchangeable under the null (on strongly
    autocorrelated test rows the test is optimistic).
    """
    measure = METRICS[metric]
    observed = measure.value(prediction)
    n = len(prediction.y_true)
    if n < 2 or not np.isfinite(observed):
        return ChanceTest(float(observed), float("nan"), 1.0, 0)
    rng = np.random.default_rng(seed)
    if n > CHANCE_TEST_ROWS:
        # A seeded sample of the rows: the test stays valid on it (and, this large, powerful
        # for any signal worth serving); on every row it would cost minutes.
        keep = np.sort(rng.choice(n, CHANCE_TEST_ROWS, replace=False))
        prediction = Prediction(
            prediction.y_true[keep], prediction.predicted[keep],
            None if prediction.proba is None else prediction.proba[keep], prediction.classes,
        )
        observed, n = measure.value(prediction), CHANCE_TEST_ROWS
    classify = prediction.classes is not None and prediction.proba is not None
    null = np.empty(permutations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(permutations):
            order = rng.permutation(n)
            shuffled = Prediction(
                prediction.y_true[order], prediction.predicted, prediction.proba,
                prediction.classes,
            )
            if classify:
                # The label codes follow the labels, the predicted ones stay: set both rather
                # than derive them again for every shuffle.
                shuffled.__dict__["true_codes"] = prediction.true_codes[order]
                shuffled.__dict__["predicted_codes"] = prediction.predicted_codes
            null[i] = measure.value(shuffled)
    null = null[np.isfinite(null)]
    if not len(null):
        return ChanceTest(float(observed), float("nan"), 1.0, 0)
    as_good = null >= observed if measure.higher_is_better else null <= observed
    p_value = (1 + int(as_good.sum())) / (1 + len(null))
    return ChanceTest(float(observed), float(null.mean()), float(p_value), len(null))


def statistical_test(metric: str, paired: bool) -> str:
    """The name of the test :func:`compare_predictions` runs for ``metric``."""
    tests = TESTS.get(metric, BOOTSTRAP_TESTS)
    return tests[0] if paired else tests[1]


# Metrics that are a mean over rows: the per-row values (losses) their tests compare.
ROW_VALUES: dict[str, Callable[[Prediction], np.ndarray]] = {
    "accuracy": lambda p: (p.true_codes != p.predicted_codes).astype(float),
    "log_loss": row_log_loss,
    "rmse": lambda p: (p.y_true - p.predicted) ** 2,
    "mae": lambda p: np.abs(p.y_true - p.predicted),
}
# (paired, unpaired) test of each metric that has a test of its own; the others are resampled.
TESTS = {
    "accuracy": ("exact McNemar test", "two-proportion z-test"),
    "log_loss": ("paired t-test on per-row log loss", "Welch t-test on per-row log loss"),
    "rmse": ("paired t-test on per-row squared errors", "Welch t-test on per-row squared errors"),
    "mae": ("Wilcoxon signed-rank test", "Mann-Whitney U test"),
    "roc_auc": ("DeLong test", "DeLong test (independent samples)"),
}
BOOTSTRAP_TESTS = ("paired bootstrap", "bootstrap (independent samples)")


def _test(
    metric: str,
    champion: Prediction,
    challenger: Prediction,
    paired: bool,
    samples: int,
    seed: int,
) -> tuple[str, float, float]:
    """(test name, statistic, one-sided p-value) of "the challenger is better"."""
    name = statistical_test(metric, paired)
    if not len(champion.y_true) or not len(challenger.y_true):
        return name, 0.0, 1.0
    if metric == "roc_auc":
        z, p = _delong(champion, challenger, paired)
        if math.isnan(z):
            # Every structural component alike (a perfect ranking against a constant one):
            # DeLong estimates no variance at all, so the difference is resampled instead.
            return (
                f"{name}; its variance is zero (a perfect or constant ranking), so a bootstrap",
                *_bootstrap(METRICS[metric], champion, challenger, paired, samples, seed),
            )
        return name, z, p
    if metric not in ROW_VALUES:
        return name, *_bootstrap(METRICS[metric], champion, challenger, paired, samples, seed)
    # Per-row losses, lower is better (accuracy: 1 for a wrong row).
    old, new = ROW_VALUES[metric](champion), ROW_VALUES[metric](challenger)
    if metric == "accuracy":
        return name, *(_mcnemar(old, new) if paired else _two_proportions(old, new))
    if metric == "mae":
        return name, *(_wilcoxon(old, new) if paired else _mann_whitney(old, new))
    return name, *_mean_loss_test(old, new, paired)


def _mcnemar(old: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    # Rows both models got right (or wrong) say nothing about which is better.
    only_challenger = int(((old == 1) & (new == 0)).sum())
    only_champion = int(((old == 0) & (new == 1)).sum())
    discordant = only_challenger + only_champion
    if not discordant:
        return 0.0, 1.0
    test = stats.binomtest(only_challenger, discordant, 0.5, alternative="greater")
    return float(only_challenger - only_champion), test.pvalue


def _two_proportions(old: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    n1, n2 = len(old), len(new)
    right1, right2 = n1 - old.sum(), n2 - new.sum()
    pooled = (right1 + right2) / (n1 + n2)
    spread = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 0.0, 1.0
    z = (right2 / n2 - right1 / n1) / spread
    return float(z), float(stats.norm.sf(z))


def _wilcoxon(old: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    differences = old - new
    if not np.any(differences):
        return 0.0, 1.0
    result = stats.wilcoxon(differences, alternative="greater")
    return result.statistic, result.pvalue


def _mann_whitney(old: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    result = stats.mannwhitneyu(old, new, alternative="greater")
    return result.statistic, result.pvalue


def _mean_loss_test(old: np.ndarray, new: np.ndarray, paired: bool) -> tuple[float, float]:
    """A t-test of "the challenger's mean per-row loss is lower" (the metric is that mean)."""
    if paired:
        if not np.any(old - new):
            return 0.0, 1.0
        result = stats.ttest_rel(old, new, alternative="greater")
    else:
        if len(old) < 2 or len(new) < 2:
            return 0.0, 1.0
        result = stats.ttest_ind(old, new, equal_var=False, alternative="greater")
    return result.statistic, result.pvalue


class _DelongParts(NamedTuple):
    auc: float
    per_positive: np.ndarray
    per_negative: np.ndarray


def _delong_parts(prediction: Prediction) -> _DelongParts | None:
    """The AUC and its DeLong structural components (per positive row, per negative row)."""
    positive = prediction.positive
    scores = prediction.probabilities[:, 1]
    m, n = int(positive.sum()), int((~positive).sum())
    if not m or not n:
        return None
    ranks = stats.rankdata(np.concatenate([scores[positive], scores[~positive]]))
    within_positive = stats.rankdata(scores[positive])
    within_negative = stats.rankdata(scores[~positive])
    auc = (ranks[:m].sum() - m * (m + 1) / 2) / (m * n)
    per_positive = (ranks[:m] - within_positive) / n
    per_negative = 1.0 - (ranks[m:] - within_negative) / m
    return _DelongParts(float(auc), per_positive, per_negative)


def _delong(champion: Prediction, challenger: Prediction, paired: bool) -> tuple[float, float]:
    """z and one-sided p of "the challenger's ROC AUC is higher" (DeLong et al., 1988).

    Paired: both AUCs are measured on the same rows, and the variance of their difference
    subtracts their covariance (the fast midrank form of Sun and Xu, 2014).
    """
    old, new = _delong_parts(champion), _delong_parts(challenger)
    if old is None or new is None:
        return 0.0, 1.0
    difference = new.auc - old.auc
    components = [(new.per_positive, old.per_positive), (new.per_negative, old.per_negative)]
    if paired:
        variance = sum(_paired_variance(mine, theirs) for mine, theirs in components)
    else:
        variance = sum(
            float(np.var(part, ddof=1)) / len(part) for pair in components for part in pair
        )
    if not variance > 0:
        # No estimated variance: nan tells the caller to test the difference another way.
        return (math.nan, 1.0) if difference != 0 else (0.0, 1.0)
    z = difference / np.sqrt(variance)
    return float(z), float(stats.norm.sf(z))


def _paired_variance(new: np.ndarray, old: np.ndarray) -> float:
    """The variance of the mean of ``new - old`` (components of the same rows)."""
    covariance = np.cov(new, old)
    return float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]) / len(new)


def _bootstrap(
    measure: Metric,
    champion: Prediction,
    challenger: Prediction,
    paired: bool,
    samples: int,
    seed: int,
) -> tuple[float, float]:
    """The observed improvement and the share of resamples in which the challenger is not
    better (one-sided bootstrap p-value).

    Paired: each resample draws the same rows for both models, so what the rows have in common
    (easy or hard records) cancels out of the difference.
    """
    sign = 1.0 if measure.higher_is_better else -1.0
    rng = np.random.default_rng(seed)
    n_old, n_new = len(champion.y_true), len(challenger.y_true)
    block = max(1, BOOTSTRAP_CELLS // max(n_old, n_new))
    gains = []
    for start in range(0, samples, block):
        count = min(block, samples - start)
        old_rows = rng.integers(0, n_old, size=(count, n_old))
        new_rows = old_rows if paired else rng.integers(0, n_new, size=(count, n_new))
        gains.append(
            sign * (measure.compute(challenger, new_rows) - measure.compute(champion, old_rows))
        )
    drawn = np.concatenate(gains)
    drawn = drawn[~np.isnan(drawn)]
    observed = sign * (measure.value(challenger) - measure.value(champion))
    return observed, (1 + int((drawn <= 0).sum())) / (len(drawn) + 1)
