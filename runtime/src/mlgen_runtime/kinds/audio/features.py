"""Audio *features*: what training and serving compute from a clip, in numpy, outside the model.

One implementation for both sides, so a served clip is featurised exactly as the training clips
were (the STFT and mel filter bank do not export to ONNX, so they cannot travel in the graph):

* :func:`log_mel`: a clip fitted to ``clip_seconds`` (centred crop or zero padding), framed
  with a Hann window, power spectrum, HTK mel filter bank, the log with a floor 60 dB below the
  clip's peak, then normalised
  per clip (zero mean, unit variance over the whole spectrogram) so loudness and microphone
  gain do not decide the class;
* :func:`mfcc_stats`: the baseline's input, the mean and standard deviation over time of the
  first ``n_mfcc`` MFCCs (DCT-II of the log-mel);
* :func:`clip_stats`: the drift signals of a clip (duration, RMS loudness, silence ratio,
  spectral centroid), from the decoded signal before any fitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.fft import dct

# Frames quieter than this (dB below full scale) count as silence for the drift signal.
SILENCE_DB = -40.0
EPSILON = 1e-6


@dataclass(frozen=True)
class FrontEnd:
    """The feature settings of a trained model (stored in its metadata, read back to serve)."""

    sample_rate: int = 16_000
    clip_seconds: float = 1.0
    n_fft: int = 512
    hop_length: int = 320
    n_mels: int = 40
    n_mfcc: int = 20
    fmin: float = 20.0
    fmax: float | None = None

    @property
    def samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def frames(self) -> int:
        return 1 + (self.samples - self.n_fft) // self.hop_length

    @cached_property
    def window(self) -> np.ndarray:
        return np.hanning(self.n_fft + 1)[:-1].astype(np.float64)

    @cached_property
    def mel_filters(self) -> np.ndarray:
        """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the HTK mel scale."""
        fmax = self.fmax or self.sample_rate / 2
        mels = np.linspace(_hz_to_mel(self.fmin), _hz_to_mel(fmax), self.n_mels + 2)
        edges = _mel_to_hz(mels)
        bins = np.linspace(0, self.sample_rate / 2, self.n_fft // 2 + 1)
        filters = np.zeros((self.n_mels, len(bins)))
        for m in range(self.n_mels):
            low, centre, high = edges[m], edges[m + 1], edges[m + 2]
            rising = (bins - low) / (centre - low)
            falling = (high - bins) / (high - centre)
            filters[m] = np.maximum(0.0, np.minimum(rising, falling))
        # Slaney-style area normalisation: each band carries comparable energy.
        filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
        return filters

    def to_dict(self) -> dict:
        return {
            "sample_rate": self.sample_rate,
            "clip_seconds": self.clip_seconds,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "n_mfcc": self.n_mfcc,
            "fmin": self.fmin,
            "fmax": self.fmax,
        }


def _hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=float) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def fit_length(signal: np.ndarray, samples: int) -> np.ndarray:
    """``signal`` cropped around its centre or zero-padded at both ends to ``samples``."""
    n = len(signal)
    if n >= samples:
        start = (n - samples) // 2
        return signal[start : start + samples]
    before = (samples - n) // 2
    return np.pad(signal, (before, samples - n - before))


def _power_spectrogram(signal: np.ndarray, front: FrontEnd) -> np.ndarray:
    """(frames, n_fft // 2 + 1) power of the framed, windowed signal."""
    frames = np.lib.stride_tricks.sliding_window_view(signal, front.n_fft)[:: front.hop_length]
    return np.abs(np.fft.rfft(frames * front.window, axis=-1)) ** 2


def log_mel(signal: np.ndarray, front: FrontEnd) -> np.ndarray:
    """(n_mels, frames) float32 log-mel spectrogram of the fitted clip, normalised per clip."""
    power = _power_spectrogram(fit_length(signal.astype(np.float64), front.samples), front)
    mel = power @ front.mel_filters.T
    # A floor relative to the clip's peak (60 dB below it): gain changes nothing, padding too.
    spectrogram = np.log(mel + EPSILON * max(float(mel.max()), 1e-12)).T
    spread = spectrogram.std()
    normalised = (spectrogram - spectrogram.mean()) / (spread if spread > 0 else 1.0)
    return normalised.astype(np.float32)


def mfcc_stats(signal: np.ndarray, front: FrontEnd) -> np.ndarray:
    """(2 * n_mfcc,) float32: mean and standard deviation over time of the MFCCs."""
    power = _power_spectrogram(fit_length(signal.astype(np.float64), front.samples), front)
    spectrogram = np.log(power @ front.mel_filters.T + EPSILON)
    coefficients = dct(spectrogram, type=2, axis=-1, norm="ortho")[:, : front.n_mfcc]
    return np.concatenate([coefficients.mean(axis=0), coefficients.std(axis=0)]).astype(
        np.float32
    )


#: The drift signals of one clip, in this order (see :func:`clip_stats`).
CLIP_STATS = ("duration_s", "rms_db", "silence_ratio", "spectral_centroid_hz")


def clip_stats(signal: np.ndarray, sample_rate: int, front: FrontEnd) -> dict[str, float]:
    """Duration, RMS loudness (dBFS), share of silent frames and mean spectral centroid (Hz)
    of a decoded clip, whatever its length."""
    signal = signal.astype(np.float64)
    duration = len(signal) / sample_rate
    rms = float(np.sqrt(np.mean(signal**2))) if len(signal) else 0.0
    padded = signal if len(signal) >= front.n_fft else fit_length(signal, front.n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(padded, front.n_fft)[:: front.hop_length]
    frame_db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    power = np.abs(np.fft.rfft(frames * front.window, axis=-1)) ** 2
    frequencies = np.linspace(0, sample_rate / 2, power.shape[1])
    totals = power.sum(axis=1)
    voiced = totals > 0
    centroid = (
        float(np.mean((power[voiced] @ frequencies) / totals[voiced])) if voiced.any() else 0.0
    )
    return {
        "duration_s": duration,
        "rms_db": 20.0 * np.log10(rms + 1e-9),
        "silence_ratio": float(np.mean(frame_db < SILENCE_DB)),
        "spectral_centroid_hz": centroid,
    }
