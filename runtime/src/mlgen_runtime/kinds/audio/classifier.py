"""The *audio classifier* serving loads: a bundle folder's ONNX graph with its feature front end.

The bundle (bundle.py's layout) holds ``model/model.onnx`` (fp32) and, for a quantised CNN,
``model/model.int8.onnx``; ``metadata.json`` says which one is served (``serving_variant``),
which features it takes (``input``: ``log_mel`` or ``mfcc_stats``), the front end's settings
and the classes. Training scores its test clips through this same class, so what was measured
is what is served.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ...bundle import METADATA_FILE, MODEL_DIR, REFERENCE_FILE
from .features import FrontEnd, Spectrum, spectrum
from .models import OnnxModel

FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def featurise(spectra: Iterable[Spectrum], kind: str) -> np.ndarray:
    """The model input (``kind``: ``log_mel`` or ``mfcc_stats``) of clips' spectra."""
    if kind == "log_mel":
        return np.stack([s.log_mel() for s in spectra])[:, None, :, :]
    return np.stack([s.mfcc_stats() for s in spectra])


def spectra(signals: Iterable[np.ndarray], front: FrontEnd) -> Iterable[Spectrum]:
    """The spectrum of each mono clip, one at a time (a data set's would not fit in memory)."""
    return (spectrum(signal, front) for signal in signals)


class AudioClassifier:
    """A trained audio model ready to score decoded clips."""

    def __init__(self, model: OnnxModel, metadata: dict[str, Any],
                 reference: dict[str, Any]) -> None:
        self.model = model
        self.metadata = metadata
        self.reference = reference
        self.front = FrontEnd(**metadata["front_end"])
        self.classes: list[str] = list(metadata["classes"])
        self.input_kind: str = metadata["input"]

    def features(self, signals: Iterable[np.ndarray]) -> np.ndarray:
        return featurise(spectra(signals, self.front), self.input_kind)

    def predict(self, signals: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (a column per class) and embeddings of mono clips."""
        return self.model.run(self.features(signals))

    def score(self, clips: Iterable[Spectrum]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` of clips whose spectra serving has computed already."""
        return self.model.run(featurise(clips, self.input_kind))


def load_classifier(folder: Path, variant: str | None = None) -> AudioClassifier:
    """The classifier in a bundle ``folder`` (the served variant unless ``variant`` says)."""
    folder = Path(folder)
    if not (folder / METADATA_FILE).exists():
        raise FileNotFoundError(
            f"No trained audio model at {folder}: run `make train` (python -m <package> train)."
        )
    metadata = json.loads((folder / METADATA_FILE).read_text())
    reference = json.loads((folder / REFERENCE_FILE).read_text())
    chosen = variant or metadata.get("serving_variant", "fp32")
    return AudioClassifier(OnnxModel(folder / MODEL_DIR / FILES[chosen]), metadata, reference)
