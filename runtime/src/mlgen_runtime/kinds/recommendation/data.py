"""The *interactions* a recommendation service learns from: read, checked, indexed and split.

Rows of (user, item[, time][, weight]) become :class:`Interactions`: the user and item ids of an
index, one code per row, and the users x items matrix of summed weights. Item metadata (titles,
tags, categories) comes from columns of the same file or from ``items_path``
(:class:`ItemMetadata`). Every check raises :class:`DataValidationError` naming the column and
what to change.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    from ...config import Config, RecommendationConfig

log = logging.getLogger(__name__)

# Numeric times above this are milliseconds since the epoch, not seconds (year 5138 in s).
MILLISECONDS = 1e11
# The smallest recency weight (an interaction thousands of a user's interactions ago).
MIN_RECENCY = 1e-6
# Fewer interactions than this cannot be split into train, validation and test.
MIN_INTERACTIONS = 20


@dataclass(frozen=True)
class Interactions:
    """Interaction rows coded on an index of users and items (shared by every subset)."""

    users: np.ndarray  # the original user id of each user code
    items: np.ndarray  # the original item id of each item code
    user: np.ndarray  # per row: user code
    item: np.ndarray  # per row: item code
    weight: np.ndarray  # per row: float32 strength (1 without a weight column)
    time: np.ndarray | None  # per row: seconds since the epoch, or None

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return len(self.user)

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """users x items, the weights of repeated (user, item) rows summed."""
        matrix = sp.csr_matrix(
            (self.weight, (self.user, self.item)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        matrix.sort_indices()
        return matrix

    def recency(self, half_life: float) -> sp.csr_matrix:
        """:attr:`matrix` with each (user, item) weighed down by 0.5 ** (r / half_life), r the
        number of the user's interactions after its latest use (0: the latest; by time, else by
        row order); ``half_life`` 0: :attr:`matrix` itself."""
        if half_life <= 0:
            return self.matrix
        time = self.time if self.time is not None else np.arange(len(self), dtype=np.float64)
        order = np.lexsort((np.arange(len(self)), -time, self.user))
        users = self.user[order]
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
        counts = np.diff(np.r_[starts, len(order)])
        later = np.empty(len(self), dtype=np.float64)
        later[order] = np.arange(len(order)) - np.repeat(starts, counts)
        # Never 0 in float32: the matrix must hold every item the user used (what is excluded).
        decay = np.maximum(np.power(0.5, later / half_life), MIN_RECENCY)
        latest = _max_duplicates(
            sp.coo_matrix(
                (decay.astype(np.float32), (self.user, self.item)),
                shape=(self.n_users, self.n_items),
            )
        )
        return sp.csr_matrix(self.matrix.multiply(latest), dtype=np.float32)

    def transitions(self, window: int, decay: float) -> sp.csr_matrix:
        """items x items: how often item j followed item i within ``window`` of a user's next
        interactions (by time, else by row order), the d-th next one weighing ``decay ** (d-1)``.
        Each (user, item) pair of rows counts, repeats too: a sequence is what was used next."""
        time = self.time if self.time is not None else np.arange(len(self), dtype=np.float64)
        order = np.lexsort((np.arange(len(self)), time, self.user))
        user, item = self.user[order], self.item[order]
        sources, targets, weights = [], [], []
        for step in range(1, min(window, len(order) - 1) + 1):
            same = user[step:] == user[:-step]
            sources.append(item[:-step][same])
            targets.append(item[step:][same])
            weights.append(np.full(int(same.sum()), decay ** (step - 1), dtype=np.float32))
        matrix = sp.csr_matrix(
            (
                np.concatenate(weights) if weights else np.zeros(0, np.float32),
                (
                    np.concatenate(sources) if sources else np.zeros(0, np.int64),
                    np.concatenate(targets) if targets else np.zeros(0, np.int64),
                ),
            ),
            shape=(self.n_items, self.n_items),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        return matrix

    def windows(
        self, past: int, past_half_life: float, future: int, future_half_life: float
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(sources, targets), one row per interaction that has an earlier one of its user: the
        user's ``past`` interactions before it (the d-th before weighing 0.5 ** ((d-1) /
        ``past_half_life``)) and the ``future`` from it on (the d-th after 0.5 ** (d /
        ``future_half_life``)), by time, else by row order; both rows x items. SLIT's data
        (Choi et al., "Session-aware Linear Item-Item Models", WWW 2021)."""
        time = self.time if self.time is not None else np.arange(len(self), dtype=np.float64)
        order = np.lexsort((np.arange(len(self)), time, self.user))
        user, item = self.user[order], self.item[order]
        n = len(order)

        def part(steps: range, weight: float) -> sp.csr_matrix:
            rows, columns, values = [], [], []
            for step in steps:
                if abs(step) >= n:
                    continue
                # row: the interaction at position t; column: the item at t + step
                at = np.arange(max(0, -step), n - max(0, step))
                same = user[at] == user[at + step]
                rows.append(at[same])
                columns.append(item[at + step][same])
                values.append(np.full(int(same.sum()), weight ** (abs(step)), np.float32))
            return sp.csr_matrix(
                (
                    np.concatenate(values) if values else np.zeros(0, np.float32),
                    (
                        np.concatenate(rows) if rows else np.zeros(0, np.int64),
                        np.concatenate(columns) if columns else np.zeros(0, np.int64),
                    ),
                ),
                shape=(n, self.n_items),
                dtype=np.float32,
            )

        # 0.5 ** ((d-1)/h) for the d-th before = (0.5 ** (1/h)) ** d / 0.5 ** (1/h)
        back = 0.5 ** (1.0 / past_half_life)
        sources = part(range(-1, -past - 1, -1), back) * np.float32(1.0 / back)
        targets = part(range(future), 0.5 ** (1.0 / future_half_life))
        has_past = np.diff(sources.indptr) > 0
        return sp.csr_matrix(sources[has_past]), sp.csr_matrix(targets[has_past])

    def subset(self, rows: np.ndarray) -> Interactions:
        """These rows, on the same index."""
        return Interactions(
            self.users,
            self.items,
            self.user[rows],
            self.item[rows],
            self.weight[rows],
            None if self.time is None else self.time[rows],
        )


