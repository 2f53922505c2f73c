"""A *TorchScript module* adopted: loaded with ``torch.jit.load`` and run by the service itself
(``mlgen deploy`` adds ``torch==2.13.0``, the CPU build, to the service's dependencies).

Why not an ONNX export at deploy time: measured (benchmarks/deploy.py, docs/benchmarks.md
"Deploying a model the user already has"), the export needs torch at deploy time anyway, its
answers differ from the module's in the last bits of a float32 (up to 1.2e-7; 269 of 569 rows
bit-equal), and it saves ~10 us of a request (one row: 15 us in torch, 5 us in ONNX Runtime)
whose FastAPI floor is ~500 us. Running the module itself serves exactly the user's numbers.

The signatures taken:

* ``forward(x: Tensor) -> Tensor``, ``x`` a float32 ``[n, k]`` tensor of the sample's ``k``
  input columns in their order (numbers only);
* a classifier answers ``[n, c]`` scores, ``c`` the number of the sample's classes, in the
  order of the sorted labels (scikit-learn's order: 0, 1, 2 or "a", "b", "c"). Rows that are
  probabilities on the sample (in [0, 1], summing to 1) are served as they are; other scores
  (logits) through a softmax, which keeps the predicted class;
* a regressor answers ``[n]`` or ``[n, 1]`` values.

Anything else is refused naming what was found: several inputs, an output that is not one
tensor, a width that fits neither the task nor the sample's classes, non-finite answers.

Rows run one at a time: torch's matrix products round differently by batch size (a row alone
and the same row among 569 differed by up to 1.2e-7), and an answer must not depend on which
other rows shared its request.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .adopted import Adopted, AdoptionError, installed_versions

TORCHSCRIPT = "torchscript"
SUFFIXES = (".pt", ".pth", ".ts")
# The torch the service installs: the version with a CPU build here (any other pulls CUDA).
REQUIREMENT = "torch==2.13.0"
# How far from 1 a row of probabilities may sum (float32 softmax rounding).
_SUM_TOLERANCE = 1e-4


def load_torchscript(source: str) -> Adopted:
    """The module at ``source`` as an (unfitted) adapter; its signature checked."""
    adapter = TorchScriptAdapter(Path(source).read_bytes(), name=Path(source).name)
    return Adopted(adapter, TORCHSCRIPT, source, None, installed_versions(["torch"]),
                   [REQUIREMENT])


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise AdoptionError(
            f"A TorchScript model needs torch, which is not installed here: `pip install "
            f"'{REQUIREMENT}'` in the service's environment (mlgen deploy lists it in the "
            "service's pyproject.toml)."
        ) from None
    return torch


class TorchScriptAdapter:
    """A TorchScript module as the service's estimator (see the module doc for what it takes).

    :meth:`fitted` fixes what the sample decides: the column order, the classes (or none, for
    a regressor) and whether scores go through a softmax.
    """

    def __init__(self, archive: bytes, name: str = "the module", columns: list[str] | None = None,
                 classes: list[Any] | None = None, softmax: bool = False) -> None:
        self.archive, self.name = archive, name
        self.columns, self.classes, self.softmax = columns, classes, softmax
        torch = _torch()
        try:
            self.module = torch.jit.load(io.BytesIO(archive), map_location="cpu").eval()
        except Exception as exc:
            raise AdoptionError(
                f"{name} is not a TorchScript archive torch {torch.__version__} can load "
                f"({str(exc).splitlines()[0][:200]}). Save the model with "
                "torch.jit.script(model).save(path) (or torch.jit.trace); torch.save of a "
                "module or state_dict is a pickle, not TorchScript."
            ) from exc
        arguments = self.module.forward.schema.arguments[1:]
        if len(arguments) != 1 or str(arguments[0].type) != "Tensor":
            found = ", ".join(f"{a.name}: {a.type}" for a in arguments) or "nothing"
            raise AdoptionError(
                f"{name}'s forward takes ({found}); a deployed TorchScript model takes one "
                "float tensor [rows, columns] of the sample's input columns in order. Wrap it "
                "in a module whose forward(x) splits x into what the model needs."
            )

    def __getstate__(self) -> dict[str, Any]:
        return {"archive": self.archive, "name": self.name, "columns": self.columns,
                "classes": self.classes, "softmax": self.softmax}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def fitted(self, sample: pd.DataFrame, target: str, task: str) -> TorchScriptAdapter:
        """This module with the sample's columns, and a classifier's classes and score form;
        the module's answers on the sample checked against the task."""
        columns = [str(c) for c in sample.columns if c != target]
        scores = TorchScriptAdapter(self.archive, self.name, columns)._scores(sample)
        if not np.isfinite(scores).all():
            rows = np.flatnonzero(~np.isfinite(scores).reshape(len(scores), -1).all(axis=1))
            raise AdoptionError(
                f"{self.name} answers NaN or infinity for sample rows {rows[:10].tolist()}: "
                "check those rows' values, or the model's handling of them."
            )
        width = 1 if scores.ndim == 1 else scores.shape[1]
        if task == "regression":
            if width != 1:
                raise AdoptionError(
                    f"{self.name} answers {width} numbers per row; a regressor answers one "
                    "([rows] or [rows, 1]). For class scores set `task:` in the brief."
                )
            return TorchScriptAdapter(self.archive, self.name, columns)
        classes = np.unique(sample[target].dropna().to_numpy()).tolist()
        if width != len(classes):
            raise AdoptionError(
                f"{self.name} answers {width} number(s) per row, but the sample's {target!r} "
                f"has {len(classes)} classes ({', '.join(map(str, classes[:10]))}): a "
                "classifier answers one score per class, in the sorted labels' order. Give a "
                "sample with every class, or set `task: regression` for a value."
            )
        probabilities = bool(((scores >= 0) & (scores <= 1)).all()
                             and np.allclose(scores.sum(axis=1), 1.0, atol=_SUM_TOLERANCE))
        return TorchScriptAdapter(self.archive, self.name, columns, classes, not probabilities)

    def _tensor(self, frame: pd.DataFrame) -> Any:
        columns = self.columns or list(frame.columns)
        try:
            values = frame[columns].to_numpy(dtype=np.float32)
        except (TypeError, ValueError) as exc:
            text = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
            raise AdoptionError(
                f"A TorchScript model takes numbers; column(s) {', '.join(text)} hold text. "
                "Encode them as numbers in the sample (as the model was trained), or wrap the "
                "model in a scikit-learn pipeline."
            ) from exc
        return _torch().tensor(values)

    def _scores(self, frame: pd.DataFrame) -> np.ndarray:
        torch = _torch()
        x = self._tensor(frame)
        answers = []
        with torch.no_grad():
            for row in range(len(x)):
                try:
                    answer = self.module(x[row : row + 1])
                except RuntimeError as exc:
                    # TorchScript's message ends with the error; it starts with its traceback.
                    cause = [line for line in str(exc).splitlines() if line.strip()][-1]
                    raise AdoptionError(
                        f"{self.name} fails on a row of {x.shape[1]} columns "
                        f"({', '.join(self.columns or frame.columns)}): {cause.strip()[:200]}. "
                        "It must take the sample's input columns in order, as one float "
                        "tensor [rows, columns]."
                    ) from exc
                if not isinstance(answer, torch.Tensor):
                    raise AdoptionError(
                        f"{self.name} answers a {type(answer).__name__}; a deployed TorchScript "
                        "model answers one tensor (class scores [rows, classes] or values)."
                    )
                answers.append(answer.to(torch.float64).reshape(1, -1).numpy())
        if not answers:
            return np.zeros((0, len(self.classes or [None])))
        scores = np.concatenate(answers)
        return scores[:, 0] if scores.shape[1] == 1 and self.classes is None else scores

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.classes is None:
            return np.ravel(self._scores(frame))
        labels = np.asarray(self.classes, dtype=object)
        return labels[np.argmax(self._probabilities(frame), axis=1)]

    @property
    def predict_proba(self) -> Any:
        # Absent (hasattr False) for a regressor, as scikit-learn's available_if does.
        if self.classes is None:
            raise AttributeError("predict_proba: the module answers values, not classes")
        return self._probabilities

    def _probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        scores = self._scores(frame)
        if not self.softmax:
            return scores
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    @property
    def classes_(self) -> np.ndarray:
        if self.classes is None:
            raise AttributeError("classes_")
        return np.asarray(self.classes, dtype=object)
