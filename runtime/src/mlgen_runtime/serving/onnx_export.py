"""ONNX export of a fitted final estimator (or of a forecaster's LightGBM booster), and the
ONNX Runtime session that serves it.

Only the estimator is converted: the preprocessing before it is compiled by
:class:`.fastpath.RecordEncoder`, so a user's ``custom_features`` or an encoder skl2onnx lacks
never blocks the export. The graph takes the encoded float32 matrix (trees in ONNX compare in
float32, hence the parity check before a graph serves) and returns class probabilities, columns
in the estimator's ``classes_`` order, or predicted values.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import NotCompilable

INPUT = "X"
# Opsets every onnxruntime >= 1.17 runs; ai.onnx.ml 3 holds the tree ensembles.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# Batches of this many rows are scored on every core (see OnnxModel).
WIDE_ROWS = 256


def _register_lightgbm() -> None:
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
    )


def estimator_to_onnx(estimator: Any, n_inputs: int) -> bytes:
    """The serialized ONNX graph of ``estimator`` on ``n_inputs`` float columns.

    Raises :class:`NotCompilable` when ONNX cannot represent it faithfully.
    """
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as exc:
        raise NotCompilable(f"skl2onnx is not installed ({exc})") from exc
    if getattr(estimator, "is_categorical_", None) is not None:
        # skl2onnx converts native categorical splits without error, but wrongly.
        raise NotCompilable("HistGradientBoosting with native categorical features")
    if type(estimator).__module__.startswith("lightgbm"):
        _register_lightgbm()
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    try:
        graph = convert_sklearn(
            estimator,
            initial_types=[(INPUT, FloatTensorType([None, n_inputs]))],
            target_opset=TARGET_OPSET,
            options=options,
        )
    except Exception as exc:
        raise NotCompilable(f"skl2onnx cannot convert it ({type(exc).__name__}: {exc})") from exc
    return graph.SerializeToString()


# onnxmltools' LightGBM converter emits at most this main-domain opset.
BOOSTER_OPSET = 15


def booster_to_onnx(booster: Any) -> bytes:
    """The serialized ONNX graph of a LightGBM regression ``Booster`` on its float features
    (its raw prediction, one value per row).

    Raises :class:`NotCompilable` when onnxmltools cannot convert it.
    """
    try:
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType
    except ImportError as exc:
        raise NotCompilable(f"onnxmltools is not installed ({exc})") from exc
    try:
        graph = convert_lightgbm(
            booster,
            initial_types=[(INPUT, FloatTensorType([None, booster.num_feature()]))],
            target_opset=BOOSTER_OPSET,
        )
    except Exception as exc:
        raise NotCompilable(f"onnxmltools cannot convert it ({type(exc).__name__}: {exc})") from exc
    return graph.SerializeToString()


class OnnxModel:
    """An ONNX Runtime session of one graph on one thread: float64 matrix in, float64 out.

    Workers scale a service out, and threads inside one small request only contend (see
    Predictor). A batch of at least :data:`WIDE_ROWS` rows is cut into one slice per core this
    process may use, scored side by side (ONNX Runtime lets go of the GIL), as the pipeline
    itself would use every core in a notebook: 1,000 rows of a 100-tree model take ~0.3 ms on
    two cores against ~0.58 ms on one. Each row is scored by the same one-thread kernel
    whatever the batch, so a record's answer never depends on what it was sent with (ONNX
    Runtime's own threads split the trees and round the sums differently).
    """

    def __init__(self, graph: bytes, classify: bool) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )
        outputs = [output.name for output in self.session.get_outputs()]
        # Classifiers answer (label, probabilities); regressors answer the values.
        self.output = [outputs[-1] if classify else outputs[0]]
        self.classify = classify
        # The compiled session under the Python wrapper, whose per-call checks of names we
        # fixed above cost ~1 us of a ~6 us single-record run.
        self._run = getattr(self.session, "_sess", self.session).run
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        self._pool = (
            ThreadPoolExecutor(self.cores - 1, thread_name_prefix="onnx")
            if self.cores > 1
            else None
        )

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float32)
        if self._pool is None or len(matrix) < WIDE_ROWS:
            result = self._score(matrix)
        else:
            first, *others = np.array_split(matrix, self.cores)
            pending = [self._pool.submit(self._score, part) for part in others]
            result = np.concatenate([self._score(first), *(f.result() for f in pending)])
        result = result.astype(np.float64)
        return result if self.classify else result.ravel()

    def _score(self, matrix: np.ndarray) -> np.ndarray:
        (result,) = self._run(self.output, {INPUT: matrix}, None)
        return result