def _max_duplicates(matrix: sp.coo_matrix) -> sp.csr_matrix:
    order = np.lexsort((-matrix.data, matrix.col, matrix.row))
    row, col, data = matrix.row[order], matrix.col[order], matrix.data[order]
    first = np.r_[True, (np.diff(row) != 0) | (np.diff(col) != 0)]
    return sp.csr_matrix((data[first], (row[first], col[first])), shape=matrix.shape)


@dataclass(frozen=True)
class ItemMetadata:
    """Text columns describing each item of an index (empty string: unknown)."""

    columns: dict[str, list[str]]

    def texts(self) -> list[str]:
        """One text per item: every column's value, ``|``-separated (the content model's
        tokens are the words and ``|``-separated tags of it)."""
        values = list(self.columns.values())
        if not values:
            return []
        return [" | ".join(parts) for parts in zip(*values, strict=True)]


def ids(values: pd.Series) -> np.ndarray:
    """Ids as an int64 array when they are whole numbers, else as strings."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64)
        if np.all(np.mod(numbers, 1) == 0):
            return numbers.astype(np.int64)
    return values.astype(str).to_numpy(dtype=str)


def _columns_present(df: pd.DataFrame, settings: dict[str, str | None], where: str) -> None:
    for setting, column in settings.items():
        if column and column not in df.columns:
            raise DataValidationError(
                f"recommendation.{setting} {column!r} is not a column of {where} (columns: "
                f"{', '.join(map(str, df.columns[:20]))}). Fix recommendation.{setting} in "
                "configs/config.yaml or add the column."
            )


def _weights(df: pd.DataFrame, column: str | None) -> np.ndarray:
    if not column:
        return np.ones(len(df), dtype=np.float32)
    numbers = pd.to_numeric(df[column], errors="coerce")
    bad = numbers.isna() & df[column].notna()
    if bad.any():
        example = df.loc[bad, column].iloc[0]
        raise DataValidationError(
            f"Weight column {column!r} has {int(bad.sum())} non-numeric values (e.g. "
            f"{example!r}): weights must be numbers (rating, count, duration). Clean the column "
            "or unset recommendation.weight_column to count every interaction as 1."
        )
    if numbers.isna().all():
        raise DataValidationError(
            f"Weight column {column!r} is empty. Fill it or unset recommendation.weight_column."
        )
    # A missing weight is an interaction of unknown strength: the median one.
    return numbers.fillna(numbers.median()).to_numpy(dtype=np.float32)


def _times(df: pd.DataFrame, column: str | None) -> np.ndarray | None:
    if not column:
        return None
    values = df[column]
    if pd.api.types.is_numeric_dtype(values.dtype):
        seconds = values.to_numpy(dtype=np.float64)
        if np.nanmedian(np.abs(seconds)) > MILLISECONDS:
            seconds = seconds / 1000.0
    else:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
        bad = parsed.isna() & values.notna()
        if bad.any():
            example = values[bad].iloc[0]
            raise DataValidationError(
                f"Time column {column!r} has {int(bad.sum())} values that are not dates or "
                f"times (e.g. {example!r}). Use ISO 8601 times or seconds since the epoch, or "
                "unset recommendation.time_column (and use split: random)."
            )
        seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)
    if np.isnan(seconds).any():
        raise DataValidationError(
            f"Time column {column!r} is empty in {int(np.isnan(seconds).sum())} rows: every "
            "interaction needs a time for a time split. Fill them or drop those rows."
        )
    return seconds


def read_interactions(
    df: pd.DataFrame, config: Config, items: pd.DataFrame | None = None
) -> tuple[Interactions, ItemMetadata]:
    """Check ``df`` against ``config.recommendation`` and index it (and its item metadata).

    Rows without a user or item id are dropped (logged); rows weighing less than
    ``min_weight`` are not positives and are dropped too.
    """
    rec = section(config)
    if df.empty:
        raise DataValidationError(
            "The interaction data has no rows. Point data.path at a file of (user, item) rows."
        )
    _columns_present(
        df,
        {
            "user_column": rec.user_column,
            "item_column": rec.item_column,
            "time_column": rec.time_column,
            "weight_column": rec.weight_column,
        },
        "the interaction data",
    )
    if items is None:
        _columns_present(
            df, {f"item_columns[{i}]": c for i, c in enumerate(rec.item_columns)}, "the data"
        )
    for setting in ("user_column", "item_column"):
        column = getattr(rec, setting)
        if df[column].isna().all():
            raise DataValidationError(
                f"The {setting.split('_')[0]} id column {column!r} is empty in every row. "
                f"Point recommendation.{setting} at the column holding the ids."
            )
    missing = df[rec.user_column].isna() | df[rec.item_column].isna()
    if missing.any():
        log.warning(
            "Dropped %d interaction rows without a %s or %s.",
            int(missing.sum()),
            rec.user_column,
            rec.item_column,
        )
        df = df.loc[~missing]
    weight = _weights(df, rec.weight_column)
    time = _times(df, rec.time_column)
    if rec.min_weight is not None:
        positive = weight >= rec.min_weight
        if not positive.any():
            raise DataValidationError(
                f"No interaction weighs at least recommendation.min_weight {rec.min_weight} in "
                f"{rec.weight_column!r} (the largest is {float(weight.max())}). Lower min_weight."
            )
        df, weight = df.loc[positive], weight[positive]
        time = None if time is None else time[positive]
    if len(df) < MIN_INTERACTIONS:
        raise DataValidationError(
            f"Only {len(df)} usable interactions: at least {MIN_INTERACTIONS} are needed to "
            "train and test a recommender."
        )
    user_ids, item_ids = ids(df[rec.user_column]), ids(df[rec.item_column])
    metadata_ids, metadata = _metadata_table(df, rec, items)
    users, user_codes = np.unique(user_ids, return_inverse=True)
    if metadata_ids is not None and metadata_ids.dtype.kind != item_ids.dtype.kind:
        item_ids, metadata_ids = item_ids.astype(str), metadata_ids.astype(str)
    known = item_ids if metadata_ids is None else np.concatenate([item_ids, metadata_ids])
    item_index = np.unique(known)
    item_codes = np.searchsorted(item_index, item_ids)
    interactions = Interactions(
        users=users,
        items=item_index,
        user=user_codes.astype(np.int64),
        item=item_codes.astype(np.int64),
        weight=weight,
        time=time,
    )
    return interactions, _aligned(item_index, metadata_ids, metadata)


def _metadata_table(
    df: pd.DataFrame, rec: RecommendationConfig, items: pd.DataFrame | None
) -> tuple[np.ndarray | None, pd.DataFrame]:
    """Item ids and their metadata columns (first value per item), if any are configured."""
    if items is None:
        columns = list(rec.item_columns)
        source = df
    else:
        _columns_present(items, {"item_column": rec.item_column}, f"{rec.items_path}")
        columns = list(rec.item_columns) or [c for c in items.columns if c != rec.item_column]
        _columns_present(items, {f"item_columns[{i}]": c for i, c in enumerate(columns)}, "items")
        source = items.loc[items[rec.item_column].notna()]
    if not columns:
        return None, pd.DataFrame()
    table = source[[rec.item_column, *columns]].groupby(rec.item_column, sort=True).first()
    return ids(table.index.to_series()), table


def _aligned(
    index: np.ndarray, metadata_ids: np.ndarray | None, table: pd.DataFrame
) -> ItemMetadata:
    if metadata_ids is None:
        return ItemMetadata({})
    positions = np.searchsorted(index, metadata_ids)
    columns = {}
    for column in table.columns:
        values = [""] * len(index)
        for position, value in zip(positions, table[column].tolist(), strict=True):
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                values[position] = str(value)
        columns[str(column)] = values
    return ItemMetadata(columns)


def section(config: Config) -> RecommendationConfig:
    if config.recommendation is None:
        raise ConfigError(
            "A recommendation service needs a `recommendation` section in configs/config.yaml."
        )
    return config.recommendation


@dataclass(frozen=True)
class Split:
    """Row numbers of the training, validation and test interactions."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split(data: Interactions, config: Config) -> Split:
    """Test rows, then validation rows out of the rest, by ``recommendation.split``:

    - ``time``: a global cut, the latest ``test_size`` of the interactions are the test;
    - ``user_last``: each user's latest interactions (``test_size`` of theirs, at least one for a
      user with three or more);
    - ``random``: a seeded share of the rows.
    """
    rec = section(config)
    if rec.split == "time" and data.time is None:
        raise ConfigError(
            "recommendation.split time needs recommendation.time_column: set it, or use "
            "split: random (or user_last, which then takes each user's last rows in file order)."
        )
    rows = np.arange(len(data))
    rest, test = _cut(data, rows, rec.split, rec.test_size, config.seed)
    share = rec.validation_size / (1.0 - rec.test_size)
    train, validation = _cut(data, rest, rec.split, share, config.seed + 1)
    for name, part in (("training", train), ("validation", validation), ("test", test)):
        if not len(part):
            raise DataValidationError(
                f"The {rec.split} split leaves no {name} interactions: the data has too few "
                "rows or times; change recommendation.test_size / validation_size or split."
            )
    return Split(train, validation, test)


