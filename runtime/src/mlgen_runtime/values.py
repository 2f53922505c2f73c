"""*Values*: how a raw feature value is read, the same way in training, serving and monitoring.

Training reads columns of a DataFrame (numbers as float64, everything else as objects with NaN
for missing); serving reads validated request values (numbers, strings, booleans, None). Each
function here maps both forms, and any batch size, to the same result value by value, so a
column computed from either agrees exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd


def is_missing(value: Any) -> bool:
    """True for None, NaN, pandas' NA and NaT, and numpy's NaT."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def category_text(value: Any) -> str | None:
    """One category value as a string (1.0 and 1 become "1"); None when missing."""
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def number(value: Any) -> float:
    """One value as a float (booleans are 0/1); NaN when missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def numbers(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Values as float64, NaN where missing or not a number (as :func:`number`)."""
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        # A word among the numbers: value by value, so each converts as it would alone.
        return np.fromiter(map(number, values), dtype=float, count=len(values))


def texts(values: Sequence[Any] | np.ndarray) -> list[str | None]:
    """Values as category strings (see :func:`category_text`)."""
    return [category_text(value) for value in values]


def timestamp(value: Any) -> datetime | None:
    """A value as an aware UTC datetime (naive times are UTC); None when missing or unreadable.

    ISO 8601 strings (what a request carries) are read directly; other date strings as pandas
    reads them (``format="mixed"``).
    """
    if is_missing(value):
        return None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, datetime):
        stamp = value
    else:
        try:
            stamp = datetime.fromisoformat(str(value))
        except ValueError:
            parsed = pd.to_datetime(str(value), errors="coerce", utc=True, format="mixed")
            if pd.isna(parsed):
                return None
            stamp = parsed.to_pydatetime()
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def timestamps(values: Sequence[Any] | np.ndarray) -> list[datetime | None]:
    """Values as UTC datetimes (see :func:`timestamp`)."""
    return [timestamp(value) for value in values]
