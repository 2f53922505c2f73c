"""Request *guards*: the body's size and time limits, and the optional API key.

They reject a request before any model code runs, with the JSON error shape of
:class:`~.schemas.ErrorResponse`.
"""

# No `from __future__ import annotations`: FastAPI reads the key dependency's Annotated
# parameters, which name this module's closures, when the function is defined.
import asyncio
import hmac
import json
import os
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_body
from .memory import LARGE_BODY_BYTES, HeapTrimmer

API_KEY_HEADER = "X-API-Key"


class BodyTooLarge(Exception):
    """The body grew past the limit while it was read."""


class BodyLimits:
    """Reads a request body within ``max_bytes`` (413) and ``read_timeout`` seconds (408).

    The declared Content-Length is checked first; the body is then read as it arrives, the
    size checked on every chunk (a chunked upload without a length cannot slip past), and
    replayed to the app. A slow body is cut off after ``read_timeout`` whatever the server:
    uvicorn has no body timeout. After a large body the heap is trimmed (:mod:`.memory`).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        self.trimmer = HeapTrimmer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, send)
            return
        try:
            async with asyncio.timeout(self.read_timeout):
                body = await self._read(receive)
        except BodyTooLarge:
            await self._too_large(scope, send)
            return
        except TimeoutError:
            await self._too_slow(scope, send)
            return
        if body is None:
            return  # the client left
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self.app(scope, replay, send)
        finally:
            if len(body) >= LARGE_BODY_BYTES:
                # Once answered, what the request was parsed into is garbage too.
                self.trimmer.after_large_body()

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None when the client disconnected first."""
        chunks: list[bytes] = []
        size = 0
        more = True
        try:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    raise BodyTooLarge
                chunks.append(chunk)
                more = message.get("more_body", False)
        finally:
            if size >= LARGE_BODY_BYTES:
                # The chunks are garbage by the trim, whether joined, refused or abandoned.
                self.trimmer.after_large_body()
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await _refuse(
            scope,
            send,
            413,
            "payload_too_large",
            f"The request body is larger than {self.max_bytes} bytes (serving.max_body_bytes). "
            "Send fewer records per request.",
        )

    async def _too_slow(self, scope: Scope, send: Send) -> None:
        await _refuse(
            scope,
            send,
            408,
            "request_timeout",
            f"The request body did not arrive within {self.read_timeout:g} s "
            "(serving.timeouts.body_read_s). Send it at once, or fewer records per request.",
        )


async def _refuse(scope: Scope, send: Send, status: int, error: str, message: str) -> None:
    """Answer before the body is read: the connection closes, its unread rest with it."""
    request_id = scope.get("state", {}).get("request_id", "")
    content = json.dumps(error_body(error, message, request_id)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def api_key_guard(env_var: str) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency requiring the API key, the value of ``$env_var``: in the
    ``X-API-Key`` header, or as ``Authorization: Bearer <key>`` (which Prometheus can send).

    The key is read once, here: an empty key with auth enabled is a configuration error, raised
    at start-up rather than discovered by the first client.
    """
    expected = os.environ.get(env_var, "").encode()
    if not expected:
        raise RuntimeError(
            f"serving.auth_enabled is true but the environment variable {env_var} is empty. "
            f"Set {env_var} to the API key clients must send, or disable auth in "
            "configs/local.yaml (serving: {auth_enabled: false})."
        )
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    async def require_api_key(
        key: Annotated[str | None, Security(header)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> None:
        given = key if key is not None else credentials.credentials if credentials else None
        # compare_digest: the time taken does not tell how much of a guess was right.
        if given is None or not hmac.compare_digest(given.encode(), expected):
            raise ApiError(
                401,
                "unauthorized",
                f"Missing or wrong API key: send it in the {API_KEY_HEADER} header "
                "(or as Authorization: Bearer <key>).",
            )

    return require_api_key
