"""The recommendation kind's HTTP API: ``create_app`` builds the FastAPI app around one
:class:`~.recommender.Recommender`.

Routes: ``POST /recommend`` (``{user_id, k, exclude_seen, filters}``: the top k items for a
user; an unknown user is a cold start, answered by popularity, and ``strategy`` says so),
``POST /recommend/similar`` (``{items, k, filters}``: items related to an ad-hoc set, e.g. a
new patch sheet; known items through the model, unknown ones with metadata through the content
model, else popularity), ``POST /feedback`` (``{request_id, item_id}``: an item the user then
clicked or used, for the live hit-rate@k), ``GET /health``, ``/ready``, ``/metadata``,
``/metrics`` (Prometheus: see ``monitoring.py``) and the documentation (``/docs``, ...).

Everything that is not the kind's own is the runtime's (``serving/routes.py``): the API key,
body size and time limits, request ids, one JSON error shape, the server runner (``serve``:
uvicorn, or gunicorn with several workers, the metrics and the feedback store shared between
them). Bad input is a 422 naming the field and the problem (an unknown filter column, k out of
range, an empty item list, a wrong type, JSON that does not parse), never a 5xx.

The request path is a pydantic-core parse, the model's scoring of one user (numpy), and one
serialisation: the answers' ids and scores are plain Python values already, and every
monitoring signal is a list append until a scrape (see ``monitoring.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter
from pydantic_core import to_json

from ...config import Config, load_config
from ...errors import FeedbackError, RequestError
from ...fallback import CHAMPION_DIR, fallback_dir
from ...monitoring.performance import FEEDBACK_DB_ENV, MEMORY, FeedbackStore
from ...serving.errors import ApiError, invalid_body
from ...serving.routes import (
    Guards,
    ModelState,
    add_component_schemas,
    add_metrics_route,
    add_post_route,
    add_probe_routes,
    add_unavailable_routes,
    feedback_responses,
    hot_routes_first,
    json_body,
    load_at_start,
    service_app,
    validated,
)
from ...serving.schemas import COMPONENTS
from .monitoring import (
    DRIFT_SIGNALS,
    RecommendationMetrics,
    RecommendationMonitor,
    hit_rate,
    test_metrics,
)
from .recommender import Recommendation, Recommender, load_recommender
from .schemas import (
    FeedbackReceipt,
    RecommendationFeedback,
    Recommendations,
    RecommenderMetadata,
    RecommendRequest,
    SimilarRequest,
)

SERVING_PATH = "numpy"
# Users whose unfiltered answers are kept, and how long loading may spend answering them
# (see AnswerCache).
CACHED_USERS = 20_000
WARM_SECONDS = 5.0


class Ranked(NamedTuple):
    """A recommendation of the cache's depth: the first k of it answer any k up to that."""

    items: np.ndarray
    scores: np.ndarray
    strategy: str


class AnswerCache:
    """The unfiltered answers of known users (and the one of every unknown user), computed by
    the model once, to the depth of ``max_k``, and sliced to each request's k.

    A user's unfiltered ranking depends only on the model and the user, yet computing it per
    request cost ~0.15 ms of numpy (ALS over MovieLens' 9,066 items; ~7 ms since ALS re-solves
    a user's factors per call), several times the rest of the request. The answers are the
    model's own calls of ``Recommender.recommend``, so a cached answer equals a computed one
    exactly (tested for every user and several k). The batch path, ``top_codes``, is 10-20x
    faster but its scores differ from a single call's in the last bit of a float32, which may
    reorder near ties: not used. At load the known users are answered, most active first, for
    up to :data:`WARM_SECONDS`; the rest, and ``exclude_seen: false``, on first request. Up to
    :data:`CACHED_USERS` answers are kept (~1.6 kB each at depth 100; the oldest makes room).
    Filtered requests are always computed.
    """

    def __init__(self, recommender: Recommender, depth: int) -> None:
        self.recommender = recommender
        self.depth = depth
        self._users: dict[tuple[int, bool], Ranked] = {}
        self._cold: Ranked | None = None
        used = np.diff(recommender.history.indptr)
        active = np.flatnonzero(used > 0)
        order = active[np.argsort(-used[active], kind="stable")][:CACHED_USERS]
        deadline = time.monotonic() + WARM_SECONDS
        for code in order.tolist():
            if time.monotonic() > deadline:
                break
            self._users[(code, True)] = self._ranked(recommender.users[code].item(), True)

    def _ranked(self, user_id: Any, exclude_seen: bool) -> Ranked:
        answer = self.recommender.recommend(user_id, self.depth, exclude_seen)
        # .tolist() of these arrays gives back the very Python values of the answer.
        return Ranked(
            np.asarray(answer.items), np.asarray(answer.scores, dtype=np.float64), answer.strategy
        )

    def get(self, code: int | None, user_id: Any, exclude_seen: bool) -> Ranked:
        """The answer for ``user_id``, whose index row is ``code`` (None: an unknown user)."""
        if code is None:
            if self._cold is None:
                self._cold = self._ranked(user_id, exclude_seen)
            return self._cold
        key = (code, exclude_seen)
        found = self._users.get(key)
        if found is None:
            if len(self._users) >= CACHED_USERS:
                del self._users[next(iter(self._users))]
            found = self._users[key] = self._ranked(user_id, exclude_seen)
        return found


