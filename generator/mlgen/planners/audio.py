"""The heuristic planner's decisions for an audio brief ("classify audio clips", "the audio
classification model works locally"): the data is a folder of clips per label or a manifest
CSV (path,label[,group]), recognised by its shape, not by words.

The speaker groups come from the manifest's ``group`` column, else from file names that start
with a speaker id (``<speaker>_<take>.wav``, the same ids under several labels); the clip length
from the WAV headers (the median clip, rounded up to half a second). Whatever the brief's front
matter states wins.
"""

from __future__ import annotations

import math
import re
import wave
from pathlib import Path
from typing import Any

from mlgen.brief import Brief
from mlgen.errors import PlanError
from mlgen.plan import Plan
from mlgen.profile import Profile

SPEAKER_PATTERN = "^(?P<group>[^_]+)_"
# Imbalanced labels: the smallest under this share of the largest selects macro F1.
IMBALANCED = 0.5
MAX_HEADERS = 200
PATH, LABEL, GROUP = "path", "label", "group"


def hears(brief: Brief, profile: Profile) -> bool:
    """Whether the brief asks for the audio kind: stated (``kind``), else its data is clips."""
    if brief.kind:
        return brief.kind == "audio"
    return profile.clip_column is not None


def plan_audio(brief: Brief, profile: Profile) -> Plan:
    if profile.clip_column != PATH or LABEL not in profile.column_names:
        raise PlanError(
            f"The clips of {profile.source} need a manifest with columns path,label[,group] "
            f"(it has {', '.join(profile.column_names[:10])}): rename its columns, or put the "
            "clips in <label>/ folders and point the brief's `data:` at the folder."
        )
    values: dict[str, Any] = {"kind": "audio", "data_path": str(profile.source)}
    why = {"kind": "the data is audio clips with labels"
           + (" (stated in the brief)" if brief.kind else "")}
    why["data_path"] = ("the brief's folder of clips per label, read in place"
                        if profile.source.is_dir() else "the brief's clip manifest, read in place")
    counts = profile.frame[LABEL].astype(str).value_counts()
    if len(counts) < 2:
        raise PlanError(f"{profile.source} has clips of one label only ({counts.index[0]}): "
                        "a classifier needs at least two.")
    if GROUP in profile.column_names:
        why["group_pattern"] = "the manifest's group column keeps each speaker in one split"
    else:
        pattern = _speaker_pattern(profile)
        values["group_pattern"] = pattern
        why["group_pattern"] = (
            "file names start with a speaker id found under several labels: a speaker's clips "
            "stay in one split" if pattern else
            "no speaker ids in the file names: clips are split independently"
        )
    seconds = _median_seconds(profile)
    if seconds is not None:
        values["clip_seconds"] = min(30.0, max(0.5, math.ceil(seconds * 2) / 2))
        values["max_clip_seconds"] = max(10.0, values["clip_seconds"])
        why["clip_seconds"] = f"the median clip lasts {seconds:.2f} s (rounded up to 0.5 s)"
    balanced = counts.min() >= IMBALANCED * counts.max()
    values["primary_metric"] = "accuracy" if balanced else "f1_macro"
    why["primary_metric"] = (
        f"{len(counts)} labels with similar counts" if balanced else
        f"label counts from {counts.min()} to {counts.max()}: macro F1 weighs each label equally"
    )
    why["audio_models"] = "the CNN on log-mel against the MFCC + logistic regression baseline"
    overrides = {k: v for k, v in brief.plan_overrides.items() if k in Plan.model_fields}
    values.update(overrides)
    why.update({name: "stated in the brief" for name in overrides})
    return Plan.build(values | {"rationale": why})


def _clip_paths(profile: Profile) -> list[Path]:
    root = profile.source if profile.source.is_dir() else profile.source.parent
    return [root / name for name in profile.frame[PATH].dropna().astype(str)]


def _speaker_pattern(profile: Profile) -> str:
    """SPEAKER_PATTERN when file names start with ids repeated under several labels."""
    prefixes: dict[str, set[str]] = {}
    for path, label in zip(_clip_paths(profile), profile.frame[LABEL].astype(str), strict=True):
        match = re.match(SPEAKER_PATTERN, path.name)
        if match is None:
            return ""
        prefixes.setdefault(match.group("group"), set()).add(label)
    shared = sum(len(labels) > 1 for labels in prefixes.values())
    return SPEAKER_PATTERN if len(prefixes) >= 3 and shared >= len(prefixes) / 2 else ""


def _median_seconds(profile: Profile) -> float | None:
    """The median duration of the first WAV clips, read from their headers; None for other
    formats (their length is then the template's default)."""
    durations = []
    for path in _clip_paths(profile)[:MAX_HEADERS]:
        if path.suffix.lower() != ".wav":
            continue
        try:
            with wave.open(str(path)) as clip:
                durations.append(clip.getnframes() / clip.getframerate())
        except (OSError, EOFError, wave.Error, ZeroDivisionError):
            continue
    return sorted(durations)[len(durations) // 2] if durations else None
