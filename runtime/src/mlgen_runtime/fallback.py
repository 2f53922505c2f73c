"""The *fallback* model: what the service answers with when its champion cannot.

Two bundle folders sit beside ``artifacts/champion/``:

- ``previous/``: the champion a promotion replaced (written by :func:`keep_previous`);
- ``baseline/``: the Dummy baseline of the current champion's training run (written by
  :func:`export_baseline`), so even the first champion has a fallback.

:func:`load_fallback` returns the first of them that loads. Serving uses it when the champion
cannot be loaded at start-up or raises at prediction time; ``/ready`` then reports ``degraded``
and the gauge ``model_fallback_active`` is 1. Loading the champion from the exported folder
because the registry is unreachable is *not* a fallback: that is still the champion, and
``model_info{source="file"}`` says where it came from.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from .bundle import (
    METADATA_FILE,
    Bundle,
    bundle_lock,
    load_bundle_dir,
    load_metadata,
    save_bundle,
    staging_dir,
    swap_in,
)
from .config import Config

log = logging.getLogger(__name__)

CHAMPION_DIR = "champion"
PREVIOUS = "previous"
BASELINE = "baseline"
# Tried in this order: a real model of the previous generation beats a constant prediction.
FALLBACKS = (PREVIOUS, BASELINE)


def fallback_dir(config: Config, kind: str) -> Path:
    return config.resolve(config.paths.artifacts) / kind


def export_baseline(
    config: Config, baseline: Any, metadata: dict[str, Any], reference: dict[str, Any]
) -> Path:
    """Save the champion's fitted Dummy baseline as the ``baseline`` fallback bundle.

    ``metadata`` is the champion's: the baseline takes the same request features, and reports
    its own test metrics and the version ``baseline-of-<champion version>``.
    """
    baseline_metadata = {
        **metadata,
        "model_name": f"{metadata.get('model_name', 'model')}-baseline",
        "model_version": f"baseline-of-{metadata.get('model_version', '0')}",
        "model_family": "dummy",
        "metrics": metadata.get("baseline_metrics") or {},
        "params": {},
    }
    return save_bundle(fallback_dir(config, BASELINE), baseline, baseline_metadata, reference)


def keep_previous(config: Config, new_version: str) -> Path | None:
    """Copy the exported champion to ``previous/`` before version ``new_version`` replaces it.

    Nothing is copied when there is no exported champion yet, or when it already is
    ``new_version`` (a forced re-promotion must not make a model its own fallback).
    """
    champion = fallback_dir(config, CHAMPION_DIR)
    metadata_file = champion / METADATA_FILE
    if not metadata_file.exists():
        return None
    outgoing = load_metadata(champion)
    if str(outgoing.get("model_version")) == str(new_version):
        return None
    previous = fallback_dir(config, PREVIOUS)
    staging = staging_dir(previous)
    try:
        # Concurrent trainings of one service replace the champion under the same lock.
        with bundle_lock(champion):
            shutil.copytree(champion, staging)
        swap_in(staging, previous)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return previous


def load_fallback(config: Config) -> Bundle | None:
    """The first fallback bundle that loads (``source`` is its kind), or None if none does."""
    for kind in FALLBACKS:
        folder = fallback_dir(config, kind)
        if not folder.exists():
            continue
        try:
            return load_bundle_dir(folder, source=kind)
        except Exception as exc:
            # A broken fallback must not hide the next one; the log says why it was skipped.
            log.warning("Fallback model in %s cannot be loaded (%s); trying the next.", folder, exc)
    return None
