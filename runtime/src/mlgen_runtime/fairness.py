"""*Fairness*: how a model treats the groups of sensitive attributes (``fairness:`` in the
config), for ``train``'s evaluation, the model card and ``investigate``.

Per group of each attribute: its size, accuracy (classifiers) or mean absolute error
(regression) with a 95% interval (Wilson for shares, normal for means); for binary classifiers
also the selection rate (share predicted positive), true and false positive rates. Between
groups: the demographic-parity difference (largest minus smallest selection rate) and the
equalised-odds difference (the larger of the gaps in true and in false positive rates), the
definitions of Fairlearn's metrics of the same names. Groups under MIN_GROUP rows are listed
but left out of the differences: their rates are noise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .scoring import BINARY, REGRESSION, Prediction

MIN_GROUP = 30
Z95 = 1.959963984540054


def wilson(successes: float, n: int) -> tuple[float, float]:
    """The Wilson 95% interval of a share."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return centre - half, centre + half


def fairness_report(
    frame: pd.DataFrame,
    prediction: Prediction,
    attributes: list[str],
    task: str,
    labelled: bool = True,
) -> dict[str, Any]:
    """Per-group metrics and the differences between groups, per attribute."""
    result: dict[str, Any] = {"attributes": {}, "groups": []}
    lines = []
    for attribute in attributes:
        if attribute not in frame.columns:
            result["attributes"][attribute] = {"error": f"column {attribute!r} is not in the data"}
            lines.append(f"{attribute}: not in the data")
            continue
        values = frame[attribute].astype(str).to_numpy()
        rows = [
            _group(attribute, g, values == g, prediction, task, labelled) for g in pd.unique(values)
        ]
        result["groups"].extend(rows)
        sized = [r for r in rows if r["rows"] >= MIN_GROUP]
        summary: dict[str, Any] = {"groups": len(rows), "compared": len(sized)}
        if task == BINARY and len(sized) > 1:
            summary["demographic_parity_difference"] = _spread(sized, "selection_rate")
            if labelled:
                summary["equalized_odds_difference"] = max(
                    _spread(sized, "true_positive_rate"), _spread(sized, "false_positive_rate")
                )
        key = "mean_absolute_error" if task == REGRESSION else "accuracy"
        if labelled and len(sized) > 1:
            summary[f"{key}_difference"] = _spread(sized, key)
        result["attributes"][attribute] = summary
        shown = ", ".join(
            f"{k.replace('_', ' ')} {v:.3f}" for k, v in summary.items() if k.endswith("difference")
        )
        lines.append(
            f"{attribute}: {shown or 'fewer than two groups of ' + str(MIN_GROUP) + ' rows'}"
        )
    result["summary"] = "; ".join(lines)
    return result


def _spread(rows: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None and not math.isnan(r[key])]
    return float(max(values) - min(values)) if len(values) > 1 else 0.0


def _group(
    attribute: str, group: str, mask: np.ndarray, p: Prediction, task: str, labelled: bool
) -> dict[str, Any]:
    n = int(mask.sum())
    row: dict[str, Any] = {"attribute": attribute, "group": group, "rows": n}
    if task == REGRESSION:
        if labelled:
            errors = np.abs(p.y_true[mask] - p.predicted[mask])
            mean = float(errors.mean())
            half = Z95 * float(errors.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
            row.update(mean_absolute_error=mean, ci=[mean - half, mean + half])
        row["mean_prediction"] = float(p.predicted[mask].mean())
        return row
    said = p.predicted_codes[mask]
    if task == BINARY:
        selected = float((said == 1).sum())
        row["selection_rate"] = selected / n
        row["selection_rate_ci"] = list(wilson(selected, n))
    if labelled:
        truth = p.true_codes[mask]
        hits = float((truth == said).sum())
        row["accuracy"] = hits / n
        row["accuracy_ci"] = list(wilson(hits, n))
        if task == BINARY:
            positives, negatives = truth == 1, truth == 0
            row["true_positive_rate"] = (
                float((said[positives] == 1).mean()) if positives.any() else math.nan
            )
            row["false_positive_rate"] = (
                float((said[negatives] == 1).mean()) if negatives.any() else math.nan
            )
    return row
