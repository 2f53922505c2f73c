"""The *manifest* records how a service's plan was made: ``.mlgen/manifest.json`` in the service.

It names the planner, the model and prompt version, hashes of the brief and of the plan, the
tokens spent, whether the heuristic plan replaced the model's, the feature transforms' columns,
and whether the model sent Python feature code (never run; where its proposal file is). It holds
hashes and counts, never the brief's text, data values or any credential.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mlgen import __version__, transforms
from mlgen.plan import Plan

FILE = Path(".mlgen") / "manifest.json"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_sha256(plan: Plan) -> str:
    """A hash of the plan's content, independent of field order."""
    return sha256_text(json.dumps(plan.model_dump(mode="json"), sort_keys=True))


def build_manifest(
    brief_text: str,
    plan: Plan,
    planner: str,
    *,
    model: str | None = None,
    prompt_version: str | None = None,
    usage: dict[str, int] | None = None,
    turns: int = 0,
    sample_rows_sent: int = 0,
    replayed_from: str | None = None,
    fallback_reason: str | None = None,
    feature_code: dict[str, Any] | None = None,
    warnings: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The manifest as a JSON-ready dict."""
    return {
        "mlgen_version": __version__,
        "planner": planner,
        "brief_sha256": sha256_text(brief_text),
        "plan_sha256": plan_sha256(plan),
        "model": model,
        "prompt_version": prompt_version,
        "usage": usage,
        "turns": turns,
        "sample_rows_sent": sample_rows_sent,
        "replayed_from": replayed_from,
        "fallback": fallback_reason is not None,
        "fallback_reason": fallback_reason,
        "transforms": [name for step in plan.feature_transforms
                       for name in transforms.outputs(step)],
        "feature_code": feature_code or {"proposed": False},
        "warnings": list(warnings),
    }


def write_manifest(service: Path, manifest: dict[str, Any]) -> Path:
    path = Path(service) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path
