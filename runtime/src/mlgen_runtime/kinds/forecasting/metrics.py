"""Forecast *metrics* and the paired test that compares two forecasters.

Over a set of forecast windows (series x origin, ``horizon`` steps each):

* **MASE**: mean absolute error in units of the series' in-sample seasonal-naive error
  (models.error_scale), averaged over windows; below 1 beats seasonal naive on that scale;
* **sMAPE**: mean of 200 |e| / (|y| + |yhat|), in percent (0 where both are 0);
* **RMSE**: root mean squared error over every forecast step, in the target's units;
* **coverage**: the share of actual values inside the prediction intervals; **width**: their
  mean width in units of the scale.

The test: one-sided Wilcoxon signed-rank on the paired scaled absolute errors of every forecast
step (both forecasters on the same windows), "the new forecaster's errors are smaller". Steps of
one window are correlated, so the p-value is optimistic; the test set's windows are the latest
data, so it is the comparison a user cares about.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ...compare import Comparison

METRICS = ("mase", "smape", "rmse", "coverage")
HIGHER_IS_BETTER = {"mase": False, "smape": False, "rmse": False, "coverage": True}
TEST = "Wilcoxon signed-rank test on paired scaled absolute errors"


def scaled_errors(actual: np.ndarray, forecast: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """|actual - forecast| / scale per window (rows) and step (columns)."""
    return np.abs(actual - forecast) / scales[:, None]


def forecast_metrics(
    actual: np.ndarray,
    forecast: np.ndarray,
    scales: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, float]:
    """The metrics of ``forecast`` (windows x steps) against ``actual`` (see the module)."""
    errors = actual - forecast
    denominator = np.abs(actual) + np.abs(forecast)
    smape = np.divide(
        200 * np.abs(errors), denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    result = {
        "mase": float(scaled_errors(actual, forecast, scales).mean(axis=1).mean()),
        "smape": float(smape.mean()),
        "rmse": float(np.sqrt(np.mean(errors**2))),
    }
    if lower is not None and upper is not None:
        result["coverage"] = float(np.mean((actual >= lower) & (actual <= upper)))
        result["width"] = float(np.mean((upper - lower) / scales[:, None]))
    return result


def paired_test(
    champion_errors: np.ndarray,
    challenger_errors: np.ndarray,
    alpha: float,
    versions: tuple[str, str],
    metric: str = "mase",
) -> Comparison:
    """One-sided Wilcoxon signed-rank test of smaller scaled errors (see the module)."""
    old, new = champion_errors.ravel(), challenger_errors.ravel()
    if np.allclose(old, new):
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.wilcoxon(new, old, alternative="less", zero_method="zsplit")
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return Comparison(
        test=TEST,
        metric=metric,
        paired=True,
        champion_version=versions[0],
        challenger_version=versions[1],
        n_champion=len(old),
        n_challenger=len(new),
        champion_value=float(old.mean()),
        challenger_value=float(new.mean()),
        statistic=statistic,
        p_value=p_value,
        alpha=alpha,
        min_samples=1,
        higher_is_better=False,
    )


def conformal_quantiles(scaled: np.ndarray, level: float) -> np.ndarray:
    """Per step, the conformal quantile of the scaled absolute calibration errors
    (windows x steps) at ``level``: the ceil((n + 1) level)-th smallest, n the errors pooled
    from the step and its neighbours (a window of about a twelfth of the horizon each side,
    so a few calibration windows still give a usable quantile); the largest when n is small."""
    windows, steps = scaled.shape
    reach = max(steps // 12, 0)
    quantiles = np.empty(steps)
    for step in range(steps):
        pooled = np.sort(scaled[:, max(step - reach, 0) : step + reach + 1].ravel())
        rank = min(int(np.ceil((len(pooled) + 1) * level)), len(pooled))
        quantiles[step] = pooled[rank - 1]
    # An interval does not narrow further ahead.
    return np.maximum.accumulate(quantiles)
