"""The audio kind's HTTP API: ``create_app`` builds the FastAPI app around the champion
:class:`~.classifier.AudioClassifier`.

Routes: ``POST /predict`` (one clip: a multipart upload in the field ``file``, a JSON body
``{"audio_base64": ...}``, or the raw bytes with an ``audio/*`` content type), ``POST
/predict/batch`` (several clips: multipart fields ``files``, or ``{"clips": [{"audio_base64":
...}, ...]}``), ``GET /health``, ``/ready``, ``/metadata``, ``/metrics`` and the documentation.

A clip is decoded by the same code training read its clips with (clips.py): anything outside
the limits is a 4xx naming the problem and the limit (``not_audio``, ``empty``, ``too_long``,
``wrong_rate``, ``too_many_channels``: 422; ``too_large``: 413); in a batch, the first bad clip
fails the whole request and is named by its position, so nothing is half answered. The
runtime's guards (serving/routes.py) give the API key, body limits, request ids and the one
error shape.

Drift (at each scrape of ``/metrics``): clip duration, RMS loudness, silence ratio, spectral
centroid and each clip's embedding distance from the training centroid, scored against the
training clips by the runtime's online drift monitor (``model_feature_drift``), and the shift
of the live embeddings' centroid in units of the training spread
(``model_embedding_centroid_shift``).
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic_core import to_json

from ...config import AudioConfig, Config, load_config
from ...fallback import CHAMPION_DIR, fallback_dir
from ...monitoring.drift import OnlineDrift
from ...monitoring.metrics import ServiceMetrics
from ...serving.errors import ApiError
from ...serving.routes import (
    Guards,
    ModelState,
    add_metrics_route,
    add_probe_routes,
    error_responses,
    load_at_start,
    service_app,
    validated,
)
from .classifier import AudioClassifier, load_classifier
from .clips import ClipError, Decoded, decode
from .features import CLIP_STATS, Spectrum, spectrum
from .train import EMBEDDING_DISTANCE, section

SERVING_PATH = "onnx"
# The limit each problem breaks: 413 for the size of the upload, 422 for the rest.
STATUS = {"too_large": 413}


class AudioJson(BaseModel):
    """One clip as base64 (of a WAV or FLAC file)."""

    model_config = ConfigDict(extra="forbid")

    audio_base64: str = Field(min_length=1, description="The file's bytes, base64-encoded.")
    name: str | None = Field(None, max_length=200, description="Echoed in errors.")


class BatchJson(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clips: list[AudioJson] = Field(min_length=1)


class ClipPrediction(BaseModel):
    label: str
    probabilities: dict[str, float]
    duration_s: float = Field(description="The clip's duration as sent.")


class AudioPrediction(ClipPrediction):
    model_name: str
    model_version: str
    request_id: str


class AudioBatchPrediction(BaseModel):
    predictions: list[ClipPrediction]
    model_name: str
    model_version: str
    request_id: str


class AudioMetadata(BaseModel):
    model_name: str
    model_version: str
    family: str
    serving_variant: str
    run_id: str | None
    task: str = "audio_classification"
    classes: list[str]
    sample_rate: int
    clip_seconds: float
    limits: dict[str, Any]
    metrics: dict[str, Any]
    quantisation: list[dict[str, Any]]
    trained_at: str | None
    drift_signals: list[str]


class AudioMetrics(ServiceMetrics):
    """The tabular service's metric names (predictions, drift gauges: the same alerts and
    dashboard apply) and the embedding centroid's shift."""

    def __init__(self) -> None:
        super().__init__()
        self.centroid_shift = Gauge(
            "model_embedding_centroid_shift",
            "Distance of the live embeddings' centroid from the training centroid, in units "
            "of the training embeddings' spread.",
            multiprocess_mode="livemostrecent",
            registry=self.registry,
        )


