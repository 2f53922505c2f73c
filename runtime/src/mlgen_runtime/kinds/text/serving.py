"""The text kind's HTTP API: ``create_app`` builds the FastAPI app around the champion pipeline.

Routes: ``POST /predict`` (``{"<text column>": "...", ...tabular columns}``), ``POST
/predict/batch`` (``{"records": [...]}``), ``GET /health``, ``/ready``, ``/metadata``,
``/metrics`` and the documentation. The request schema is derived from the model's columns:
an empty text, a text over ``text.max_chars``, a missing or unknown field or a wrong type is a
422 naming the field (the runtime's one error shape, serving/routes.py).

Drift (at each scrape of ``/metrics``): text length and out-of-vocabulary rate against the
training texts (normalised Wasserstein, ``model_feature_drift``), and the distribution of the
training data's top terms over the window (Jensen-Shannon, ``model_feature_drift{feature=
"top_terms"}``).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic_core import to_json

from ...config import Config, load_config
from ...fallback import CHAMPION_DIR, fallback_dir
from ...monitoring.drift import OnlineDrift, bucket_drift
from ...monitoring.metrics import ServiceMetrics
from ...serving.errors import ApiError
from ...serving.routes import (
    Guards,
    ModelState,
    add_component_schemas,
    add_metrics_route,
    add_post_route,
    add_probe_routes,
    hot_routes_first,
    json_body,
    load_at_start,
    service_app,
    validated,
)
from ...serving.schemas import COMPONENTS
from .fastpath import compile_scorer
from .model import load_pipeline, parity_texts, tokens, vocabulary
from .train import LENGTH, OOV, oov_rate

TOP_TERMS = "top_terms"


def request_model(meta: dict[str, Any]) -> type[BaseModel]:
    """The schema of one record: the text (1..max_chars characters) and the tabular columns."""
    fields: dict[str, Any] = {
        meta["text_column"]: (str, Field(min_length=1, max_length=int(meta["max_chars"]),
                                         description="The text to classify.")),
    }
    for column in meta["numeric_columns"]:
        fields[column] = (float | None, Field(None))
    for column in meta["categorical_columns"]:
        fields[column] = (str | None, Field(None))
    # A row of the data file as it is (its label, an id) is answered: those columns are taken
    # and dropped (ServedText.predict); any other unknown field is still a 422 naming it.
    for column in meta.get("ignored_columns", []):
        if column not in fields:
            fields[column] = (Any, Field(None, description=(
                "a column of the training data that is not an input: accepted and ignored")))
    return create_model("TextRecord", __config__=ConfigDict(extra="forbid"), **fields)


class TextMetadata(BaseModel):
    model_name: str
    model_version: str
    family: str
    run_id: str | None
    task: str = "text_classification"
    classes: list[str]
    text_column: str
    numeric_columns: list[str]
    categorical_columns: list[str]
    max_chars: int
    metrics: dict[str, Any]
    trained_at: str | None
    drift_signals: list[str]
    serving_path: str = Field(description="How records reach the model: 'numpy' (the "
                              "compiled fast path) or 'sklearn' (the pipeline).")
    serving: dict[str, Any] = Field(description="The fast path's parity check at load: "
                                    "records compared, largest difference, or why it is off.")


class TextPrediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class TextPredictionResponse(TextPrediction):
    model_name: str
    model_version: str
    request_id: str


class TextBatchResponse(BaseModel):
    predictions: list[TextPrediction]
    model_name: str
    model_version: str
    request_id: str


class Monitor:
    """Length and OOV rate in the runtime's online drift window; top-term counts per request
    in a window of the last ``drift.window`` texts."""

    def __init__(self, pipeline: Any, reference: dict[str, Any], config: Config,
                 metrics: ServiceMetrics) -> None:
        drift = config.drift
        self.metrics = metrics
        self.known = vocabulary(pipeline)
        self.online = OnlineDrift(reference, window=drift.window, min_rows=drift.min_rows,
                                  numeric_threshold=drift.numeric_threshold)
        self.terms = list(reference["top_terms"]["terms"])
        self.reference_counts = np.asarray(reference["top_terms"]["counts"], dtype=float)
        self.position = {term: i for i, term in enumerate(self.terms)}
        self.window: collections.deque[np.ndarray] = collections.deque(maxlen=drift.window)
        self.min_rows = drift.min_rows
        self.categorical_threshold = drift.categorical_threshold
        self.lock = threading.Lock()

    def observe(self, texts: list[str], words_of: list[list[str]] | None = None) -> None:
        """Add ``texts`` to the window (``words_of``: their word tokens, when the fast path
        has them already)."""
        if words_of is None:
            words_of = [tokens(text) for text in texts]
        # Lists, not doc_stats' DataFrame: per request, pandas cost more than the counting.
        self.online.observe_columns({
            LENGTH: [len(text) for text in texts],
            OOV: [oov_rate(words, self.known) for words in words_of],
        })
        other = len(self.terms)
        counts = [
            np.bincount(np.array([self.position.get(word, other) for word in words],
                                 dtype=np.intp), minlength=other + 1).astype(float)
            for words in words_of
        ]
        with self.lock:
            self.window.extend(counts)

    def refresh(self) -> None:
        scores = dict(self.online.scores())
        with self.lock:
            rows = len(self.window)
            current = np.sum(self.window, axis=0) if rows else None
        if current is not None and rows >= self.min_rows:
            # The reference's last count (every other token) is the "unseen" bucket.
            drift = bucket_drift(TOP_TERMS, self.terms, self.reference_counts, current,
                                 threshold=self.categorical_threshold)
            scores[TOP_TERMS] = {"measure": drift.measure, "score": drift.score,
                                 "alert": drift.drifted, "n": rows}
        self.metrics.set_drift(scores, self.online.rows)


class ServedText:
    def __init__(self, pipeline: Any, metadata: dict[str, Any], reference: dict[str, Any],
                 config: Config, metrics: ServiceMetrics, source: str,
                 texts: list[str] | None = None) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.classes = [str(c) for c in pipeline.classes_]
        self.columns = [metadata["text_column"], *metadata["numeric_columns"],
                        *metadata["categorical_columns"]]
        self.text_column = metadata["text_column"]
        self.ignored = set(metadata.get("ignored_columns", [])) - set(self.columns) or None
        self.name = str(metadata.get("model_name") or config.tracking.registered_model)
        self.version = str(metadata.get("model_version") or "0")
        self.max_batch = config.serving.max_batch_size
        record = request_model(metadata)
        self.one = TypeAdapter(record)
        self.batch = TypeAdapter(create_model(
            "TextBatch", __config__=ConfigDict(extra="forbid"),
            records=(list[record], Field(min_length=1)),  # type: ignore[valid-type]
        ))
        self.monitor = Monitor(pipeline, reference, config, metrics)
        # The compiled scorer when it matches the pipeline on ``texts`` (validation reviews
        # kept by training) and probe records (fastpath.py); else the pipeline serves.
        self.scorer, serving = compile_scorer(pipeline, self.text_column, self.columns,
                                              texts or [])
        self.serving_path = serving["path"]
        self.description = TextMetadata(
            model_name=self.name, model_version=self.version,
            family=metadata.get("model_family", "tfidf_logistic"), run_id=metadata.get("run_id"),
            classes=self.classes, text_column=self.text_column,
            numeric_columns=metadata["numeric_columns"],
            categorical_columns=metadata["categorical_columns"],
            max_chars=int(metadata["max_chars"]), metrics=metadata.get("metrics") or {},
            trained_at=metadata.get("trained_at"), drift_signals=[LENGTH, OOV, TOP_TERMS],
            serving_path=self.serving_path, serving=serving,
        )
        metrics.set_model(self.name, self.version, source, self.serving_path)
        metrics.set_performance({}, 0, {k: v for k, v in self.description.metrics.items()
                                         if "_ci_" not in k})

    def predict(self, records: list[BaseModel]) -> list[dict[str, Any]]:
        if len(records) > self.max_batch:
            raise ApiError(413, "batch_too_large",
                           f"{len(records)} records, more than serving.max_batch_size "
                           f"({self.max_batch}): split the batch.")
        rows = [r.model_dump(exclude=self.ignored) for r in records]
        texts = [row[self.text_column] for row in rows]
        if self.scorer is not None and len(rows) == 1:
            return [self._predict_one(rows[0], texts[0])]
        return self._predict_many(rows, texts)

    def _predict_one(self, row: dict[str, Any], text: str) -> dict[str, Any]:
        """One record on the fast path, in Python floats: /predict's path (per request, the
        arrays of the batch path cost more than the answer's arithmetic)."""
        assert self.scorer is not None
        words = self.scorer.words(text)
        probabilities = self.scorer.one(row, words)
        self.monitor.observe([text], [words])
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        label = self.classes[best]
        self.metrics.observe_predictions(self.version, [label], [probabilities[best]])
        return {"label": label,
                "probabilities": dict(zip(self.classes, probabilities, strict=True))}

    def _predict_many(self, rows: list[dict[str, Any]], texts: list[str]) -> list[dict[str, Any]]:
        if self.scorer is not None:
            # The review is tokenised once, for the model and the drift window.
            words_of = [self.scorer.words(text) for text in texts]
            probabilities = self.scorer.predict_proba(rows, words_of)
            self.monitor.observe(texts, words_of)
        else:
            probabilities = self.pipeline.predict_proba(pd.DataFrame(rows, columns=self.columns))
            self.monitor.observe(texts)
        winners = probabilities.argmax(axis=1)
        labels = [self.classes[i] for i in winners.tolist()]
        self.metrics.observe_predictions(self.version, labels,
                                         probabilities.max(axis=1).astype(float).tolist())
        return [{"label": label,
                 "probabilities": dict(zip(self.classes, row.astype(float).tolist(),
                                           strict=True))}
                for label, row in zip(labels, probabilities, strict=True)]