def _cut(
    data: Interactions, rows: np.ndarray, strategy: str, share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` into (kept, held out): the held-out ``share`` by ``strategy``."""
    if strategy == "random":
        held = np.random.default_rng(seed).random(len(rows)) < share
        return rows[~held], rows[held]
    time = data.time[rows] if data.time is not None else rows.astype(np.float64)
    if strategy == "time":
        # Stable: rows of one time keep their file order, so the cut is the same every run.
        order = rows[np.argsort(time, kind="stable")]
        n_held = int(round(len(rows) * share))
        return np.sort(order[: len(rows) - n_held]), np.sort(order[len(rows) - n_held :])
    users = data.user[rows]
    order = np.lexsort((time, users))
    users_sorted = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users_sorted)) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    held_per_user = np.where(counts >= 3, np.maximum(1, np.round(counts * share)), 0).astype(int)
    position = np.arange(len(order)) - np.repeat(starts, counts)
    held = position >= np.repeat(counts - held_per_user, counts)
    return np.sort(rows[order[~held]]), np.sort(rows[order[held]])


def relevant(fit: Interactions, held_out: Interactions) -> tuple[np.ndarray, sp.csr_matrix]:
    """The users to evaluate and their relevant items: users with both fitted and held-out
    interactions; relevant are their held-out items they had not already used in ``fit``
    (a recommender excludes what a user has seen, so those could never be hit)."""
    seen = fit.matrix > 0
    truth = (held_out.matrix > 0).astype(np.float32) - seen.multiply(held_out.matrix > 0)
    truth = sp.csr_matrix(truth)
    truth.eliminate_zeros()
    has_history = np.asarray(seen.sum(axis=1)).ravel() > 0
    has_truth = np.diff(truth.indptr) > 0
    users = np.flatnonzero(has_history & has_truth)
    return users, truth[users]


TOKEN = re.compile(r"\w+")


def tokens(text: Any) -> set[str]:
    """The filter tokens of a metadata value: its lower-cased words and ``|``-separated parts."""
    lowered = str(text).lower()
    return {*TOKEN.findall(lowered), *(part.strip() for part in lowered.split("|") if part.strip())}
