"""The *audio* kind: a label for each audio clip (spoken commands, machine sounds, ...).

Modules: clips.py (reading and limits), features.py (log-mel, MFCC statistics and drift
signals, one numpy implementation for training and serving), models.py (the MFCC + logistic
regression baseline, the CNN, ONNX export and int8 quantisation), train.py (split, candidates,
metrics, MLflow, the gate), classifier.py (what serving loads), serving.py (the HTTP app and
its drift monitoring).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..package import LabelledKind

if TYPE_CHECKING:
    import pandas as pd

    from ...bundle import Bundle
    from ...config import Config
    from .train import AudioResult


class AudioKind(LabelledKind):
    name = "audio"
    tasks: tuple[str, ...] = ("audio_classification",)
    examples = "clips"

    def validate(self, df: pd.DataFrame, config: Config) -> None:
        from ...errors import DataValidationError
        from .train import section

        audio = section(config)
        missing = [c for c in (audio.path_column, audio.label_column) if c not in df.columns]
        if missing:
            raise DataValidationError(
                f"The clip manifest has no column {', '.join(map(repr, missing))}: it needs "
                f"{audio.path_column},{audio.label_column}[,{audio.group_column}]."
            )

    def split(self, df: pd.DataFrame, config: Config) -> Any:
        from ..labelled import split_examples
        from .train import section

        audio = section(config)
        groups = df[audio.group_column].to_numpy() if audio.group_column in df else None
        return split_examples(df[audio.label_column].astype(str).to_numpy(), groups,
                              audio.test_size, audio.validation_size, config.seed)

    def baseline(self, config: Config) -> Any:
        return "mfcc_logistic"

    def candidates(self, config: Config) -> list[str]:
        from .train import section

        return list(section(config).candidates)

    def train(self, config: Config, data_path: str | Path | None = None,
              trials: int | None = None) -> AudioResult:
        from .train import train

        return train(config, data_path=data_path, trials=trials)

    def drift_signals(self, config: Config) -> list[str]:
        return [
            "clip duration, RMS loudness (dBFS), silence ratio and spectral centroid "
            "(normalised Wasserstein against the training clips)",
            "distance of the penultimate-layer embeddings from the training centroid, and the "
            "live centroid's shift",
        ]

    def export_check(self, bundle: Bundle, sample: pd.DataFrame) -> dict[str, Any]:
        return {"path": "onnx", "reason": "the ONNX graph is the model training evaluated"}
