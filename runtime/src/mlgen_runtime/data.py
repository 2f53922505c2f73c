"""Training *data*: loading a table, checking it fits the config, and splitting it.

Every check raises :class:`DataValidationError` naming the column and the problem, so a user
can fix the file or the config without reading a traceback.

A table is a CSV or Parquet file, or a folder of Parquet partitions (as ``score --data``
takes). A folder larger than memory trains on a sample: with ``data.max_rows`` set and more
rows than that, :func:`load_training_data` keeps a seeded simple random sample of exactly
``max_rows`` rows, reading one partition at a time (in this process, or on the Dask cluster
with ``engine.name: dask``, where only the sampled rows travel back). How many rows each
partition gives is drawn from the multivariate hypergeometric distribution of the partitions'
row counts (read from the Parquet footers, not the rows), so every set of ``max_rows`` rows is
equally likely whatever the partition sizes; the same seed and files give the same sample on
either engine.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from .config import Config
from .errors import DataValidationError
from .targets import NO, YES, TargetRule

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

# Besides pandas' own ("", "NA", "NULL", "NaN", ...): the NULL of MySQL and Hive dumps.
# mlgen's profile (generator/mlgen/profile.py) reads CSVs with the same markers.
MISSING_MARKERS = ["\\N"]
MIN_ROWS = 30
# A stratified three-way split needs a few rows of every class in each part.
MIN_ROWS_PER_CLASS = 5


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def load_data(
    path: str | Path, max_rows: int | None = None, seed: int = 0, on_cluster: Config | None = None
) -> pd.DataFrame:
    """Read a CSV or Parquet file, or a folder of Parquet partitions, into a DataFrame; a
    folder with more than ``max_rows`` rows gives a seeded sample of that many (module doc),
    its partitions read on ``on_cluster``'s Dask cluster when given."""
    path = Path(path)
    if path.is_dir():
        return _read_partitions(path, max_rows, seed, on_cluster)
    if not path.is_file():
        raise DataValidationError(
            f"Data file {path} does not exist. Set data.path in configs/local.yaml or pass --data."
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, na_values=MISSING_MARKERS)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise DataValidationError(
        f"{path}: unsupported file type {suffix!r}; use .csv or .parquet, or a folder of "
        ".parquet partitions."
    )


def load_training_data(config: Config, path: str | Path | None = None) -> pd.DataFrame:
    """The configured data (or ``path``) as training, evaluation and the gate read it: whole,
    or the seeded sample of ``data.max_rows`` rows of a partitioned folder (module doc), with
    the target derived by ``data.positive_when`` when it is set (targets.py)."""
    df = load_data(
        config.resolve(path or config.data.path),
        config.data.max_rows,
        config.seed,
        config if config.engine.name == "dask" else None,
    )
    return derive_target(df, config)


def data_rows(path: str | Path) -> int | None:
    """The rows of a Parquet file or folder, from the footers (no rows read); None for CSV."""
    path = Path(path)
    if path.is_dir():
        return sum(check_columns(partitions(path), []))
    if path.suffix.lower() in (".parquet", ".pq") and path.is_file():
        return check_columns([path], [])[0]
    return None


def partitions(folder: Path) -> list[Path]:
    """The Parquet files under ``folder`` (recursively), in a stable order."""
    if folder.is_file() and folder.suffix == ".parquet":
        return [folder]
    if not folder.is_dir():
        raise FileNotFoundError(
            f"No Parquet data at {folder}: pass a folder of .parquet files (or one file) to --data."
        )
    files = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if not files:
        raise DataValidationError(
            f"{folder} holds no .parquet files: write the rows as Parquet partitions "
            "(e.g. pandas' to_parquet, one file per partition)."
        )
    return files


def check_columns(
    files: Sequence[Path], columns: Sequence[str], why: str = "the model needs"
) -> list[int]:
    """Every partition has every needed column; each one's row count (both read from the
    files' footers, not their rows)."""
    import pyarrow.parquet as pq

    counts = []
    for path in files:
        try:
            footer = pq.read_metadata(path)
            names = set(footer.schema.to_arrow_schema().names)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataValidationError(f"{path} is not a readable Parquet file: {exc}") from exc
        missing = [name for name in columns if name not in names]
        if missing:
            raise DataValidationError(
                f"{path} lacks the column(s) {', '.join(missing)} {why}: every "
                f"partition must carry {', '.join(columns)}."
            )
        counts.append(footer.num_rows)
    return counts


