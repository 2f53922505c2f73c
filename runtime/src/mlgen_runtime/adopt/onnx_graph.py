"""An *ONNX graph* adopted: one input per column or one tensor of the sample's columns,
served through ONNX Runtime as a scikit-learn-like estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .adopted import AdoptionError

ONNX = "onnx"



class OnnxAdapter:
    """An ONNX graph as the service's estimator.

    Inputs: one per column (skl2onnx's form, matched by name) or one [n, k] tensor of the
    sample's columns in order. Outputs: a label and a [n, classes] probability tensor (a
    classifier converted with ``zipmap=False``), or one tensor of values (a regressor).
    """

    def __init__(self, graph: bytes, columns: list[str] | None = None) -> None:
        self.graph = graph
        self.columns = columns
        self._session: Any = None
        session = self.session
        outputs = session.get_outputs()
        if any(output.type.startswith(("seq", "map")) for output in outputs):
            raise AdoptionError(
                "The ONNX graph returns a ZipMap (a list of dicts): convert the classifier with "
                "options={id(model): {'zipmap': False}} (skl2onnx) so it returns a tensor."
            )
        self.classifier = len(outputs) == 2
        self.labels = _class_labels(graph) if self.classifier else None
        if self.classifier and self.labels is None:
            raise AdoptionError(
                "The ONNX classifier does not name its classes (no classlabels attribute): "
                "convert it with skl2onnx, or deploy the scikit-learn model."
            )

    def __getstate__(self) -> dict[str, Any]:
        return {"graph": self.graph, "columns": self.columns}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["graph"], state["columns"])  # type: ignore[misc]

    @property
    def session(self) -> Any:
        if self._session is None:
            import onnxruntime

            try:
                self._session = onnxruntime.InferenceSession(
                    self.graph, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:
                raise AdoptionError(f"ONNX Runtime cannot load the graph: {exc}") from exc
        return self._session

    @property
    def input_names(self) -> list[str] | None:
        inputs = self.session.get_inputs()
        return None if len(inputs) == 1 else [i.name for i in inputs]

    def with_columns(self, columns: list[str]) -> OnnxAdapter:
        return OnnxAdapter(self.graph, columns)

    def _feed(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        inputs = self.session.get_inputs()
        if len(inputs) == 1:
            columns = self.columns or list(frame.columns)
            return {inputs[0].name: frame[columns].to_numpy(dtype=_dtype(inputs[0].type))}
        feed = {}
        for spec in inputs:
            values = frame[spec.name].to_numpy()
            dtype = _dtype(spec.type)
            if dtype is object:
                values = np.array([None if pd.isna(v) else str(v) for v in values], dtype=object)
            feed[spec.name] = values.astype(dtype).reshape(-1, 1)
        return feed

    def _run(self, frame: pd.DataFrame) -> list[np.ndarray]:
        return self.session.run(None, self._feed(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        outputs = self._run(frame)
        if self.classifier:
            return np.asarray(self.labels, dtype=object)[np.argmax(outputs[1], axis=1)]
        return np.ravel(outputs[0]).astype(np.float64)

    @property
    def predict_proba(self) -> Any:
        # Absent (hasattr False) for a regressor, as scikit-learn's available_if does.
        if not self.classifier:
            raise AttributeError("predict_proba: the graph answers values, not classes")
        return self._probabilities

    def _probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self._run(frame)[1], dtype=np.float64)

    @property
    def classes_(self) -> np.ndarray:
        if not self.classifier:
            raise AttributeError("classes_")
        return np.asarray(self.labels, dtype=object)


def _dtype(onnx_type: str) -> Any:
    return {"tensor(float)": np.float32, "tensor(double)": np.float64,
            "tensor(int64)": np.int64, "tensor(int32)": np.int32,
            "tensor(string)": object}.get(onnx_type, np.float32)


def _class_labels(graph: bytes) -> list[Any] | None:
    import onnx

    model = onnx.load_model_from_string(graph)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_int64s", "classlabels_ints"):
                return [int(v) for v in attribute.ints]
            if attribute.name == "classlabels_strings":
                return [v.decode() for v in attribute.strings]
    return None
