"""A *leak* is a column whose value would not be known when the service makes a prediction.

A leaking feature makes a model look excellent in testing and fail in use. This module holds the
evidence that a column leaks its target, measured on the data: a copy of the target, or a
column that nearly determines it on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlgen.profile import ColumnProfile

# One column alone separating two classes this well is suspicious: the strongest single feature
# of the breast cancer data reaches 0.975, the leaked "expenditure" of AER CreditCard 0.990.
LEAK_AUC = 0.985


def leak_reason(
    x: pd.Series, y: pd.Series, first_class: np.ndarray | None, col: ColumnProfile, kind: str
) -> str | None:
    """Why column ``x`` alone gives ``y`` away (a copy, a near-linear copy, a column that
    nearly determines the class), or None."""
    if len(y) < 10 or x.isna().mean() > 0.5:
        return None
    if _share_equal(x, y) >= 0.99:
        return "a copy of the target"
    if kind == "regression":
        if col.kind in ("numeric", "boolean"):
            corr = pd.concat([x, y], axis=1).dropna().corr().iloc[0, 1]
            if abs(corr) >= 0.99:
                return f"nearly determines the target (correlation {corr:.3f})"
        return None
    if col.n_unique <= max(20, 0.05 * len(y)):
        purity, majority = _purity(x, y)
        if purity >= 0.99 and majority < 0.99:
            return f"nearly determines the target ({purity:.1%} of rows follow its value)"
        return None
    if first_class is not None and col.kind == "numeric":
        auc = _auc(x.to_numpy(dtype=float), first_class)
        if auc is not None and max(auc, 1 - auc) >= LEAK_AUC:
            return (
                f"separates the classes almost perfectly on its own (AUC {max(auc, 1 - auc):.3f})"
            )
    return None


def _share_equal(x: pd.Series, y: pd.Series) -> float:
    """Share of rows where ``x`` equals ``y`` (0 when one is numeric and the other is not)."""
    numeric = pd.api.types.is_numeric_dtype
    if numeric(x) != numeric(y):
        return 0.0
    return float(np.mean(x.to_numpy() == y.to_numpy()))


def _purity(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    """Share of rows whose class is the most common one for their value of ``x``; and the
    share of the most common class overall (what purity is when ``x`` says nothing)."""
    x_codes = pd.factorize(x, use_na_sentinel=True)[0] + 1  # missing values share bucket 0
    y_codes, classes = pd.factorize(y)
    counts = np.bincount(x_codes * len(classes) + y_codes)
    table = np.pad(counts, (0, (x_codes.max() + 1) * len(classes) - len(counts)))
    table = table.reshape(-1, len(classes))
    return table.max(axis=1).sum() / len(y), np.bincount(y_codes).max() / len(y)


def _auc(x: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``x`` as a score for ``positive`` (Mann-Whitney, ties averaged)."""
    present = ~np.isnan(x)
    x, positive = x[present], positive[present]
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return None
    ranks = pd.Series(x).rank().to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
