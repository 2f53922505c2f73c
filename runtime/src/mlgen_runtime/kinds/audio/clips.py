"""*Clips*: audio files read, checked against the service's limits, mixed to mono and resampled.

Training reads a folder of clips per class (``<label>/*.wav``) or a manifest CSV
(``path,label[,group]``); serving decodes uploaded bytes. Both go through :func:`decode`, so a
clip the API would refuse is a clip training skips, with the same message: the limit it broke
and what to do. One bad clip never stops training: :func:`read_dataset` lists it as skipped.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from ...errors import DataValidationError

if TYPE_CHECKING:
    from ...config import AudioConfig

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


class ClipError(ValueError):
    """A clip the service cannot use; ``problem`` is a stable code (not_audio, empty, too_long,
    too_large, wrong_rate, too_many_channels), the message says what to do."""

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class Decoded:
    """A clip as the models see it: mono float32 at the service's rate."""

    signal: np.ndarray
    sample_rate: int
    original_rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return len(self.signal) / self.sample_rate


def decode(data: bytes, limits: AudioConfig, name: str = "clip") -> Decoded:
    """Decode ``data`` (any format soundfile reads) within ``limits``; :class:`ClipError`
    naming the problem otherwise."""
    import soundfile

    if not data:
        raise ClipError("empty", f"{name} is empty (0 bytes): send a WAV or FLAC file.")
    if len(data) > limits.max_file_bytes:
        raise ClipError(
            "too_large",
            f"{name} is {len(data):,} bytes, over audio.max_file_bytes "
            f"({limits.max_file_bytes:,}): send a shorter clip.",
        )
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as audio:
            rate, channels, frames = audio.samplerate, audio.channels, audio.frames
            _check_header(name, rate, channels, frames, limits)
            signal = audio.read(dtype="float32", always_2d=True)
    except ClipError:
        raise
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise ClipError(
            "not_audio",
            f"{name} is not audio that can be decoded ({_reason(exc)}): "
            "send a WAV or FLAC file.",
        ) from None
    if not len(signal):
        raise ClipError("empty", f"{name} has no samples: send a clip with sound in it.")
    # A mono clip is its one column (a view: the mean of one value is that value).
    mono = signal[:, 0] if channels == 1 else signal.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise ClipError("not_audio", f"{name} holds samples that are not finite numbers.")
    return Decoded(resample(mono, rate, limits.sample_rate), limits.sample_rate, rate, channels)


def _reason(exc: Exception) -> str:
    # soundfile names the BytesIO object first ("Error opening <_io.BytesIO ...>: reason").
    return str(exc).splitlines()[0].rpartition(": ")[2][:120] or type(exc).__name__


def _check_header(name: str, rate: int, channels: int, frames: int, limits: AudioConfig) -> None:
    if frames == 0:
        raise ClipError("empty", f"{name} has no samples: send a clip with sound in it.")
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise ClipError(
            "wrong_rate",
            f"{name} is sampled at {rate} Hz, outside audio.min_sample_rate.."
            f"audio.max_sample_rate ({limits.min_sample_rate}..{limits.max_sample_rate} Hz): "
            f"record or convert it at {limits.sample_rate} Hz.",
        )
    if channels > limits.max_channels:
        raise ClipError(
            "too_many_channels",
            f"{name} has {channels} channels, more than audio.max_channels "
            f"({limits.max_channels}): mix it down to mono or stereo.",
        )
    seconds = frames / rate
    if seconds > limits.max_seconds:
        raise ClipError(
            "too_long",
            f"{name} lasts {seconds:.2f} s, longer than audio.max_seconds "
            f"({limits.max_seconds:g} s): cut it into shorter clips.",
        )


def resample(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``signal`` at ``target`` Hz (polyphase filter; the identity when the rates agree)."""
    if rate == target:
        return signal.astype(np.float32, copy=False)
    divisor = math.gcd(rate, target)
    return resample_poly(signal, target // divisor, rate // divisor).astype(np.float32)


@dataclass(frozen=True)
class ClipSet:
    """The readable clips of a data set, and the ones skipped with the reason."""

    signals: list[np.ndarray]
    labels: np.ndarray
    groups: np.ndarray | None
    paths: list[str]
    skipped: list[tuple[str, str]]


def list_clips(path: Path, limits: AudioConfig) -> pd.DataFrame:
    """``path, label[, group]`` rows of a clip folder (one subfolder per label) or a manifest."""
    if path.is_dir():
        rows = [
            {"path": str(file), "label": folder.name}
            for folder in sorted(p for p in path.iterdir() if p.is_dir())
            for file in sorted(folder.iterdir())
            if file.suffix.lower() in AUDIO_SUFFIXES
        ]
        frame = pd.DataFrame(rows, columns=["path", "label"])
        if limits.group_pattern:
            pattern = re.compile(limits.group_pattern)
            frame["group"] = [_group(pattern, Path(p).name) for p in frame["path"]]
        return frame
    if not path.is_file():
        raise DataValidationError(
            f"No clips at {path}: point data.path at a folder of <label>/*.wav or a manifest "
            "CSV (path,label[,group])."
        )
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    wanted = {limits.path_column: "path", limits.label_column: "label"}
    missing = [column for column in wanted if column not in manifest.columns]
    if missing:
        raise DataValidationError(
            f"The manifest {path} has no column {', '.join(map(repr, missing))} (it has "
            f"{', '.join(manifest.columns)}): set audio.path_column / audio.label_column."
        )
    if limits.group_column in manifest.columns:
        wanted[limits.group_column] = "group"
    frame = manifest[list(wanted)].rename(columns=wanted)
    frame["path"] = [str((path.parent / p).resolve()) for p in frame["path"]]
    return frame


def _group(pattern: re.Pattern[str], name: str) -> str:
    match = pattern.search(name)
    if match is None or "group" not in match.groupdict():
        raise DataValidationError(
            f"audio.group_pattern {pattern.pattern!r} finds no (?P<group>...) in the file name "
            f"{name!r}: fix the pattern or name the files <group>_<anything>.wav."
        )
    return match.group("group")


def read_dataset(path: Path, limits: AudioConfig) -> ClipSet:
    """Every clip of the data set decoded; unreadable or out-of-limit ones skipped and listed.

    Raises :class:`DataValidationError` when fewer than two labels keep a clip.
    """
    frame = list_clips(path, limits)
    if frame.empty:
        raise DataValidationError(
            f"No audio files ({', '.join(AUDIO_SUFFIXES)}) found at {path}: put clips in "
            "<label>/ folders or list them in a manifest CSV."
        )
    signals, keep, skipped = [], [], []
    for position, file in enumerate(frame["path"]):
        try:
            signals.append(decode(Path(file).read_bytes(), limits, name=file).signal)
            keep.append(position)
        except (ClipError, OSError) as exc:
            skipped.append((file, str(exc)))
    kept = frame.iloc[keep]
    labels = kept["label"].astype(str).to_numpy()
    if len(set(labels)) < 2:
        raise DataValidationError(
            f"{len(kept)} readable clips with {len(set(labels))} label(s) at {path} "
            f"({len(skipped)} skipped): a classifier needs clips of at least two labels."
        )
    groups = kept["group"].astype(str).to_numpy() if "group" in kept else None
    return ClipSet(signals, labels, groups, list(kept["path"]), skipped)