class ServedList:
    """One request's recommendation as the feedback store keeps it: one record whose
    prediction is the list of items served."""

    __slots__ = ("predictions", "scores")

    def __init__(self, items: list[Any], scores: list[float]) -> None:
        self.predictions = [items]
        self.scores = [scores[0] if scores else 0.0]

    def __len__(self) -> int:
        return 1


class ServedRecommender:
    """The loaded recommender and what serving derives from it once: limits, metadata,
    monitoring, the feedback store."""

    def __init__(
        self, recommender: Recommender, config: Config, metrics: RecommendationMetrics, source: str
    ) -> None:
        settings = config.recommendation
        if settings is None:
            raise ValueError("a recommendation service needs a `recommendation` section")
        meta = recommender.metadata
        self.recommender = recommender
        self.config = config
        self.metrics = metrics
        self.name = str(meta.get("model_name") or config.tracking.registered_model)
        self.version = str(meta.get("model_version") or "0")
        self.k = settings.k
        self.max_k = int(meta.get("max_k") or settings.max_k)
        self.max_items = config.serving.max_batch_size
        self.filter_columns = recommender.filter_columns()
        self.answers = AnswerCache(recommender, self.max_k)
        self.monitor = RecommendationMonitor(recommender, config, metrics)
        self.store = FeedbackStore(
            os.environ.get(FEEDBACK_DB_ENV) or MEMORY,
            capacity=config.serving.feedback_log_size,
            window=config.serving.feedback_window,
        )
        self.min_feedback = config.serving.feedback_min_rows
        self.tested = test_metrics(meta)
        self.about = {"model_name": self.name, "model_version": self.version}
        known_users = int(np.count_nonzero(np.diff(recommender.history.indptr)))
        self.description = RecommenderMetadata(
            model_name=self.name,
            model_version=self.version,
            family=recommender.family,
            run_id=meta.get("run_id"),
            source=source,
            serving_path=SERVING_PATH,
            k=self.k,
            max_k=self.max_k,
            items=self.monitor.index.catalogue,
            users=known_users,
            filter_columns=self.filter_columns,
            metrics=meta.get("metrics") or {},
            primary_metric=meta.get("primary_metric") or settings.primary_metric,
            trained_at=meta.get("trained_at"),
            drift_signals=DRIFT_SIGNALS,
        )
        metrics.set_model(self.name, self.version, source, SERVING_PATH)
        metrics.set_performance({}, 0, self.tested)

    # -- answering -------------------------------------------------------------------------
    def recommend(self, body: RecommendRequest, request_id: str) -> Response:
        k = self._k(body.k)
        filters = self._filters(body.filters)
        code = self.recommender.user_code(body.user_id)
        if filters is None:
            ranked = self.answers.get(code, body.user_id, body.exclude_seen)
            answer = Recommendation(
                ranked.items[:k].tolist(), ranked.scores[:k].tolist(), ranked.strategy
            )
        else:
            answer = self._call(
                lambda: self.recommender.recommend(body.user_id, k, body.exclude_seen, filters)
            )
        self.monitor.feed.add(code is None, (), answer.items)
        return self._respond(answer, request_id)

    def similar(self, body: SimilarRequest, request_id: str) -> Response:
        if len(body.items) > self.max_items:
            raise _invalid(
                "items",
                f"at most {self.max_items} item ids per request (serving.max_batch_size), "
                f"not {len(body.items)}",
            )
        k = self._k(body.k)
        filters = self._filters(body.filters)
        answer = self._call(lambda: self.recommender.similar(body.items, k, filters))
        self.monitor.feed.add(None, body.items, answer.items)
        return self._respond(answer, request_id)

    def _respond(self, answer: Any, request_id: str) -> Response:
        self.metrics.observe_recommendation(self.version, answer.strategy)
        self.store.record(request_id, self.version, ServedList(answer.items, answer.scores))
        body = {
            "items": [
                {"item_id": item, "score": score}
                for item, score in zip(answer.items, answer.scores, strict=True)
            ],
            "strategy": answer.strategy,
            **self.about,
            "request_id": request_id,
        }
        return Response(to_json(body), media_type="application/json")

    def _k(self, k: int | None) -> int:
        if k is None:
            return self.k
        if not 1 <= k <= self.max_k:
            raise _invalid("k", f"k must be from 1 to {self.max_k} (recommendation.max_k), not {k}")
        return k

    def _filters(self, filters: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if not filters:
            return None
        for column, values in filters.items():
            if column not in self.filter_columns:
                known = ", ".join(self.filter_columns) or "none (the model has no item metadata)"
                raise _invalid(
                    f"filters.{column}", f"unknown filter column; the filter columns are {known}"
                )
            if not values:
                raise _invalid(f"filters.{column}", "give at least one value to keep")
        return filters

    @staticmethod
    def _call(answer: Any) -> Any:
        try:
            return answer()
        except RequestError as exc:
            # What the model itself refuses (checked here too; this is the model's word).
            raise ApiError(422, "invalid_request", str(exc)) from exc

    # -- feedback and monitoring -----------------------------------------------------------
    def feedback(self, body: RecommendationFeedback) -> FeedbackReceipt:
        """Join the item to its recommendation (one per request): a hit if it was served."""
        try:
            joined = self.store.claim(body.request_id, 0, body.item_id)
        except FeedbackError as exc:
            self.metrics.feedback.labels(exc.kind).inc()
            raise ApiError(404 if exc.kind == "unknown" else 409, exc.kind, str(exc)) from exc
        self.metrics.feedback.labels("joined").inc()
        self.monitor.feed.add(None, [body.item_id], None)
        served = [str(item) for item in joined.prediction]
        rank = served.index(str(body.item_id)) + 1 if str(body.item_id) in served else None
        return FeedbackReceipt(
            request_id=body.request_id,
            item_id=body.item_id,
            model_version=joined.model_version,
            hit=rank is not None,
            rank=rank,
        )

    def refresh_gauges(self) -> None:
        """Score the monitoring window and the live hit rate into the gauges (at scrape)."""
        self.monitor.refresh_gauges()
        outcomes = self.store.outcomes()
        live = hit_rate(outcomes, self.min_feedback)
        self.metrics.set_performance(live, len(outcomes), self.tested)

    def examples(self) -> dict[str, dict[str, Any]]:
        """Request bodies for /docs: a known user, and the two most used items."""
        recommender = self.recommender
        active = np.flatnonzero(np.diff(recommender.history.indptr) > 0)
        user = recommender.users[active[0]].item() if len(active) else "some-user"
        popular = recommender.ids_of(np.argsort(-recommender.popularity, kind="stable")[:2])
        return {
            "RecommendRequest": {
                "known_user": {
                    "summary": "A user of the training data",
                    "value": {"user_id": user, "k": self.k},
                },
                "new_user": {
                    "summary": "A user the model never saw (cold start)",
                    "value": {"user_id": "a-new-user", "k": self.k},
                },
            },
            "SimilarRequest": {
                "basket": {
                    "summary": "The two most used items",
                    "value": {"items": popular, "k": self.k},
                },
            },
        }


def _invalid(field: str, problem: str) -> Exception:
    """A 422 naming ``field`` (dotted, e.g. ``filters.genres``), in the shared error shape."""
    return invalid_body([{"type": "invalid_value", "loc": tuple(field.split(".")), "msg": problem}])


class RecommendationState(ModelState[ServedRecommender, RecommendationMetrics]):
    """What the routes share: the model once loaded, or why there is none."""

    def load(self, recommender: Recommender, source: str) -> ServedRecommender:
        return self.serve(ServedRecommender(recommender, self.config, self.metrics, source))


def load_champion(config: Config) -> Recommender:
    """The exported champion (``artifacts/champion/``), as training wrote it."""
    return load_recommender(fallback_dir(config, CHAMPION_DIR))


def create_app(config: Config | None = None, recommender: Recommender | None = None) -> FastAPI:
    """The API for ``recommender``, or for the champion loaded at start-up.

    If the champion cannot be loaded the app still starts: ``/health`` answers, ``/ready`` and
    the model routes answer 503 with the reason.
    """
    config = config or load_config()
    metrics = RecommendationMetrics()
    state = RecommendationState(config, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.model is None:
            await _load_champion(app, state, guard_of)
        yield
        if state.model is not None:
            state.model.store.flush()

    app, guard_of = service_app(
        config, state, "Recommendations from the champion model: top-k items for a user, and "
        "items related to a set of items.", lifespan, lambda: [],
        str(recommender.metadata.get("model_version", "")) if recommender else "pending",
    )
    _add_service_routes(app, state, guard_of)
    if recommender is not None:
        _add_model_routes(app, state.load(recommender, "memory"), guard_of)
    return app


async def _load_champion(app: FastAPI, state: RecommendationState, guard_of: Guards) -> None:
    model = await load_at_start(
        app, state, lambda: state.load(load_champion(state.config), "file"), "recommender"
    )
    if model is None:
        add_unavailable_routes(app, ("/recommend", "/recommend/similar"), guard_of)
    else:
        _add_model_routes(app, model, guard_of)


def _add_service_routes(app: FastAPI, state: RecommendationState, guard_of: Guards) -> None:
    add_probe_routes(
        app, state, guard_of, RecommenderMetadata, lambda model: model.description,
        "Ready to recommend: a model is loaded.",
        "The served model: name, version, family, test metrics, k, filter columns.",
    )

    @app.post(
        "/feedback",
        response_model=FeedbackReceipt,
        responses=feedback_responses(
            "No remembered request has this id.", "This request already has feedback."
        ),
        dependencies=guard_of("/feedback"),
        tags=["model"],
    )
    def feedback(body: RecommendationFeedback) -> FeedbackReceipt:
        """An item the user clicked or used after a recommendation, joined to it by request id
        for the live hit-rate@k."""
        # A thread-pool route: the join is SQLite I/O, shared between workers.
        return state.require_model().feedback(body)

    # Drift, coverage and the live hit rate are scored at scrape time.
    add_metrics_route(app, state, guard_of, ServedRecommender.refresh_gauges)


RECOMMEND = TypeAdapter(RecommendRequest)
SIMILAR = TypeAdapter(SimilarRequest)


def _add_model_routes(app: FastAPI, model: ServedRecommender, guard_of: Guards) -> None:
    # One user's scores over the catalogue take well under a millisecond: answered on the
    # event loop, as the tabular /predict of one record.
    async def recommend(request: Request) -> Response:
        body = validated(RECOMMEND, await json_body(request))
        return model.recommend(body, request.state.request_id)

    # Folding a basket into the model takes milliseconds (ALS solves for the basket's
    # factors): in the thread pool, where it cannot stall /health and /recommend.
    async def similar(request: Request) -> Response:
        body = validated(SIMILAR, await json_body(request))
        return await run_in_threadpool(model.similar, body, request.state.request_id)

    guard = guard_of("/recommend")
    examples = model.examples()
    add_post_route(
        app,
        "/recommend",
        recommend,
        Recommendations,
        guard,
        "The top k items for a user (a user the model never saw: cold start by popularity).",
        "RecommendRequest",
        examples["RecommendRequest"],
    )
    add_post_route(
        app,
        "/recommend/similar",
        similar,
        Recommendations,
        guard,
        "Items related to a set of items; the answer never repeats them.",
        "SimilarRequest",
        examples["SimilarRequest"],
    )
    add_component_schemas(app, _request_schemas)
    hot_routes_first(app)


def _request_schemas() -> dict[str, Any]:
    template = f"{COMPONENTS}{{model}}"
    return {
        "RecommendRequest": RecommendRequest.model_json_schema(ref_template=template),
        "SimilarRequest": SimilarRequest.model_json_schema(ref_template=template),
    }
