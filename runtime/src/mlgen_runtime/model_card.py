"""The *model card*: MODEL_CARD.md describing the champion for the people who rely on it.

Written from the champion's metadata on every promotion, so it always matches what is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config


def render_model_card(config: Config, metadata: dict[str, Any]) -> str:
    """The Markdown text of the model card for one trained model."""
    metrics = metadata["metrics"]
    baseline = metadata.get("baseline_metrics", {})
    primary = metadata["primary_metric"]
    rows = metadata.get("rows", {})
    lines = [
        f"# Model card: {config.project.name}",
        "",
        f"Model `{metadata['model_name']}` version {metadata['model_version']} "
        f"(MLflow run `{metadata['run_id']}`), trained {metadata['trained_at']}.",
        "",
        "## Intended use",
        config.project.description or "Not described: set project.description in the config.",
        "",
        f"Task: {metadata['task']}, predicting `{metadata['target']}`"
        + (
            f": whether `{metadata['target']} {metadata['positive_when']}` (yes or no)"
            if metadata.get("positive_when")
            else ""
        )
        + (
            f" (classes: {', '.join(map(str, metadata['classes']))})."
            if metadata["classes"]
            else "."
        ),
        "",
        "## Data",
        f"- File: `{metadata.get('data_path', config.data.path)}` "
        f"(sha256 `{metadata['data_hash'][:16]}...`)",
        f"- Split ({config.split.strategy}, seed {metadata['seed']}): "
        + ", ".join(f"{part} {count} rows" for part, count in rows.items()),
        "",
        "## Features",
        "| name | type | encoding | missing in training |",
        "| --- | --- | --- | --- |",
        *(
            f"| {f['name']} | {f['type']} | {f['encoding']} | {f['missing_rate']:.1%} |"
            for f in metadata["features"] + metadata.get("derived_features", [])
        ),
        "",
        f"## Metrics (test split, 95% bootstrap intervals; primary: {primary})",
        "| metric | model | 95% CI | Dummy baseline |",
        "| --- | --- | --- | --- |",
        *(
            f"| {name} | {metrics[name]:.4f} | "
            f"[{metrics[f'{name}_ci_low']:.4f}, {metrics[f'{name}_ci_high']:.4f}] | "
            f"{baseline.get(name, float('nan')):.4f} |"
            for name in metrics
            if not name.endswith(("_ci_low", "_ci_high"))
        ),
        "",
        *_fairness(metadata.get("fairness")),
        "## Limitations",
        "- Measured on a held-out split of one data file: performance on data from another "
        "period, population or source is unknown until monitored (see `drift`).",
        "- Inputs far outside the training ranges or categories unseen in training get "
        "predictions the model has no evidence for.",
        f"- The model family ({metadata.get('model_family', config.model.family)}) learns "
        "associations, not causes.",
        "",
        "## How to reproduce",
        f"1. Check out commit `{metadata['git_commit']}` and the data file with the hash above.",
        f"2. `python -m {config.project.package} train` (seed {metadata['seed']}): the same "
        "seed and data give the same metrics bit for bit.",
        "",
    ]
    return "\n".join(lines)


def _fairness(report: dict[str, Any] | None) -> list[str]:
    """The fairness section (``fairness.sensitive_attributes``): per group of each attribute
    its size and metrics with 95% intervals, then the differences between groups."""
    if not report:
        return []
    from .fairness import MIN_GROUP

    columns = [
        ("accuracy", "accuracy_ci"),
        ("mean_absolute_error", "ci"),
        ("selection_rate", "selection_rate_ci"),
        ("true_positive_rate", None),
        ("false_positive_rate", None),
    ]
    shown = [(k, ci) for k, ci in columns if any(k in g for g in report["groups"])]

    def cell(group: dict[str, Any], key: str, ci: str | None) -> str:
        value = group.get(key)
        if value is None:
            return ""
        interval = group.get(ci) if ci else None
        return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")

    lines = [
        f"## Fairness (test split, 95% intervals; groups under {MIN_GROUP} rows are not compared)",
        "| attribute | group | rows | " + " | ".join(k.replace("_", " ") for k, _ in shown) + " |",
        "| --- | --- | --- |" + " --- |" * len(shown),
        *(
            f"| {g['attribute']} | {g['group']} | {g['rows']} | "
            + " | ".join(cell(g, k, ci) for k, ci in shown)
            + " |"
            for g in report["groups"]
        ),
        "",
    ]
    for attribute, summary in report["attributes"].items():
        differences = ", ".join(
            f"{k.replace('_', ' ')} {v:.3f}" for k, v in summary.items() if k.endswith("difference")
        )
        lines.append(
            f"- {attribute}: "
            + (summary.get("error") or differences or "fewer than two groups to compare")
        )
    return [*lines, ""]


def write_model_card(config: Config, metadata: dict[str, Any], path: Path) -> Path:
    path.write_text(render_model_card(config, metadata))
    return path
