"""The offline *drift report*: a batch of data compared with the champion's training data.

``python -m <package> drift --data PATH`` runs :func:`run_drift`: it scores every monitored
feature with :func:`~.drift.compare`, writes ``drift.json`` and a self-contained
``drift.html`` (plots inlined as PNG), prints a short table and exits 1 when drift crosses the
configured thresholds, so a scheduled job or CI step can fail on it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .drift import (
    CATEGORICAL,
    MISSING,
    OTHER,
    DriftReport,
    FeatureDrift,
    category_counts,
    compare,
    feature_column,
    monitored_profiles,
    with_derived,
)

JSON_FILE = "drift.json"
HTML_FILE = "drift.html"
# Plots of every drifted feature, then the closest to alerting, up to this many.
MAX_PLOTS = 12
# The settings under `drift:` in configs/config.yaml that compare() takes.
COMPARE_SETTINGS = (
    "numeric_threshold",
    "categorical_threshold",
    "psi_threshold",
    "missing_threshold",
    "alpha",
)


def write_report(
    report: DriftReport, out_dir: Path, reference: dict, current: pd.DataFrame
) -> tuple[Path, Path]:
    """Write the report as JSON and as a self-contained HTML page; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_FILE
    json_path.write_text(json.dumps(report.to_dict(), indent=2))
    profiles = {p["name"]: p for p in monitored_profiles(reference)}
    plots = [(f.name, _plot(f, profiles[f.name], current)) for f in _plotted(report.features)]
    html_path = out_dir / HTML_FILE
    html_path.write_text(_html(report, plots))
    return json_path, html_path


def run_drift(config: Any, data_path: str | Path, out_dir: Path | None = None) -> int:
    """Compare a data file with the champion's reference profile; 1 if it drifted, else 0."""
    from ..data import load_data
    from ..registry import load_champion

    reference = load_champion(config).reference
    # The columns of the model's feature transforms too, for the plots.
    current = with_derived(reference, load_data(config.resolve(data_path)))
    settings = config.drift.model_dump()
    report = compare(
        reference, current, **{k: settings[k] for k in COMPARE_SETTINGS if k in settings}
    )
    if out_dir is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = config.resolve(config.paths.reports) / f"drift-{stamp}"
    json_path, html_path = write_report(report, Path(out_dir), reference, current)
    print(format_table(report))
    print(f"Report: {html_path}\nJSON:   {json_path}")
    return 1 if report.drifted else 0


def format_table(report: DriftReport) -> str:
    """A plain-text summary, one line per feature, drifted ones first."""
    lines = [f"{'feature':<28} {'measure':<15} {'score':>8} {'limit':>8} {'missing':>15}  status"]
    for f in _ranked(report.features):
        score = "-" if f.score is None else f"{f.score:.3f}"
        missing = f"{f.missing_rate_reference:.1%}->{f.missing_rate_current:.1%}"
        status = "DRIFT: " + "; ".join(f.reasons) if f.drifted else "ok"
        lines.append(
            f"{f.name[:28]:<28} {f.measure:<15} {score:>8} {f.threshold:>8.3f} {missing:>15}  "
            f"{status}"
        )
    verdict = (
        f"Drift in {len(report.drifted_features)} of {len(report.features)} features"
        if report.drifted
        else f"No drift in {len(report.features)} features"
    )
    return "\n".join([*lines, f"{verdict} ({report.n_rows} rows)."])


def _ranked(features: list[FeatureDrift]) -> list[FeatureDrift]:
    """Drifted first, then by how close the score is to its threshold."""

    def closeness(f: FeatureDrift) -> float:
        return (f.score or 0.0) / f.threshold if f.threshold > 0 else 0.0

    return sorted(features, key=lambda f: (not f.drifted, -closeness(f)))


def _plotted(features: list[FeatureDrift]) -> list[FeatureDrift]:
    return [f for f in _ranked(features) if f.score is not None or f.drifted][:MAX_PLOTS]


def _plot(feature: FeatureDrift, profile: dict, current: pd.DataFrame) -> str:
    """A reference-versus-current chart of one feature, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = feature_column(current, feature.name)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if profile["kind"] == CATEGORICAL:
        _bars(ax, profile, column)
    else:
        _histograms(ax, profile, column)
    ax.set_title(f"{feature.name}: {feature.measure} {_fmt(feature.score)}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _histograms(ax: Any, profile: dict, column: pd.Series) -> None:
    reference = np.asarray(profile["sample"], dtype=float)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    both = np.concatenate([reference, values])
    bins = np.histogram_bin_edges(both, bins=40)
    ax.hist(reference, bins=bins, density=True, alpha=0.5, label="reference")
    if len(values):
        ax.hist(values, bins=bins, density=True, alpha=0.5, label="current")


def _bars(ax: Any, profile: dict, column: pd.Series) -> None:
    labels = [*profile["categories"], OTHER, MISSING]
    counts = category_counts(profile, column)
    current = counts / counts.sum() if counts.sum() else counts
    positions = np.arange(len(labels))
    ax.bar(positions - 0.2, profile["frequencies"], width=0.4, label="reference")
    ax.bar(positions + 0.2, current, width=0.4, label="current")
    ax.set_xticks(
        positions,
        ["unseen" if c == OTHER else "missing" if c == MISSING else c for c in labels],
        rotation=45,
        ha="right",
        fontsize=7,
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _html_row(f: FeatureDrift) -> str:
    cells = [
        html.escape(f.name),
        f.measure,
        _fmt(f.score),
        f"{f.threshold:.3f}",
        _fmt(f.psi),
        f"{f.missing_rate_reference:.1%} &rarr; {f.missing_rate_current:.1%}",
        str(f.n),
        html.escape("; ".join(f.reasons)) if f.drifted else "ok",
    ]
    row = "".join(f"<td>{cell}</td>" for cell in cells)
    return f"<tr class='{'drift' if f.drifted else 'ok'}'>{row}</tr>"


def _html(report: DriftReport, plots: list[tuple[str, str]]) -> str:
    rows = "\n".join(_html_row(f) for f in _ranked(report.features))
    figures = "\n".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{png}'>"
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in plots
    )
    verdict = (
        f"Drift in {', '.join(html.escape(n) for n in report.drifted_features)}"
        if report.drifted
        else "No drift"
    )
    skipped = (
        f"<p>Not monitored: {html.escape(', '.join(report.skipped))}.</p>" if report.skipped else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; }}
tr.drift td {{ background: #fde8e8; }} figure {{ display: inline-block; margin: 8px; }}
</style></head><body>
<h1>Drift report</h1>
<p><strong>{verdict}</strong> &middot; {report.n_rows} rows &middot; false-alarm target
{report.alpha:.0%} per check</p>
{skipped}
<table><tr><th>feature</th><th>measure</th><th>score</th><th>limit</th><th>PSI</th>
<th>missing</th><th>rows</th><th>status</th></tr>
{rows}
</table>
{figures}
</body></html>
"""
