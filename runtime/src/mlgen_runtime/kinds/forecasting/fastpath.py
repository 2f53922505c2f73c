"""The forecasting kind's *fast path*: a direct LightGBM's trees as an ONNX graph.

A served forecast of a stored series is its prepared feature rows with the request's future
covariates filled in, and the booster's predict of them: LightGBM's per-call cost was about
half of a request's CPU (48 rows x 300 trees: ~0.25 ms in LightGBM, ~0.13 ms in ONNX Runtime
on one thread). The graph compares in float32, as the tabular fast path's (serving/fastpath.py),
so it serves only when it matches the booster on probes: every probed stored series' rows with
its last covariate values and with covariate values drawn from its own history. Otherwise the
booster serves, and the log says why.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...errors import NotCompilable
from ...serving.fastpath import PARITY_TOLERANCE, parity_error
from ...serving.onnx_export import OnnxModel, booster_to_onnx
from .data import Series
from .models import LightGBM

log = logging.getLogger(__name__)

# Stored series probed (the first ones), and covariate draws per probed series.
PROBED_SERIES = 20
DRAWS = 4
SEED = 0
ONNX = "onnx"


def probes(model: LightGBM, histories: dict[str, Series], horizon: int) -> np.ndarray:
    """Feature rows as requests make them: each probed series' prepared rows, with its last
    covariate values and with ``DRAWS`` sets of values drawn from its history (seeded)."""
    rng = np.random.default_rng(SEED)
    matrices = []
    for series in list(histories.values())[:PROBED_SERIES]:
        prepared = model.prepare(series, horizon)
        matrices.append(prepared.matrix)
        for _ in range(DRAWS if prepared.columns else 0):
            matrix = prepared.matrix.copy()
            for name, column in prepared.columns.items():
                matrix[:, column] = rng.choice(series.covariates[name], size=horizon)
            matrices.append(matrix)
    return np.vstack(matrices)


def compile_scorer(
    model: Any, histories: dict[str, Series], horizon: int
) -> tuple[str | None, dict[str, Any]]:
    """Serve ``model``'s predictions through ONNX when it can (a direct LightGBM whose graph
    matches the booster on :func:`probes`): installs the session as ``model.scorer``.

    Returns the path (``"onnx"``, or None when the model's own predict serves) and a report:
    ``max_error`` of the check, or ``reason`` why not.
    """
    if not isinstance(model, LightGBM) or model.strategy != "direct" or not histories:
        return None, {"reason": "only a direct LightGBM with stored series is compiled"}
    try:
        session = OnnxModel(booster_to_onnx(model.booster), classify=False)
        rows = probes(model, histories, horizon)
        error = parity_error(model.booster_predict(rows), session(rows))
    except NotCompilable as exc:
        log.warning("Forecasts are served by LightGBM itself: %s", exc)
        return None, {"reason": str(exc)}
    if not error <= PARITY_TOLERANCE:
        log.warning(
            "Forecasts are served by LightGBM itself: its ONNX graph differs by %.3g on %d "
            "probe rows (tolerance %g)",
            error,
            len(rows),
            PARITY_TOLERANCE,
        )
        return None, {"reason": f"differs from the booster by {error:.3g}", "max_error": error}
    model.scorer = session
    log.info("Forecasts are served through ONNX (%d probe rows, max error %.3g)", len(rows), error)
    return ONNX, {"max_error": error, "rows": len(rows)}
