"""An *investigation* explains why a model got worse: ``python -m <package> investigate``.

It reads what the model met in production (the logged predictions, inputs and fed-back
outcomes of the service's feedback store, ``--since 30d``) or a data file (``--data
recent.csv``, labelled or not), and asks the service's kind for the *sections* of the report
(:meth:`~mlgen_runtime.kinds.ProblemKind.investigate`): the tabular kind's are performance over
time, where it dropped, covariate drift, label shift, concept drift, performance without labels,
data quality, fairness and a recommendation with a backtest (monitoring/tabular_investigation.py).
This module owns what every kind shares: the observed rows and their time windows, the
multiple-testing budget, and the report (``investigation.json``, a self-contained
``investigation.html`` with the plots, and a summary on the terminal).

No false alarms by design: every alarm is a test, and the whole report raises a false alarm
with probability at most ``investigate.alpha`` (default 1%). The budget is split equally over
the sections that can alarm (Bonferroni), and each section splits its share over its own tests
by Holm's step-down procedure. An alarm also needs an effect at least the size of a floor
(``investigate.*``): at a million rows every test is significant, and a 0.1% change is not news.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import DataValidationError, UsageError

if TYPE_CHECKING:
    from ..config import Config

JSON_FILE = "investigation.json"
HTML_FILE = "investigation.html"
# The time of a logged prediction, a column of the frame read from the feedback store.
LOGGED_AT = "__logged_at__"
SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Observed:
    """The rows under investigation, oldest first: raw feature columns (and the target when
    ``labelled``), with the time of each row when it is known."""

    frame: pd.DataFrame
    times: pd.Series | None
    labelled: bool
    source: str
    # The model version that served the latest logged row (None for a data file).
    served_version: str | None = None

    def windows(self, count: int, min_rows: int) -> list[Window]:
        """Consecutive windows of equal row counts (as many as ``count``, each at least
        ``min_rows`` rows, at least one): equal counts give every window the same power."""
        n = len(self.frame)
        k = max(1, min(count, n // max(min_rows, 1)))
        result = []
        for index, rows in enumerate(np.array_split(np.arange(n), k)):
            if self.times is not None:
                start, end = str(self.times.iloc[rows[0]]), str(self.times.iloc[rows[-1]])
            else:
                start, end = f"row {rows[0]}", f"row {rows[-1]}"
            result.append(Window(index, int(rows[0]), int(rows[-1]) + 1, start, end))
        return result

    def when(self, row: int) -> str:
        """The time of row ``row`` (its position when times are unknown)."""
        return str(self.times.iloc[row]) if self.times is not None else f"row {row}"


@dataclass(frozen=True)
class Window:
    index: int
    start: int
    stop: int
    first: str
    last: str

    @property
    def rows(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def label(self) -> str:
        return f"{self.first} .. {self.last}"


@dataclass
class Section:
    """One part of the report: whether it raised an alarm, what a person reads, the numbers."""

    name: str
    title: str
    found: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    # (caption, PNG as base64): shown in the HTML, left out of the JSON.
    plots: list[tuple[str, str]] = field(default_factory=list)
    # Whether the section tests anything (and so takes a share of the false-alarm budget).
    tests: bool = True
    # Data files the section offers (file name -> rows), written beside the report.
    files: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class Investigation:
    """The whole report."""

    source: str
    rows: int
    labelled: bool
    model: str
    alpha: float
    multiple_testing: str
    sections: list[Section]

    @property
    def findings(self) -> list[Section]:
        return [s for s in self.sections if s.found]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "labelled": self.labelled,
            "model": self.model,
            "alpha": self.alpha,
            "multiple_testing": self.multiple_testing,
            "findings": [s.name for s in self.findings],
            "sections": {
                s.name: {"title": s.title, "found": s.found, "summary": s.summary, **s.details}
                for s in self.sections
            },
        }

    def summary(self) -> str:
        lines = [
            f"Investigation of {self.model} on {self.rows} rows of {self.source} "
            f"({'labelled' if self.labelled else 'unlabelled'}); false-alarm budget "
            f"{self.alpha:.0%} for the whole report.",
        ]
        for s in self.sections:
            mark = "!!" if s.found else "ok" if s.tests else "--"
            lines.append(f"  [{mark}] {s.title}: {s.summary}")
        verdict = (
            "Findings: " + ", ".join(s.title.lower() for s in self.findings)
            if self.findings
            else "Nothing found: no section raised an alarm."
        )
        return "\n".join([*lines, verdict])


def section_alpha(alpha: float, sections: int) -> float:
    """One section's share of the report's false-alarm budget (Bonferroni over sections)."""
    return alpha / max(sections, 1)


def holm(p_values: Sequence[float], alpha: float) -> np.ndarray:
    """Which of ``p_values`` Holm's step-down procedure rejects at family-wise level ``alpha``."""
    p = np.asarray(p_values, dtype=float)
    rejected = np.zeros(len(p), dtype=bool)
    for rank, index in enumerate(np.argsort(p, kind="stable")):
        if not p[index] <= alpha / (len(p) - rank):
            break
        rejected[index] = True
    return rejected


