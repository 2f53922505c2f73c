"""Audio *features*: what training and serving compute from a clip, in numpy, outside the model.

One implementation for both sides, so a served clip is featurised exactly as the training clips
were (the STFT and mel filter bank do not export to ONNX, so they cannot travel in the graph).
Everything starts from a clip's :class:`Spectrum`, its power spectrogram computed once:

* :meth:`Spectrum.log_mel`: the clip fitted to ``clip_seconds`` (centred crop or zero padding),
  framed with a Hann window, power spectrum, HTK mel filter bank, the log with a floor 60 dB
  below the clip's peak, then normalised per clip (zero mean, unit variance over the whole
  spectrogram) so loudness and microphone gain do not decide the class;
* :meth:`Spectrum.mfcc_stats`: the baseline's input, the mean and standard deviation over time
  of the first ``n_mfcc`` MFCCs (DCT-II of the log-mel);
* :meth:`Spectrum.clip_stats`: the drift signals of a clip (duration, RMS loudness, silence
  ratio, spectral centroid), from the decoded clip as it came, before any fitting.

Serving computes one spectrum per clip (:func:`spectrum`) for its features and its drift signals
both (a second STFT of the clip for the drift signals had cost ~14% of the in-process CPU time of
a ``/predict``: docs/benchmarks.md, audio).
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
    def bin_hz(self) -> np.ndarray:
        """The centre frequency of each bin of the power spectrum."""
        return np.linspace(0, self.sample_rate / 2, self.n_fft // 2 + 1)

    @cached_property
    def mel_filters(self) -> np.ndarray:
        """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the HTK mel scale."""
        fmax = self.fmax or self.sample_rate / 2
        mels = np.linspace(_hz_to_mel(self.fmin), _hz_to_mel(fmax), self.n_mels + 2)
        edges = _mel_to_hz(mels)
        bins = self.bin_hz
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


#: The drift signals of one clip, in this order (see :meth:`Spectrum.clip_stats`).
CLIP_STATS = ("duration_s", "rms_db", "silence_ratio", "spectral_centroid_hz")


@dataclass(frozen=True)
class Spectrum:
    """A clip's power spectrogram, framed on the model's grid: the frames of the fitted clip
    (:func:`fit_length`: what the model sees) and, for a clip longer than ``clip_seconds``,
    every whole hop before and after them that lies in the clip. ``window`` picks the model's
    frames out of ``power``; the drift signals read the whole clip.

    The rows of ``window`` are the fitted clip's spectrogram bit for bit (each frame's FFT is
    computed alone, whatever frames share the call): features do not depend on whether they
    were computed for training or, with the drift signals, for serving.
    """

    signal: np.ndarray
    power: np.ndarray
    window: slice
    front: FrontEnd

    def log_mel(self) -> np.ndarray:
        """(n_mels, frames) float32 log-mel spectrogram of the fitted clip, normalised per
        clip."""
        mel = self.power[self.window] @ self.front.mel_filters.T
        # A floor relative to the clip's peak (60 dB below it): gain changes nothing, padding
        # too.
        spectrogram = np.log(mel + EPSILON * max(float(mel.max()), 1e-12)).T
        spread = spectrogram.std()
        normalised = (spectrogram - spectrogram.mean()) / (spread if spread > 0 else 1.0)
        return normalised.astype(np.float32)

    def mfcc_stats(self) -> np.ndarray:
        """(2 * n_mfcc,) float32: mean and standard deviation over time of the MFCCs of the
        fitted clip."""
        spectrogram = np.log(self.power[self.window] @ self.front.mel_filters.T + EPSILON)
        coefficients = dct(spectrogram, type=2, axis=-1, norm="ortho")[:, : self.front.n_mfcc]
        return np.concatenate([coefficients.mean(axis=0), coefficients.std(axis=0)]).astype(
            np.float32
        )

    def clip_stats(self) -> dict[str, float]:
        """Duration, RMS loudness (dBFS), share of silent frames and mean spectral centroid
        (Hz) of the clip, whatever its length.

        Silence is counted on the clip's own frames (from its first sample, the last one
        zero-padded to a whole frame only when the clip is shorter than one); the centroid is
        the mean over the spectrogram's frames that carry any energy (no second STFT).
        """
        signal, front = self.signal, self.front
        duration = len(signal) / front.sample_rate
        rms = float(np.sqrt(np.mean(signal**2))) if len(signal) else 0.0
        padded = signal if len(signal) >= front.n_fft else fit_length(signal, front.n_fft)
        frames = np.lib.stride_tricks.sliding_window_view(padded, front.n_fft)[
            :: front.hop_length
        ]
        frame_db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        totals = self.power.sum(axis=1)
        voiced = totals > 0
        centroid = (
            float(np.mean((self.power[voiced] @ front.bin_hz) / totals[voiced]))
            if voiced.any()
            else 0.0
        )
        return {
            "duration_s": duration,
            "rms_db": 20.0 * np.log10(rms + 1e-9),
            "silence_ratio": float(np.mean(frame_db < SILENCE_DB)),
            "spectral_centroid_hz": centroid,
        }


def spectrum(signal: np.ndarray, front: FrontEnd) -> Spectrum:
    """The :class:`Spectrum` of a mono clip at the front end's rate: one STFT."""
    signal = np.asarray(signal, dtype=np.float64)
    extra = len(signal) - front.samples
    if extra <= 0:
        grid, first = fit_length(signal, front.samples), 0
    else:
        # The fitted clip starts at extra // 2: the grid starts that many hops earlier (minus
        # a remainder), so that its frames include the fitted clip's exactly.
        start = extra // 2
        grid, first = signal[start % front.hop_length :], start // front.hop_length
    return Spectrum(signal, _power_spectrogram(grid, front),
                    slice(first, first + front.frames), front)

