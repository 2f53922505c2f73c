"""A *leak* is a column whose value would not be known when the service makes a prediction.

A leaking feature makes a model look excellent in testing and fail in use. This module holds the
evidence that a column leaks its target, measured on the data: a copy of the target, a
column that nearly determines it on its own, or a part of it (two columns whose sum or
difference is the target).
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
# An identity that holds on this share of rows is how the data was built, not a coincidence.
IDENTITY_SHARE = 0.99
# The pair search compares every pair of numeric columns: bounded to the columns most
# correlated with the target, and first run on a probe of rows.
MAX_PART_COLUMNS = 60
PROBE_ROWS = 2_000


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
            # A log or a power of the target is as much a copy as a rescaled one: compare ranks
            # (only for columns already correlated, as ranking every column of a wide file is slow).
            if abs(corr) >= 0.5:
                rho = x.rank().corr(y.rank())
                if abs(rho) >= 0.999:
                    return f"a monotonic transform of the target (rank correlation {rho:.3f})"
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


def parts_of_target(numbers: pd.DataFrame, y: pd.Series) -> dict[str, str]:
    """Columns of ``numbers`` that are parts of ``y``: two whose sum or difference equals ``y``
    on at least 99% of rows (a total and its two parts, a balance and its two flows).

    ``numbers`` holds numeric, non-constant columns on the same rows as ``y``. A part that is
    zero on almost every row is left alone: the other column is then a plain copy.
    """
    if numbers.shape[1] < 2 or len(y) < 10:
        return {}
    probe = np.linspace(0, len(y) - 1, min(len(y), PROBE_ROWS)).astype(int)
    if numbers.shape[1] > MAX_PART_COLUMNS:
        strength = numbers.iloc[probe].corrwith(y.iloc[probe]).abs().fillna(0.0)
        numbers = numbers[strength.nlargest(MAX_PART_COLUMNS).index]
    names = list(numbers.columns)
    values = numbers.to_numpy(dtype=float)
    target = y.to_numpy(dtype=float)
    found: dict[str, str] = {}
    for a, b, sign in _identities(values[probe], target[probe]):
        share = _identity_share(values[:, a], sign * values[:, b], target)
        rare = [names[i] for i in (a, b) if np.mean(values[:, i] == 0) >= 0.95]
        if share < IDENTITY_SHARE or rare:
            continue
        formula = f'"{y.name}" = "{names[a]}" {"+" if sign > 0 else "-"} "{names[b]}"'
        for i in (a, b):
            found.setdefault(names[i], f"part of the target: {formula} on {share:.0%} of rows")
    return found


def _identities(values: np.ndarray, target: np.ndarray) -> list[tuple[int, int, int]]:
    """Column pairs (a, b, sign) with target = a + sign * b on the probe rows, vectorised over b."""
    pairs = []
    for a in range(values.shape[1]):
        # target = a + b  <=>  b = target - a;  target = a - b  <=>  b = a - target.
        for sign, rest in ((1, target - values[:, a]), (-1, values[:, a] - target)):
            close = _close(values, rest[:, None], np.abs(target)[:, None])
            shares = close.mean(axis=0)
            shares[a] = 0.0
            if sign > 0:
                shares[: a + 1] = 0.0  # a + b and b + a are one identity
            pairs += [(a, int(b), sign) for b in np.flatnonzero(shares >= IDENTITY_SHARE)]
    return pairs


def _identity_share(a: np.ndarray, b: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(_close(a + b, target, np.abs(a) + np.abs(b))))


def _close(x: np.ndarray, y: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Equal up to float rounding of sums (missing values are never equal)."""
    return np.abs(x - y) <= 1e-9 + 1e-6 * (np.abs(x) + np.abs(y) + scale)


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