def figure_png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG (and closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- what is read


def parse_since(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``... as a duration; anything else is a clear error."""
    match = SINCE.match(text or "")
    if not match:
        raise UsageError(
            f"--since {text!r} is not a duration: write a number and a unit, e.g. 30d, 12h, "
            "90m or 2w."
        )
    return timedelta(**{UNITS[match.group(2)]: float(match.group(1))})


def from_file(config: Config, path: str | Path) -> Observed:
    """A data file's rows, ordered by ``data.time_column`` when the file has it."""
    from ..data import derive_target, load_data

    frame = derive_target(load_data(config.resolve(path)), config)
    if frame.empty:
        raise DataValidationError(f"{path} has no rows: nothing to investigate.")
    times = None
    column = config.data.time_column
    if column and column in frame.columns:
        parsed = pd.to_datetime(frame[column], errors="coerce", utc=True, format="mixed")
        if parsed.isna().all():
            raise DataValidationError(
                f"Time column {column!r} of {path} holds no readable time; fix data.time_column "
                "or the column."
            )
        order = np.argsort(parsed.to_numpy(), kind="stable")
        frame = frame.iloc[order].reset_index(drop=True)
        times = parsed.iloc[order].reset_index(drop=True)
    labelled = bool(config.data.target) and config.data.target in frame.columns
    if labelled and frame[config.data.target].isna().all():
        labelled = False
    if labelled:
        # Rows whose outcome is unknown yet are left out of every labelled measure.
        known = frame[config.data.target].notna().to_numpy()
        if not known.all():
            frame, times = (
                frame[known].reset_index(drop=True),
                (None if times is None else times[known].reset_index(drop=True)),
            )
    return Observed(frame, times, labelled, str(path))


def from_log(config: Config, since: str, log_path: str | Path | None = None) -> Observed:
    """The service's logged predictions of the last ``since`` with their inputs, and the
    outcomes fed back for them (``POST /feedback``) where there are any."""
    from .database import describe, is_url
    from .performance import FEEDBACK_DB_ENV, read_log, served_version

    duration = parse_since(since)
    source = log_path or feedback_db_path(config)
    if source is None or not (is_url(source) or Path(source).is_file()):
        raise UsageError(
            "No prediction log to investigate: the service keeps its predictions in memory "
            f"unless serving.feedback_db (or ${FEEDBACK_DB_ENV}) names a file. Set it and "
            "restart the service, or investigate a data file with --data."
        )
    after = (datetime.now(UTC) - duration).timestamp()
    frame = read_log(source, after, config.data.target)
    path = describe(source)
    if frame.empty:
        raise UsageError(
            f"The prediction log {path} holds no prediction of the last {since}: widen --since."
        )
    times = pd.to_datetime(frame.pop(LOGGED_AT), unit="s", utc=True)
    target = config.data.target
    labelled = target in frame.columns and frame[target].notna().any()
    return Observed(
        frame,
        times,
        bool(labelled),
        f"the prediction log {path} (last {since})",
        served_version(source, after),
    )


def feedback_db_path(config: Config) -> str | None:
    """The feedback store's file or PostgreSQL URL: ``$MLSERVICE_FEEDBACK_DB``, else
    ``serving.feedback_db``."""
    import os

    from .database import located
    from .performance import FEEDBACK_DB_ENV

    configured = os.environ.get(FEEDBACK_DB_ENV) or config.serving.feedback_db
    return located(configured, config) if configured else None


# --------------------------------------------------------------------------- the report


def write(investigation: Investigation, out_dir: Path) -> tuple[Path, Path]:
    """``investigation.json`` and ``investigation.html`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_FILE
    json_path.write_text(json.dumps(investigation.to_dict(), indent=2, default=_plain))
    html_path = out_dir / HTML_FILE
    html_path.write_text(_html(investigation))
    for s in investigation.sections:
        for name, frame in s.files.items():
            write_csv(frame, out_dir / name)
    return json_path, html_path


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame.to_csv(path, index=False)``, byte for byte; by pyarrow when every column holds
    text or integers and no value needs quoting (the recommended retrain's 500,000 rows: ~0.15 s
    of CPU against ~2.7 s by pandas), by pandas otherwise."""
    import csv

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    plain = len(frame.columns) > 0 and all(
        pd.api.types.is_string_dtype(dtype) or pd.api.types.is_integer_dtype(dtype)
        for dtype in frame.dtypes
    )
    if plain:
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            plain = all(
                pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
                for t in table.schema.types
            )
            if plain:
                body = io.BytesIO()
                # Arrow refuses (ArrowInvalid) a value with a comma, quote or line break.
                pa_csv.write_csv(
                    table, body, pa_csv.WriteOptions(include_header=False, quoting_style="none")
                )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            plain = False
    if not plain:
        frame.to_csv(path, index=False)
        return
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([str(c) for c in frame.columns])
    with open(path, "wb") as f:
        f.write(header.getvalue().encode())
        f.write(body.getvalue())


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _html(investigation: Investigation) -> str:
    parts = []
    for s in investigation.sections:
        figures = "".join(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{png}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            for caption, png in s.plots
        )
        tables = "".join(_table(name, rows) for name, rows in s.details.items() if _is_table(rows))
        state = "found" if s.found else "ok"
        parts.append(
            f"<section class='{state}'><h2>{html.escape(s.title)}</h2>"
            f"<p><strong>{html.escape(s.summary)}</strong></p>{figures}{tables}</section>"
        )
    findings = ", ".join(html.escape(s.title) for s in investigation.findings) or "nothing"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Investigation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 8px 0; font-size: 0.9em; }}
td, th {{ padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: left; }}
section {{ border-left: 4px solid #8c8; padding-left: 12px; margin: 18px 0; }}
section.found {{ border-color: #d55; }} figure {{ display: inline-block; margin: 6px; }}
</style></head><body>
<h1>Investigation of {html.escape(investigation.model)}</h1>
<p>{investigation.rows} rows of {html.escape(investigation.source)}
({"labelled" if investigation.labelled else "unlabelled"}). Found: <strong>{findings}</strong>.</p>
<p>{html.escape(investigation.multiple_testing)}</p>
{"".join(parts)}
</body></html>
"""


def _is_table(rows: Any) -> bool:
    return isinstance(rows, list) and bool(rows) and all(isinstance(r, dict) for r in rows)


def _table(name: str, rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows[:50]
    )
    return f"<h3>{html.escape(name.replace('_', ' '))}</h3><table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value, default=_plain)[:200]
    return "" if value is None else str(value)