def read_partition(path: str, rows: int | None, seed: int) -> pd.DataFrame:
    """One partition, or ``rows`` of its rows drawn without replacement (in file order)."""
    frame = pd.read_parquet(path)
    if rows is None or rows >= len(frame):
        return frame
    keep = np.random.default_rng(seed).choice(len(frame), size=rows, replace=False)
    return frame.iloc[np.sort(keep)]


def _read_partitions(
    folder: Path, max_rows: int | None, seed: int, on_cluster: Config | None = None
) -> pd.DataFrame:
    import pyarrow.parquet as pq

    files = partitions(folder)
    # One schema: a partition with other columns would silently add NaN-filled ones.
    check_columns(files[:1], [])  # a first file that is not Parquet is named, as any other
    columns = pq.read_schema(files[0]).names
    counts = check_columns(files, columns, why=f"that {files[0].name} has")
    total = sum(counts)
    if max_rows is None or total <= max_rows:
        takes: list[int | None] = [None] * len(files)
    else:
        rng = np.random.default_rng(np.random.SeedSequence([seed, total]))
        takes = [int(n) for n in rng.multivariate_hypergeometric(counts, max_rows)]
        log.info(
            "%s: %s rows in %d partitions; training on a seeded sample of %s (data.max_rows)",
            folder,
            f"{total:,}",
            len(files),
            f"{max_rows:,}",
        )
    seeds = [
        int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(len(files))
    ]
    jobs = [(str(f), n, s) for f, n, s in zip(files, takes, seeds, strict=True) if n != 0]
    if on_cluster is None:
        frames = [read_partition(*job) for job in jobs]
    else:
        from .engine import dask_client

        with dask_client(on_cluster) as client:
            futures = client.map(read_partition, *zip(*jobs, strict=True), pure=False)
            frames = client.gather(futures)
    return pd.concat(frames, ignore_index=True)[columns]


