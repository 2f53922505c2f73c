"""API *errors*: every failure becomes a JSON :class:`~.schemas.ErrorResponse`.

Bad input is a 422 naming each field and what is wrong with it (413 for a batch over the size
limit), a missing model is a 503, and nothing a client sends can crash the process: even a
SystemExit raised while answering is a JSON 500 (:class:`ExitTrap`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from .schemas import BATCH_TOO_LARGE

log = logging.getLogger(__name__)

# Listing every expected feature in an error about an unknown one helps, up to a point.
MAX_LISTED_FEATURES = 20


class ApiError(Exception):
    """A request that cannot be answered, with a stable code and a message saying what to do."""

    def __init__(self, status_code: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message


def error_body(
    error: str, message: str, request_id: str, fields: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {"error": error, "message": message, "fields": fields or [], "request_id": request_id}


def invalid_body(errors: Sequence[Mapping[str, Any]]) -> RequestValidationError:
    """pydantic errors of a request body validated by the route itself, located as FastAPI
    locates them (``("body", ...)``), for the handler below."""
    return RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in errors])


def request_id_of(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


UNEXPECTED = (
    "internal_error",
    "The service failed unexpectedly; the error is in its log under this request_id.",
)


def _field_path(loc: tuple[Any, ...]) -> str:
    """``("body", "records", 3, "age")`` -> ``records[3].age``; the whole body is ``body``."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _problem(error: dict[str, Any], feature_names: list[str]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        if not feature_names:
            return "unknown field; /docs shows the request schema"
        listed = ", ".join(feature_names[:MAX_LISTED_FEATURES])
        more = " ..." if len(feature_names) > MAX_LISTED_FEATURES else ""
        return f"unknown field; the model takes: {listed}{more}"
    if kind == "finite_number":
        return "NaN and infinity are not accepted; send null for a missing value"
    if (kind == "missing" and tuple(error["loc"]) == ("body",)) or (
        kind == "json_invalid" and not error.get("input")
    ):
        return "the request body is empty; send a JSON object"
    if kind in ("less_than_equal", "greater_than_equal"):
        return (
            f"{error['msg']}: a value this far outside the training range is almost surely a "
            "unit or encoding error"
        )
    if kind == "json_invalid":
        # pydantic-core says where (line and column); FastAPI's parser gave a character offset.
        detail = error.get("ctx", {}).get("error", "parse error")
        where = error["loc"][-1]
        return f"the body is not valid JSON ({detail}" + (
            f" at character {where})" if isinstance(where, int) else ")"
        )
    return str(error["msg"])


def validation_problems(
    exc: RequestValidationError, feature_names: list[str]
) -> list[dict[str, str]]:
    return [
        {
            # A JSON syntax error's location is a character offset, not a field.
            "field": "body"
            if error["type"] == "json_invalid"
            else _field_path(tuple(error["loc"])),
            "problem": _problem(error, feature_names),
        }
        for error in exc.errors()
    ]


def _batch_too_large(exc: RequestValidationError) -> dict[str, Any] | None:
    return next((error for error in exc.errors() if error["type"] == BATCH_TOO_LARGE), None)


def install_error_handlers(
    app: FastAPI,
    feature_names: Callable[[], list[str]],
    on_validation_error: Callable[[Request], None],
) -> None:
    """Answer every error with the JSON error shape.

    ``feature_names()`` lists the served model's features for messages about unknown fields;
    ``on_validation_error(request)`` counts rejected requests.
    """

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.error, exc.message, request_id_of(request)),
            status_code=exc.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        on_validation_error(request)
        request_id = request_id_of(request)
        too_large = _batch_too_large(exc)
        if too_large is not None:
            return JSONResponse(
                error_body(
                    BATCH_TOO_LARGE,
                    f"A batch takes at most {too_large['ctx']['limit']} rows "
                    "(serving.max_batch_size). Split it into smaller batches.",
                    request_id,
                    [{"field": _field_path(tuple(too_large["loc"])), "problem": too_large["msg"]}],
                ),
                status_code=413,
            )
        fields = validation_problems(exc, feature_names())
        summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields[:5])
        return JSONResponse(
            error_body(
                "validation_error",
                f"The request does not match the model's input schema ({summary}). "
                "GET /metadata or /docs lists the expected fields and types.",
                request_id,
                fields,
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            error_body(
                codes.get(exc.status_code, "http_error"), str(exc.detail), request_id_of(request)
            ),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request_id_of(request)
        log.exception(
            "Unhandled error on %s %s (request_id %s)",
            request.method,
            request.url.path,
            request_id,
        )
        return JSONResponse(error_body(*UNEXPECTED, request_id), status_code=500)


class ExitTrap:
    """ASGI middleware: a SystemExit or KeyboardInterrupt raised while answering a request is
    answered as any unexpected error, a JSON 500, and the process keeps serving.

    Without it the exception passes Starlette's error handling (which takes ``Exception``
    only) and uvicorn answers a plain-text 500. The model's own code cannot get here (see
    ``Predictor.predict``); this catches the rest.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except (SystemExit, KeyboardInterrupt):
            if scope["type"] != "http":
                raise
            request_id = scope.get("state", {}).get("request_id", "")
            log.exception(
                "SystemExit or KeyboardInterrupt on %s %s (request_id %s); serving on",
                scope["method"],
                scope["path"],
                request_id,
            )
            content = json.dumps(error_body(*UNEXPECTED, request_id)).encode()
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(content)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": content})
            except RuntimeError:
                # The answer had begun; the server ends the connection.
                log.warning("The answer to request_id %s was cut short", request_id)
