"""Your feature engineering: the one place for hand-written features.

``add_features`` receives the raw request/training columns as a DataFrame and returns it with
any new columns added. It runs inside the model Pipeline, so training and serving share it.
New columns are typed automatically at training time and listed as ``derived_features``.
Rules: keep one output row per input row, do not use the target, and cope with null values
(a request may leave any feature out). This file is yours: template updates never change it.
"""

from __future__ import annotations

import pandas as pd


def add_features(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with extra feature columns; the default adds none."""
    return df
