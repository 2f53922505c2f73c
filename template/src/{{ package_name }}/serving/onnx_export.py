"""ONNX export of a fitted final estimator, and the ONNX Runtime session that serves it.

Only the estimator is converted: the preprocessing before it is compiled by
:class:`.fastpath.RecordEncoder`, so a user's ``custom_features`` or an encoder skl2onnx lacks
never blocks the export. The graph takes the encoded float32 matrix (trees in ONNX compare in
float32, hence the parity check before a graph serves) and returns class probabilities, columns
in the estimator's ``classes_`` order, or predicted values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fastpath import NotCompilable

INPUT = "X"
# Opsets every onnxruntime >= 1.17 runs; ai.onnx.ml 3 holds the tree ensembles.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


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


class OnnxModel:
    """An ONNX Runtime session on one thread: float64 matrix in, float64 outputs out."""

    def __init__(self, graph: bytes, classify: bool) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # Workers scale a service out; threads inside one request only contend (see Predictor).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )
        outputs = [output.name for output in self.session.get_outputs()]
        # Classifiers answer (label, probabilities); regressors answer the values.
        self.output = outputs[-1] if classify else outputs[0]
        self.classify = classify

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        (result,) = self.session.run(
            [self.output], {INPUT: np.asarray(matrix, dtype=np.float32)}
        )
        result = np.asarray(result, dtype=np.float64)
        return result if self.classify else result.ravel()