def file_hash(path: str | Path) -> str:
    """The sha256 of a data file, recorded with every run so results can be traced to data;
    of a folder of partitions, over each file's relative name and sha256."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for part in partitions(path):
            digest.update(f"{part.relative_to(path).as_posix()}\0{file_hash(part)}\n".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validate(df: pd.DataFrame, config: Config) -> None:
    """Raise :class:`DataValidationError` if ``df`` cannot train the configured model."""
    target = config.data.target
    if target not in df.columns:
        raise DataValidationError(
            f"Target column {target!r} is missing from the data "
            f"(columns: {', '.join(map(str, df.columns[:20]))})."
        )
    named = {
        "id_column": config.data.id_column,
        "time_column": config.data.time_column,
        "group_column": config.data.group_column,
    }
    for setting, column in named.items():
        if column and column not in df.columns:
            raise DataValidationError(f"data.{setting} {column!r} is not a column of the data.")
    for spec in config.features:
        if spec.name not in df.columns:
            raise DataValidationError(
                f"Configured feature column {spec.name!r} is not in the data. Remove it from "
                "features in the config or add the column."
            )
        if spec.type == "numeric" and not _is_numeric_like(df[spec.name]):
            raise DataValidationError(
                f"Feature column {spec.name!r} is configured as numeric but holds non-numeric "
                f"values (e.g. {_example(df[spec.name])!r}). Fix the data or set its type."
            )
    y = df[target]
    if y.isna().all():
        raise DataValidationError(f"Target column {target!r} is empty (all values are null).")
    labelled = y.dropna()
    if len(labelled) < MIN_ROWS:
        raise DataValidationError(
            f"Only {len(labelled)} rows have a value in target column {target!r}; "
            f"at least {MIN_ROWS} are needed to train and test a model."
        )
    if config.task == "regression":
        if not _is_numeric_like(y):
            raise DataValidationError(
                f"Target column {target!r} must be numeric for regression "
                f"(found e.g. {_example(y)!r})."
            )
        return
    counts = labelled.value_counts()
    if len(counts) < 2:
        asked = target_question(config)
        if asked:
            raise DataValidationError(
                f"data.positive_when asks whether {asked}, and the answer is "
                f"{_label(counts.index[0])!r} for every labelled row: a classifier needs both "
                "answers. Fix positive_when (the operator or the number)."
            )
        raise DataValidationError(
            f"Target column {target!r} has a single class ({_label(counts.index[0])!r}); "
            "classification needs at least two."
        )
    if config.task == "binary_classification" and len(counts) > 2:
        raise DataValidationError(
            f"Target column {target!r} has {len(counts)} classes but the task is "
            "binary_classification; set task: multiclass_classification."
        )
    rare = counts[counts < MIN_ROWS_PER_CLASS]
    if len(rare):
        asked = target_question(config)
        fix = (
            f"Fix data.positive_when ({asked} gives too few of one answer)."
            if asked
            else "Merge or drop rare classes."
        )
        raise DataValidationError(
            f"Target column {target!r}: class {_label(rare.index[0])!r} has only "
            f"{rare.iloc[0]} rows; each class needs at least {MIN_ROWS_PER_CLASS}. {fix}"
        )


def split(df: pd.DataFrame, config: Config) -> Splits:
    """Split labelled rows into train/validation/test as ``split.strategy`` says, seeded."""
    df = df[df[config.data.target].notna()].reset_index(drop=True)
    strategy = config.split.strategy
    test_size, validation_size, seed = (
        config.split.test_size,
        config.split.validation_size,
        config.seed,
    )
    if strategy == "time":
        return _time_split(df, config.data.time_column, test_size, validation_size)
    if strategy == "group":
        return _group_split(df, config.data.group_column, test_size, validation_size, seed)
    if strategy == "stratified" and not config.is_classification:
        raise DataValidationError(
            "split.strategy 'stratified' needs a classification task; use 'random'."
        )
    stratify = config.data.target if strategy == "stratified" else None
    rest, test = _shuffle_split(df, test_size, seed, stratify)
    train, validation = _shuffle_split(rest, validation_size, seed, stratify)
    return Splits(train, validation, test)


def _shuffle_split(
    df: pd.DataFrame, size: float, seed: int, stratify: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    first, second = train_test_split(
        df, test_size=size, random_state=seed, stratify=df[stratify] if stratify else None
    )
    return first.reset_index(drop=True), second.reset_index(drop=True)


def _time_split(
    df: pd.DataFrame, column: str | None, test_size: float, validation_size: float
) -> Splits:
    if not column:
        raise DataValidationError("split.strategy 'time' needs data.time_column.")
    times = pd.to_datetime(df[column], errors="coerce", format="mixed")
    if times.isna().any():
        raise DataValidationError(
            f"Time column {column!r} has {int(times.isna().sum())} missing or unparseable "
            f"values (e.g. {_example(df[column][times.isna()])!r}); a time split needs them all."
        )
    # A stable sort keeps ties in file order, so the split is the same on every run.
    ordered = df.iloc[np.argsort(times.to_numpy(), kind="stable")].reset_index(drop=True)
    n_test = max(1, round(len(ordered) * test_size))
    rest = ordered.iloc[: len(ordered) - n_test]
    n_validation = max(1, round(len(rest) * validation_size))
    return Splits(
        train=rest.iloc[: len(rest) - n_validation].reset_index(drop=True),
        validation=rest.iloc[len(rest) - n_validation :].reset_index(drop=True),
        test=ordered.iloc[len(ordered) - n_test :].reset_index(drop=True),
    )


def _group_split(
    df: pd.DataFrame, column: str | None, test_size: float, validation_size: float, seed: int
) -> Splits:
    if not column:
        raise DataValidationError("split.strategy 'group' needs data.group_column.")
    if df[column].isna().any():
        raise DataValidationError(
            f"Group column {column!r} has missing values; every row needs a group."
        )
    if df[column].nunique() < 3:
        raise DataValidationError(
            f"Group column {column!r} has fewer than 3 groups; a grouped split needs more."
        )

    def cut(frame: pd.DataFrame, size: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        splitter = GroupShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        keep, held = next(splitter.split(frame, groups=frame[column]))
        return frame.iloc[keep].reset_index(drop=True), frame.iloc[held].reset_index(drop=True)

    rest, test = cut(df, test_size)
    train, validation = cut(rest, validation_size)
    return Splits(train, validation, test)


def _is_numeric_like(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return True
    values = series.dropna()
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def _example(series: pd.Series) -> object:
    values = series.dropna()
    numeric = pd.to_numeric(values, errors="coerce")
    odd = values[numeric.isna()]
    return (odd if len(odd) else values).iloc[0] if len(values) else None


def _label(value: object) -> object:
    # Plain Python values, so messages read "class 1", not "class np.int64(1)".
    return value.item() if isinstance(value, np.generic) else value


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


def target_question(config: Config) -> str | None:
    """``"affairs > 0"``: the question a derived target asks (None without a rule)."""
    rule = rule_of(config)
    return f"{config.data.target} {rule}" if rule else None