class Monitor:
    """The online drift window of the served clips."""

    def __init__(self, classifier: AudioClassifier, config: Config,
                 metrics: AudioMetrics) -> None:
        drift = config.drift
        self.metrics = metrics
        embedding = classifier.reference["embedding"]
        self.centroid = np.asarray(embedding["centroid"], dtype=np.float64)
        self.spread = float(embedding["spread"])
        self.online = OnlineDrift(
            classifier.reference, window=drift.window, min_rows=drift.min_rows,
            numeric_threshold=drift.numeric_threshold,
            categorical_threshold=drift.categorical_threshold,
            psi_threshold=drift.psi_threshold,
        )
        self.min_rows = drift.min_rows
        self.embeddings = np.zeros((drift.window, len(self.centroid)))
        self.seen = 0
        self.lock = threading.Lock()

    def observe(self, clips: list[Spectrum], embeddings: np.ndarray) -> None:
        stats = [clip.clip_stats() for clip in clips]
        distances = np.linalg.norm(embeddings - self.centroid, axis=1) / self.spread
        columns: dict[str, Any] = {n: [s[n] for s in stats] for n in CLIP_STATS}
        columns[EMBEDDING_DISTANCE] = distances.tolist()
        self.online.observe_columns(columns)
        with self.lock:
            for row in embeddings:
                self.embeddings[self.seen % len(self.embeddings)] = row
                self.seen += 1

    def refresh(self) -> None:
        self.metrics.set_drift(self.online.scores(), self.online.rows)
        with self.lock:
            rows = min(self.seen, len(self.embeddings))
            if rows >= self.min_rows:
                live = self.embeddings[:rows].mean(axis=0)
                self.metrics.centroid_shift.set(
                    float(np.linalg.norm(live - self.centroid) / self.spread)
                )


class ServedAudio:
    """The loaded classifier and what serving derives from it once."""

    def __init__(self, classifier: AudioClassifier, config: Config, metrics: AudioMetrics,
                 source: str) -> None:
        meta = classifier.metadata
        self.classifier = classifier
        self.limits: AudioConfig = section(config).model_copy(
            update={"sample_rate": classifier.front.sample_rate}
        )
        self.metrics = metrics
        self.max_batch = config.serving.max_batch_size
        self.name = str(meta.get("model_name") or config.tracking.registered_model)
        self.version = str(meta.get("model_version") or "0")
        self.monitor = Monitor(classifier, config, metrics)
        self.description = AudioMetadata(
            model_name=self.name,
            model_version=self.version,
            family=meta["model_family"],
            serving_variant=meta.get("serving_variant", "fp32"),
            run_id=meta.get("run_id"),
            classes=classifier.classes,
            sample_rate=classifier.front.sample_rate,
            clip_seconds=classifier.front.clip_seconds,
            limits={
                "max_seconds": self.limits.max_seconds,
                "max_file_bytes": self.limits.max_file_bytes,
                "min_sample_rate": self.limits.min_sample_rate,
                "max_sample_rate": self.limits.max_sample_rate,
                "max_channels": self.limits.max_channels,
                "max_batch_size": self.max_batch,
            },
            metrics=meta.get("metrics") or {},
            quantisation=meta.get("quantisation") or [],
            trained_at=meta.get("trained_at"),
            drift_signals=[
                *CLIP_STATS, EMBEDDING_DISTANCE, "embedding centroid shift",
            ],
        )
        metrics.set_model(self.name, self.version, source, SERVING_PATH)
        metrics.set_performance({}, 0, {k: v for k, v in self.description.metrics.items()
                                         if "_ci_" not in k})

    def decode(self, data: bytes, name: str) -> Decoded:
        try:
            return decode(data, self.limits, name)
        except ClipError as exc:
            raise ApiError(STATUS.get(exc.problem, 422), exc.problem, str(exc)) from None

    def predict(self, clips: list[Decoded]) -> list[dict[str, Any]]:
        # One spectrum per clip for the model's features and the drift signals both.
        spectra = [spectrum(clip.signal, self.classifier.front) for clip in clips]
        probabilities, embeddings = self.classifier.score(spectra)
        self.monitor.observe(spectra, embeddings)
        classes = self.classifier.classes
        winners = probabilities.argmax(axis=1)
        labels = [classes[i] for i in winners.tolist()]
        self.metrics.observe_predictions(
            self.version, labels, probabilities.max(axis=1).astype(float).tolist()
        )
        return [
            {
                "label": label,
                "probabilities": dict(zip(classes, row.astype(float).tolist(), strict=True)),
                "duration_s": round(clip.seconds, 4),
            }
            for label, row, clip in zip(labels, probabilities, clips, strict=True)
        ]


class AudioState(ModelState[ServedAudio, AudioMetrics]):
    def load(self, classifier: AudioClassifier, source: str) -> ServedAudio:
        return self.serve(ServedAudio(classifier, self.config, self.metrics, source))


