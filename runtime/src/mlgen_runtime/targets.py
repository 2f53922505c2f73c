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
This module reads it; data.py applies it to the rows it loads (``derive_target``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

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
