"""The request *observer*: gives every request an id and records it in the HTTP metrics.

The id is always the server's own (``X-Request-ID`` of the answer, ``request_id`` of its body):
predictions are stored under it and feedback joins them by it, so a client that could choose it
could reuse another client's and have that client's feedback joined to its own prediction. An
``X-Request-ID`` a client sends is echoed as ``X-Client-Request-ID``, for its own tracing only.

It is the outermost middleware, so it sees every answer, including the 413 of the body limit
and errors raised before routing. The ``route`` label is the route template (``/predict``),
never the raw path, so a scan of random URLs adds one ``unmatched`` series, not thousands.
"""

from __future__ import annotations

import re
import secrets
import time

from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..monitoring.metrics import CommonMetrics

REQUEST_ID_HEADER = b"x-request-id"
CLIENT_REQUEST_ID_HEADER = b"x-client-request-id"
UNMATCHED = "unmatched"
# Any other method token a client invents shares one label value.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A client's id is echoed into a header: accept only short, plain tokens.
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def route_label(scope: Scope, router: Router) -> str:
    """The template of the route that handles ``scope``, or ``unmatched``."""
    route = scope.get("route")
    if route is None:
        # Requests answered before routing (e.g. by the body limit) are matched here.
        route = next(
            (r for r in router.routes if r.matches(scope)[0] == Match.FULL), None
        )
    return getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED


class RequestObserver:
    """ASGI middleware: request id in and out, request count and duration per route."""

    def __init__(self, app: ASGIApp, metrics: CommonMetrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        ids = [(REQUEST_ID_HEADER, request_id.encode())]
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        if _VALID_REQUEST_ID.match(incoming):
            ids.append((CLIENT_REQUEST_ID_HEADER, incoming))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *ids]}
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.observe_request(
                route_label(scope, self.router),
                scope["method"] if scope["method"] in METHODS else "OTHER",
                status,
                time.perf_counter() - started,
            )
