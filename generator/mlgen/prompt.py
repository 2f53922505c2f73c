"""A *prompt* is the versioned text the LLM planner sends: a system prompt and a plan request.

The files live in ``prompts/<version>/`` (``system.md``, ``plan.md``); ``prompts/VERSION`` names
the current one, which every generated service records in ``.mlgen/manifest.json``. The plan
request is a ``string.Template``: ``$brief``, ``$profile``, ``$sample``, ``$sample_rows`` and
``$draft`` are filled with the brief, a JSON profile of the data, a few CSV rows and the
heuristic plan. Values are inserted once and never re-read as a template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from string import Template

from mlgen.brief import Brief
from mlgen.errors import MlgenError
from mlgen.plan import Plan
from mlgen.profile import Profile
from mlgen.template import template_root

SAMPLE_ROWS = 5
# Long cell values (free text) are cut: a few rows are sent to show formats, not content.
MAX_CELL_CHARS = 60


def prompts_root() -> Path:
    """``prompts/`` beside the template (checkout root, or ``mlgen/_template`` in a wheel)."""
    return template_root() / "prompts"


@dataclass(frozen=True)
class Prompt:
    """One version of the prompt files."""

    version: str
    system: str
    plan: Template

    @classmethod
    def load(cls, root: Path | None = None, version: str | None = None) -> Prompt:
        """Read ``root/<version>/``; the version defaults to the one in ``root/VERSION``."""
        root = Path(root) if root else prompts_root()
        try:
            version = version or (root / "VERSION").read_text(encoding="utf-8").strip()
            folder = root / version
            system = (folder / "system.md").read_text(encoding="utf-8")
            plan = (folder / "plan.md").read_text(encoding="utf-8")
        except OSError as exc:
            raise MlgenError(
                f"The LLM prompts are missing or unreadable under {root} ({exc}). Reinstall "
                "mlgen, or pass --no-llm to plan offline."
            ) from exc
        return cls(version=version, system=system, plan=Template(plan))

    def request(
        self, brief: Brief, profile: Profile, draft: Plan | None, send_sample: bool = True
    ) -> str:
        """The user message: brief, profile, an optional row sample and the heuristic draft."""
        rows = SAMPLE_ROWS if send_sample else 0
        return self.plan.substitute(
            brief=brief.text.strip(),
            profile=json.dumps(profile_summary(profile, draft), ensure_ascii=False),
            sample=sample_csv(profile, rows) if rows else "(no rows sent: --no-sample)",
            sample_rows=min(rows, profile.n_sampled),
            draft=(
                draft.model_dump_json(exclude={"data_path", "exclude_columns"})
                if draft
                else "(none: the rule-based planner could not plan this brief)"
            ),
        )


def profile_summary(profile: Profile, draft: Plan | None) -> dict:
    """What the model needs to know about the data, as plain JSON (no values beyond counts)."""
    columns = [
        {
            "name": col.name,
            "kind": col.kind,
            "distinct": col.n_unique,
            "missing_rate": col.missing_rate,
            **({"id_like": True} if col.id_like else {}),
            **({"integer": True} if col.integer else {}),
            **({"notes": list(col.notes)} if col.notes else {}),
        }
        for col in profile.columns
    ]
    if draft is None or draft.kind == "recommendation":
        # How often each value repeats: user and item ids repeat over many rows.
        for column in columns:
            if column["distinct"]:
                column["rows_per_value"] = round(profile.n_sampled / column["distinct"], 1)
    summary: dict = {"rows": profile.n_rows, "rows_profiled": profile.n_sampled, "columns": columns}
    if draft is not None and draft.kind == "tabular":
        target = profile.target(draft.target)
        summary["target"] = {
            "name": target.name,
            "kind": target.kind,
            "missing": target.missing,
            **({"class_counts": target.class_counts} if target.class_counts else {}),
            **({"skew": round(target.skew, 3)} if target.kind == "regression" else {}),
        }
        summary["leakage_suspects"] = profile.leakage_suspects(
            draft.target, positive_when=draft.positive_when
        )
    return summary


def sample_csv(profile: Profile, rows: int = SAMPLE_ROWS) -> str:
    """The first ``rows`` rows as read from the file, long values shortened."""
    head = profile.raw.head(rows).map(
        lambda value: (
            value[:MAX_CELL_CHARS] + "..."
            if isinstance(value, str) and len(value) > MAX_CELL_CHARS
            else value
        )
    )
    return head.to_csv(index=False).strip()
