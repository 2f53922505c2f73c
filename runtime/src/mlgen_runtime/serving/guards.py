"""Request *guards*: the body size limit and the optional API key.

Both reject a request before any model code runs, with the JSON error shape of
:class:`~.schemas.ErrorResponse`.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable

from fastapi import Security
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_body

API_KEY_HEADER = "X-API-Key"



class BodySizeLimit:
    """Answers 413 when a request body exceeds ``max_bytes``.

    The declared Content-Length is checked first; the body is then read (up to the limit) and
    replayed to the app, so a chunked upload without a length cannot slip past.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id", "")
        content = json.dumps(
            error_body(
                "payload_too_large",
                f"The request body is larger than {self.max_bytes} bytes "
                "(serving.max_body_bytes). Send fewer records per request.",
                request_id,
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def api_key_guard(env_var: str) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency requiring ``X-API-Key`` to equal the value of ``$env_var``.

    The key is read once, here: an empty key with auth enabled is a configuration error, raised
    at start-up rather than discovered by the first client.
    """
    expected = os.environ.get(env_var, "")
    if not expected:
        raise RuntimeError(
            f"serving.auth_enabled is true but the environment variable {env_var} is empty. "
            f"Set {env_var} to the API key clients must send, or disable auth in "
            "configs/local.yaml (serving: {auth_enabled: false})."
        )
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    async def require_api_key(key: str | None = Security(header)) -> None:
        if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
            raise ApiError(
                401,
                "unauthorized",
                f"Missing or wrong API key: send it in the {API_KEY_HEADER} header.",
            )

    return require_api_key
