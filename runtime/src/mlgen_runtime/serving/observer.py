"""The request *observer*: gives every request an id and records it in the HTTP metrics.

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

from ..monitoring.metrics import ServiceMetrics

REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED = "unmatched"
# Any other method token a client invents shares one label value.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# An incoming id is echoed into headers and logs: accept only short, plain tokens.
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

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = (
            incoming.decode() if _VALID_REQUEST_ID.match(incoming) else secrets.token_hex(16)
        )
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
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
