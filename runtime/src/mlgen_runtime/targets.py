"""A yes/no target derived from a numeric column: ``data.positive_when``.

"Predict whether a person had an affair" over a column that counts affairs asks a yes/no
question that the data holds only as a number. ``data.positive_when: "> 0"`` asks it: wherever
labelled rows are read (``train``, ``evaluate``, ``investigate --data``, the retrain backtest,
the text kind's training), the target column's numbers become ``"yes"`` where the comparison
holds and ``"no"`` where it does not; a row without a number stays unlabelled. ``"yes"`` sorts
after ``"no"``, so it is the positive class of every binary metric. The raw column stays a
column of the data and never a feature (it is the target): a served row may carry it, and
``POST /feedback`` takes the observed number as ``value`` and applies the same rule.

The rule is data, never code: an operator out of six and a number, read by a fixed pattern.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataValidationError

if TYPE_CHECKING:
    import pandas as pd

    from .config import Config

YES, NO = "yes", "no"
RULE = re.compile(
    r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
OPERATORS: dict[str, Callable[[Any, float], Any]] = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


@dataclass(frozen=True)
class TargetRule:
    """``op value``: the target is ``yes`` where ``column op value`` holds."""

    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> TargetRule:
        """``"> 0"``, ``">= 15"``, ``"== 1"``...; a ValueError that shows the form otherwise."""
        match = RULE.match(str(text))
        if not match:
            raise ValueError(
                f"positive_when {text!r} is not a comparison with a number: write an operator "
                "(>, >=, <, <=, == or !=) and a number, e.g. \"> 0\" or \">= 15\""
            )
        return cls(match.group(1), float(match.group(2)))

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"

    def holds(self, numbers: Any) -> np.ndarray:
        """Where the comparison holds, for an array of numbers (NaN: False)."""
        return np.asarray(OPERATORS[self.op](np.asarray(numbers, dtype=float), self.value))

    def label(self, number: float) -> str:
        """The class of one observed number."""
        return YES if bool(self.holds([number])[0]) else NO


def rule_of(config: Config) -> TargetRule | None:
    """The config's ``data.positive_when``, parsed (None when not set)."""
    text = config.data.positive_when
    return TargetRule.parse(text) if text else None


def derive_target(df: pd.DataFrame, config: Config) -> pd.DataFrame:
    """``df`` with its target column turned into yes/no by ``data.positive_when`` (the same
    frame when no rule is set or the column is absent: the checks after this name it)."""
    rule = rule_of(config)
    target = config.data.target
    if rule is None or target not in df.columns:
        return df
    import pandas as pd

    column = df[target]
    numbers = pd.to_numeric(column, errors="coerce")
    not_numbers = column.notna() & numbers.isna()
    if not_numbers.any():
        example = column[not_numbers].iloc[0]
        raise DataValidationError(
            f"data.positive_when {str(rule)!r} compares target column {target!r} with a "
            f"number, but it holds {example!r} ({int(not_numbers.sum())} such rows). Fix the "
            "column, or remove positive_when and name a yes/no column as data.target."
        )
    derived = pd.Series(
        np.where(rule.holds(numbers.to_numpy()), YES, NO), index=df.index, dtype=object
    )
    out = df.copy()
    out[target] = derived.where(numbers.notna(), None)
    return out


def describe(config: Config) -> str | None:
    """``"affairs > 0"``: the question a derived target asks (None without a rule)."""
    rule = rule_of(config)
    return f"{config.data.target} {rule}" if rule else None