class TextState(ModelState[ServedText, ServiceMetrics]):
    def load(self, source: str) -> ServedText:
        import json

        folder = fallback_dir(self.config, CHAMPION_DIR)
        metadata = json.loads((folder / "metadata.json").read_text())
        reference = json.loads((folder / "reference_profile.json").read_text())
        pipeline = load_pipeline(folder / "model")
        return self.serve(
            ServedText(pipeline, metadata, reference, self.config, self.metrics, source,
                       parity_texts(folder / "model"))
        )


def create_app(config: Config | None = None) -> FastAPI:
    """The API for the champion, loaded at start-up (the app starts without one: ``/ready``
    and the model routes then answer 503 with the reason)."""
    config = config or load_config()
    metrics = ServiceMetrics()
    state = TextState(config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await load_at_start(app, state, lambda: state.load("file"), "text model")
        yield

    text = config.text
    names = [text.text_column, *text.numeric_columns, *text.categorical_columns] if text else []
    app, guard_of = service_app(
        config, state, "Text classification by the champion model.", lifespan, lambda: names
    )
    _add_routes(app, state, guard_of)
    return app


def _add_routes(app: FastAPI, state: TextState, guard_of: Guards) -> None:
    add_probe_routes(
        app, state, guard_of, TextMetadata, lambda model: model.description,
        "Ready to classify: a model is loaded.",
        "The served model: classes, columns, text limit, test metrics.",
    )

    # The prediction routes read and validate their bodies themselves (routes.SelfServedRoute,
    # as the tabular app's): FastAPI solves no dependencies per request unless the API key is
    # on. One record is scored on the event loop (~0.2 ms); a batch in the thread pool, where
    # it cannot stall /health.
    async def predict(request: Request) -> Response:
        model = state.require_model()
        record = validated(model.one, await json_body(request))
        body = {**model.predict([record])[0], "model_name": model.name,
                "model_version": model.version, "request_id": request.state.request_id}
        return Response(to_json(body), media_type="application/json")

    async def predict_batch(request: Request) -> Response:
        model = state.require_model()
        body = await json_body(request)
        return await run_in_threadpool(_score_batch, model, body, request.state.request_id)

    add_post_route(app, "/predict", predict, TextPredictionResponse, guard_of("/predict"),
                   "The label of one record: the text (and the tabular columns, if any).",
                   "TextRecord")
    add_post_route(app, "/predict/batch", predict_batch, TextBatchResponse,
                   guard_of("/predict/batch"),
                   "The labels of several records: ``{\"records\": [...]}``.", "TextBatch")
    add_component_schemas(app, lambda: _request_schemas(state))
    add_metrics_route(app, state, guard_of, lambda model: model.monitor.refresh())
    hot_routes_first(app)


def _score_batch(model: ServedText, body: bytes, request_id: str) -> Response:
    batch = validated(model.batch, body)
    answer = {"predictions": model.predict(batch.records), "model_name": model.name,
              "model_version": model.version, "request_id": request_id}
    return Response(to_json(answer), media_type="application/json")


def _request_schemas(state: TextState) -> dict[str, Any]:
    """``TextRecord`` and ``TextBatch`` of the loaded model (its columns and text limit), for
    the OpenAPI document's components; any JSON object while no model is loaded."""
    if state.model is None:
        return {"TextRecord": {"type": "object"}, "TextBatch": {"type": "object"}}
    template = f"{COMPONENTS}{{model}}"
    batch = state.model.batch.json_schema(ref_template=template)
    return {**batch.pop("$defs", {}), "TextBatch": batch}
