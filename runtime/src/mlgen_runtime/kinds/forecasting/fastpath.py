"""The forecasting kind's *fast path*: a direct LightGBM's trees as an ONNX graph.

A served forecast of a stored series is its prepared feature rows with the request's future
covariates filled in, and the booster's predict of them: LightGBM's per-call cost was about
half of a request's CPU (48 rows x 300 trees: ~0.25 ms in LightGBM, ~0.13 ms in ONNX Runtime
on one thread). The graph compares in float32, as the tabular fast path's (serving/fastpath.py),
so it serves only when it matches the booster on probes: every probed stored series' rows with
its last covariate values and with covariate values drawn from its own history. Otherwise the
booster serves, and the log says why.

On top of the trees, a stored series' forecast is a *table* (:class:`Tabulated`): its prepared
rows differ between requests only in the known-future covariates, and trees compare each
covariate with a few hundred thresholds, so each row's score is constant between two
consecutive thresholds of every covariate. Scoring every row once per interval (or combination
of intervals) at its first forecast turns a request's 48 x 300 tree walks (~0.25 ms) into a
binary search per value and one lookup (~10 us), with the answer the scorer's own bit for bit:
the intervals are cut where the scorer compares (float32 for the ONNX graph, float64 for
LightGBM), and the first table is checked against the scorer on values at and beside every
threshold before any is served.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import NotCompilable
from ...serving.fastpath import PARITY_TOLERANCE, parity_error
from ...serving.onnx_export import OnnxModel, booster_to_onnx
from .data import Series, future_times
from .models import LightGBM, Prepared

log = logging.getLogger(__name__)

# Stored series probed (the first ones), and covariate draws per probed series.
PROBED_SERIES = 20
DRAWS = 4
SEED = 0
ONNX = "onnx"
# Cells (rows x covariate intervals) one stored series' table may hold, and all tables together
# (8 bytes each: 512 kB and 16 MB). Scoring 2**16 cells of a 300-tree model takes ~0.5 s, once
# per series, at its first forecast.
SERIES_CELLS = 2**16
TOTAL_CELLS = 2**21


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


@dataclass(frozen=True)
class Tabulated(Prepared):
    """A prepared stored series whose scores are looked up by its covariates' intervals.

    ``thresholds[j]``: the sorted split points of the ``j``-th known covariate (``columns``
    order) in the scorer's precision ``dtype``; ``scores``: the scorer's raw output for every
    row and combination of intervals, flat, row-major; ``strides[j]``: the step of an interval
    of covariate ``j`` in it; ``offsets``: where each row's block starts.
    """

    thresholds: tuple[np.ndarray, ...]
    strides: tuple[int, ...]
    scores: np.ndarray
    offsets: np.ndarray
    dtype: type[np.floating[Any]]

    def forecast(self, future: dict[str, np.ndarray], horizon: int) -> np.ndarray:
        cells = self.offsets[:horizon].copy()
        for name, thresholds, stride in zip(
            self.columns, self.thresholds, self.strides, strict=True
        ):
            given = future.get(name)
            values = self.dtype(self.last[name]) if given is None else given[:horizon]
            if given is not None:
                if not np.isfinite(values).all():
                    # A missing value follows each split's own rule: the scorer decides.
                    return super().forecast(future, horizon)
                values = values.astype(self.dtype)
            # A value goes left where it is <= a threshold: its interval is the number of
            # thresholds below it.
            cells += stride * np.searchsorted(thresholds, values, side="left")
        return self.scores[cells] * self.scale[:horizon] + self.level[:horizon]


def split_points(
    booster: Any, names: list[str], dtype: type[np.floating[Any]]
) -> dict[str, np.ndarray]:
    """Each of ``names``' thresholds in ``booster``'s trees, sorted and in ``dtype``.

    Raises :class:`NotCompilable` when a split on one of them is not a plain ``<=`` (a
    categorical split, zero taken as missing) or the trees are linear in their leaves.
    """
    features = booster.feature_name()
    wanted = {features.index(f"known_{name}"): name for name in names}
    found: dict[str, set[float]] = {name: set() for name in names}
    dump = booster.dump_model()
    stack = [tree["tree_structure"] for tree in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            if "leaf_coeff" in node:
                raise NotCompilable("its trees are linear in their leaves")
            continue
        name = wanted.get(node["split_feature"])
        if name is not None:
            if node["decision_type"] != "<=" or node["missing_type"] not in ("None", "NaN"):
                raise NotCompilable(
                    f"a split on {name!r} is {node['decision_type']!r} with missing values "
                    f"{node['missing_type']!r}, not a plain <= "
                )
            found[name].add(float(node["threshold"]))
        stack += [node["left_child"], node["right_child"]]
    return {
        name: np.unique(np.asarray(sorted(points), dtype="float64").astype(dtype))
        for name, points in found.items()
    }


def _representatives(thresholds: np.ndarray) -> np.ndarray:
    """A value in each interval: each threshold (it goes left there, as every value of its
    interval does) and one above the last."""
    if not len(thresholds):
        return np.zeros(1)
    last = float(thresholds[-1])
    return np.append(thresholds.astype("float64"), last + max(1.0, abs(last)))


def tabulate(
    prepared: Prepared, points: Mapping[str, np.ndarray], dtype: type[np.floating[Any]]
) -> Tabulated:
    """``prepared``'s scores for every row and combination of its covariates' intervals."""
    names = list(prepared.columns)
    values = [_representatives(points[name]) for name in names]
    sizes = [len(v) for v in values]
    block = int(np.prod(sizes))
    grid = np.stack(np.meshgrid(*values, indexing="ij"), axis=-1).reshape(block, len(names))
    rows = len(prepared.matrix)
    matrix = np.repeat(prepared.matrix, block, axis=0)
    for j, name in enumerate(names):
        matrix[:, prepared.columns[name]] = np.tile(grid[:, j], rows)
    scores = np.asarray(prepared.model.scorer(matrix), dtype="float64")
    strides = tuple(int(np.prod(sizes[j + 1 :])) for j in range(len(names)))
    return Tabulated(
        prepared.model,
        prepared.matrix,
        prepared.columns,
        prepared.last,
        prepared.level,
        prepared.scale,
        tuple(points[name] for name in names),
        strides,
        scores,
        np.arange(rows) * block,
        dtype,
    )


class Tables:
    """Tabulates prepared stored series while they fit :data:`SERIES_CELLS` each and
    :data:`TOTAL_CELLS` together; others keep their rows (the scorer serves them)."""

    def __init__(self, points: dict[str, np.ndarray], dtype: type[np.floating[Any]]) -> None:
        self.points = points
        self.dtype = dtype
        self.block = int(np.prod([len(p) + 1 for p in points.values()]))
        self.cells = 0

    def __call__(self, prepared: Prepared) -> Prepared:
        cells = self.block * len(prepared.matrix)
        if (
            cells > SERIES_CELLS
            or self.cells + cells > TOTAL_CELLS
            or not all(math.isfinite(prepared.last[name]) for name in prepared.columns)
        ):
            return prepared
        self.cells += cells
        return tabulate(prepared, self.points, self.dtype)


def boundary_futures(
    points: dict[str, np.ndarray], rows: int, dtype: type[np.floating[Any]]
) -> list[dict[str, np.ndarray]]:
    """Future covariates at, just below and just above every threshold, ``rows`` at a time."""
    futures = []
    for name, thresholds in points.items():
        near = np.concatenate(
            [
                thresholds,
                np.nextafter(thresholds, dtype(-np.inf)),
                np.nextafter(thresholds, dtype(np.inf)),
            ]
        ).astype("float64")
        for start in range(0, len(near), rows):
            chunk = near[start : start + rows]
            futures.append({name: np.resize(chunk, rows)})
    return futures


def compile_tables(forecaster: Any) -> dict[str, Any]:
    """Serve ``forecaster``'s stored series from tables (:class:`Tabulated`) when they match
    its scorer exactly: installs :class:`Tables` as ``forecaster.tabulate`` and the first
    stored series' table in ``forecaster.prepared``.

    Checked on that first series before anything is served: values at and beside every
    threshold, and ``DRAWS`` futures drawn from its history (seeded), must give the scorer's
    forecast bit for bit. Returns a report: the intervals per covariate, or ``reason`` why not.
    """
    model = forecaster.model
    if not isinstance(model, LightGBM) or model.strategy != "direct" or not model.known:
        return {"reason": "only a direct LightGBM with known-future covariates is tabulated"}
    if not forecaster.histories:
        return {"reason": "no stored series"}
    dtype: type[np.floating[Any]] = (
        np.float32 if isinstance(model.scorer, OnnxModel) else np.float64
    )
    try:
        points = split_points(model.booster, model.known, dtype)
    except NotCompilable as exc:
        log.info("Stored series are not tabulated: %s", exc)
        return {"reason": str(exc)}
    tables = Tables(points, dtype)
    key, series = next(iter(forecaster.histories.items()))
    horizon = forecaster.max_horizon
    prepared = model.prepare(series, horizon)
    table = tables(prepared)
    if not isinstance(table, Tabulated):
        return {"reason": f"{tables.block * horizon} cells a series (at most {SERIES_CELLS})"}
    rng = np.random.default_rng(SEED)
    drawn = [
        {name: rng.choice(series.covariates[name], size=horizon) for name in model.known}
        for _ in range(DRAWS)
    ]
    futures = boundary_futures(points, horizon, dtype) + drawn
    for future in futures:
        got, expected = table.forecast(future, horizon), prepared.forecast(future, horizon)
        if not np.array_equal(got, expected):
            log.warning(
                "Stored series are not tabulated: the table differs from the scorer by %.3g",
                float(np.max(np.abs(got - expected))),
            )
            return {"reason": "the table differs from the scorer"}
    forecaster.tabulate = tables
    forecaster.prepared[key] = (future_times(series, forecaster.frequency, horizon), table)
    report = {
        "intervals": {name: len(p) + 1 for name, p in points.items()},
        "cells_per_series": tables.block * horizon,
        "checked_futures": len(futures),
    }
    log.info("Stored series are served from tables: %s", report)
    return report