ONE = TypeAdapter(AudioJson)
BATCH = TypeAdapter(BatchJson)


async def _clips(request: Request, model: ServedAudio, batch: bool) -> list[Decoded]:
    """The clips of a request, whatever way they were sent (see the module docstring)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=model.max_batch + 1)
        field = "files" if batch else "file"
        uploads = [u for u in form.getlist(field) if not isinstance(u, str)]
        if not uploads:
            raise ApiError(
                422, "missing_file",
                f"No file in the multipart field {field!r}: send "
                f"-F {field}=@clip.wav" + (" (once per clip)" if batch else "") + ".",
            )
        named = [(await u.read(), u.filename or f"{field}[{i}]") for i, u in enumerate(uploads)]
    elif kind == "application/json" or kind.endswith("+json"):
        body = await request.body()
        items = validated(BATCH, body).clips if batch else [validated(ONE, body)]
        named = [(_base64(item.audio_base64, i, batch), item.name or _position(i, batch))
                 for i, item in enumerate(items)]
    elif not batch and (kind.startswith("audio/") or kind == "application/octet-stream"):
        named = [(await request.body(), "the body")]
    else:
        raise ApiError(
            415, "unsupported_media_type",
            f"Content-Type {kind or '(none)'} is not accepted: send multipart/form-data (field "
            f"{'files' if batch else 'file'}), application/json with base64"
            + ("" if batch else ", or the file's bytes as audio/wav") + ".",
        )
    if len(named) > model.max_batch:
        raise ApiError(413, "batch_too_large",
                       f"{len(named)} clips, more than serving.max_batch_size "
                       f"({model.max_batch}): split the batch.")
    return [model.decode(data, name) for data, name in named]


def _position(i: int, batch: bool) -> str:
    return f"clips[{i}]" if batch else "the clip"


def _base64(text: str, i: int, batch: bool) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            422, "not_base64",
            f"{_position(i, batch)}: audio_base64 is not valid base64: encode the file's bytes "
            "(e.g. base64 -w0 clip.wav).",
        ) from None


def create_app(config: Config | None = None,
               classifier: AudioClassifier | None = None) -> FastAPI:
    """The API for ``classifier``, or for the champion loaded at start-up (the app starts
    without one: ``/ready`` and the model routes then answer 503 with the reason)."""
    config = config or load_config()
    metrics = AudioMetrics()
    state = AudioState(config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.model is None:
            folder = fallback_dir(config, CHAMPION_DIR)
            await load_at_start(
                app, state, lambda: state.load(load_classifier(folder), "file"), "audio model"
            )
        yield

    app, guard_of = service_app(
        config, state, "Audio classification by the champion model: POST a WAV or FLAC clip.",
        lifespan, lambda: ["file", "audio_base64", "clips"],
    )
    _add_routes(app, state, guard_of)
    if classifier is not None:
        state.load(classifier, "memory")
    return app


def _add_routes(app: FastAPI, state: AudioState, guard_of: Guards) -> None:
    model_errors = error_responses(400, 401, 413, 422, 503)

    add_probe_routes(
        app, state, guard_of, AudioMetadata, lambda model: model.description,
        "Ready to classify: a model is loaded.",
        "The served model: classes, sample rate, limits, test metrics, quantisation.",
    )

    @app.post("/predict", response_model=AudioPrediction, responses=model_errors,
              dependencies=guard_of("/predict"), tags=["model"])
    async def predict(request: Request) -> Response:
        """The label of one clip (multipart field `file`, JSON `audio_base64`, or audio/wav)."""
        model = state.require_model()
        clips = await _clips(request, model, batch=False)
        answer = model.predict(clips)[0]
        body = {**answer, "model_name": model.name, "model_version": model.version,
                "request_id": request.state.request_id}
        return Response(to_json(body), media_type="application/json")

    @app.post("/predict/batch", response_model=AudioBatchPrediction, responses=model_errors,
              dependencies=guard_of("/predict/batch"), tags=["model"])
    async def predict_batch(request: Request) -> Response:
        """The labels of several clips (multipart fields `files`, or JSON `clips`)."""
        model = state.require_model()
        clips = await _clips(request, model, batch=True)
        body = {"predictions": model.predict(clips), "model_name": model.name,
                "model_version": model.version, "request_id": request.state.request_id}
        return Response(to_json(body), media_type="application/json")

    add_metrics_route(app, state, guard_of, lambda model: model.monitor.refresh())
