"""The *comparison* of a challenger with the champion on ground truth, by a stated test.

Each labelled row gives each model a loss: 1 for a wrong class and 0 for a right one
(classifiers, i.e. accuracy), or the absolute error (regression). The test depends on how the
rows were collected:

- paired (shadow rollout, or both models scored on one holdout): classifiers get the exact
  McNemar test (a one-sided binomial test on the rows exactly one model got right),
  regression the one-sided Wilcoxon signed-rank test on the differences of absolute errors;
- unpaired (split rollout: each request saw one model): classifiers get the one-sided
  two-proportion z-test on accuracy, regression the one-sided Mann-Whitney U test on the
  absolute errors.

The challenger is ``better`` only when each variant has at least ``min_samples`` rows and the
p-value is below ``alpha``. Fewer rows give the verdict ``insufficient data``, whatever the
numbers say: a promotion on a handful of lucky requests is how a bad model reaches production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from .config import Config
from .errors import CompareError
from .serving.rollout import CHALLENGER, CHAMPION, PredictionLog, RolloutSettings

INSUFFICIENT = "insufficient data"
BETTER = "challenger better"
NOT_BETTER = "no significant improvement"


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
        lines = [
            f"Challenger v{self.challenger_version} vs champion v{self.champion_version}, {design}",
            f"  test:       {self.test} (one-sided: challenger better), alpha {self.alpha}",
            f"  {self.metric:<11} champion {self.champion_value:.4f} (n={self.n_champion}), "
            f"challenger {self.challenger_value:.4f} (n={self.n_challenger})",
            f"  statistic:  {self.statistic:.4f}, p-value {self.p_value:.4g}",
            f"  minimum:    {self.min_samples} labelled rows per variant",
            f"  verdict:    {self.verdict}",
        ]
        return "\n".join(lines)


def losses(task: str, predictions: Any, truths: Any) -> np.ndarray:
    """Per row: 1.0 for a wrong class, 0.0 for a right one, or the absolute error."""
    if task == "regression":
        return np.abs(np.asarray(truths, dtype=float) - np.asarray(predictions, dtype=float))
    # Compared as text: a label fed back as "1" is the class 1.
    return np.array(
        [str(p) != str(t) for p, t in zip(predictions, truths, strict=True)], dtype=float
    )


def compare_losses(
    task: str,
    champion: np.ndarray,
    challenger: np.ndarray,
    paired: bool,
    alpha: float,
    min_samples: int,
    versions: tuple[str, str] = ("?", "?"),
) -> Comparison:
    """Test whether ``challenger`` losses are lower than ``champion`` losses.

    ``paired``: row i of both arrays is the same record (the arrays have one length).
    """
    champion, challenger = np.asarray(champion, float), np.asarray(challenger, float)
    if paired and len(champion) != len(challenger):
        raise ValueError("paired losses need one row per record for both models")
    regression = task == "regression"
    if regression:
        test, statistic, p_value = _regression_test(champion, challenger, paired)
        metric, champion_value, challenger_value = "MAE", champion.mean(), challenger.mean()
    else:
        test, statistic, p_value = _classification_test(champion, challenger, paired)
        metric = "accuracy"
        champion_value, challenger_value = 1 - champion.mean(), 1 - challenger.mean()
    return Comparison(
        test=test,
        metric=metric,
        paired=paired,
        champion_version=versions[0],
        challenger_version=versions[1],
        n_champion=len(champion),
        n_challenger=len(challenger),
        champion_value=float(champion_value) if len(champion) else float("nan"),
        challenger_value=float(challenger_value) if len(challenger) else float("nan"),
        statistic=float(statistic),
        p_value=float(p_value),
        alpha=alpha,
        min_samples=min_samples,
    )


def _classification_test(
    champion: np.ndarray, challenger: np.ndarray, paired: bool
) -> tuple[str, float, float]:
    if paired:
        # Rows both models got right (or wrong) say nothing about which is better.
        only_challenger = int(((champion == 1) & (challenger == 0)).sum())
        only_champion = int(((champion == 0) & (challenger == 1)).sum())
        discordant = only_challenger + only_champion
        p_value = (
            stats.binomtest(only_challenger, discordant, 0.5, alternative="greater").pvalue
            if discordant
            else 1.0
        )
        return "exact McNemar test", float(only_challenger - only_champion), p_value
    n1, n2 = len(champion), len(challenger)
    if not n1 or not n2:
        return "two-proportion z-test", 0.0, 1.0
    right1, right2 = n1 - champion.sum(), n2 - challenger.sum()
    pooled = (right1 + right2) / (n1 + n2)
    spread = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return "two-proportion z-test", 0.0, 1.0
    z = (right2 / n2 - right1 / n1) / spread
    return "two-proportion z-test", float(z), float(stats.norm.sf(z))


def _regression_test(
    champion: np.ndarray, challenger: np.ndarray, paired: bool
) -> tuple[str, float, float]:
    if paired:
        differences = champion - challenger
        if not np.any(differences):
            return "Wilcoxon signed-rank test", 0.0, 1.0
        result = stats.wilcoxon(differences, alternative="greater")
        return "Wilcoxon signed-rank test", result.statistic, result.pvalue
    if not len(champion) or not len(challenger):
        return "Mann-Whitney U test", 0.0, 1.0
    result = stats.mannwhitneyu(champion, challenger, alternative="greater")
    return "Mann-Whitney U test", result.statistic, result.pvalue


def compare_log(config: Config, challenger_version: str | None = None) -> Comparison:
    """Compare the variants of the rollout prediction log on their fed-back outcomes.

    ``challenger_version`` defaults to the most recent challenger in the log; the champion
    rows are those logged beside it. Shadow rows are paired by (request id, row).
    """
    settings = RolloutSettings.of(config)
    path = config.resolve(settings.log_path)
    if not path.is_file():
        raise CompareError(
            f"No rollout log at {path}. Serve a challenger (serving.rollout.mode: shadow or "
            "split), send outcomes to POST /feedback, then compare."
        )
    prediction_log = PredictionLog(path)
    try:
        rows = list(prediction_log.labelled())
    finally:
        prediction_log.close()
    challengers = [row for row in rows if row["variant"] == CHALLENGER]
    if challenger_version is None and challengers:
        challenger_version = challengers[-1]["model_version"]
    challengers = [row for row in challengers if row["model_version"] == challenger_version]
    if not challengers:
        which = f"v{challenger_version}" if challenger_version else "any challenger"
        raise CompareError(
            f"The rollout log {path} has no labelled predictions of {which}. Send the observed "
            "outcomes of its requests to POST /feedback."
        )
    champions = [row for row in rows if row["variant"] == CHAMPION]
    paired = any(not row["served"] for row in challengers)
    if paired:
        by_key = {(row["request_id"], row["row"]): row for row in champions}
        challengers = [row for row in challengers if (row["request_id"], row["row"]) in by_key]
        champion_rows = [by_key[(row["request_id"], row["row"])] for row in challengers]
    else:
        # The champion's rows of the same period: logged since the challenger's first row.
        start = next(i for i, row in enumerate(rows) if row is challengers[0])
        champion_rows = [row for row in rows[start:] if row["variant"] == CHAMPION]
    versions = sorted({row["model_version"] for row in champion_rows}) or ["?"]
    return compare_losses(
        config.task,
        _row_losses(config.task, champion_rows),
        _row_losses(config.task, challengers),
        paired,
        settings.alpha,
        settings.min_samples,
        ("/".join(versions), str(challenger_version)),
    )


def _row_losses(task: str, rows: list[dict[str, Any]]) -> np.ndarray:
    return losses(task, [row["prediction"] for row in rows], [row["label"] for row in rows])
