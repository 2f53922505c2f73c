"""Client *connections*: how long a client may take, and how many may be open at once.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) and answers 503 beyond
``limit_concurrency``, but it waits for request headers forever: a client that opens
connections and sends nothing, or a header line now and then (slowloris), holds them as long
as it likes. :class:`HeaderDeadline` closes a connection whose request headers are not complete
``serving.timeouts.header_read_s`` after they became due. The body has its own deadline in the
app (:class:`.guards.BodyLimits` answers 408), which holds however the app is served.

:func:`uvicorn_options` turns the ``serving`` settings into uvicorn's, for ``serve`` with one
worker and, through :func:`gunicorn_worker`, for every gunicorn worker: gunicorn's own
connection settings (``keepalive``, ``worker_connections``, ``limit_request_*``) do not reach
uvicorn workers.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import ServingConfig


class HeaderDeadline(asyncio.Protocol):
    """Mixin for uvicorn's HTTP protocols: closes a connection whose request headers are not
    complete ``header_read_s`` after they became due.

    Headers are due from the connection's opening and, on a kept-alive connection, from the
    first byte of the next request (until then uvicorn's keep-alive timeout applies). They are
    complete once uvicorn has started the request's cycle.
    """

    # uvicorn's protocol state read here.
    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, header_read_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_read_s = header_read_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_header_clock()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._awaiting_headers():
            self._start_header_clock()
        super().data_received(data)
        if not self._awaiting_headers():
            self._stop_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def _awaiting_headers(self) -> bool:
        # Bytes after a complete response (a body the app did not read, say) count as the
        # next request's: they must end in complete headers in time too.
        return self.cycle is None or self.cycle.response_complete

    def _start_header_clock(self) -> None:
        self._header_timer = self.loop.call_later(self.header_read_s, self._headers_too_late)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_late(self) -> None:
        self._header_timer = None
        # No answer, as nginx's client_header_timeout: there is no request to answer.
        if not self.transport.is_closing():
            self.transport.close()


class H11WithDeadline(HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with a header deadline."""


HTTPTOOLS = importlib.util.find_spec("httptools") is not None
if HTTPTOOLS:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsWithDeadline(HeaderDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with a header deadline."""


def uvicorn_options(serving: ServingConfig) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments: event loop, HTTP protocol and connection limits."""
    options: dict[str, Any] = {
        # A class uvicorn calls with its own arguments; a partial of a module-level class
        # still pickles, as uvicorn's own worker processes need.
        "http": functools.partial(
            HttpToolsWithDeadline if HTTPTOOLS else H11WithDeadline,
            header_read_s=serving.timeouts.header_read_s,
        ),
        "timeout_keep_alive": serving.timeouts.keep_alive_s,
        "limit_concurrency": serving.max_connections,
        "backlog": serving.backlog,
    }
    # uvicorn's plain asyncio loop with several workers adds ~40 ms to keep-alive responses
    # (uvicorn issue #3149); uvloop does not, and is faster anyway.
    if importlib.util.find_spec("uvloop") is not None:
        options["loop"] = "uvloop"
    return options


def gunicorn_worker(serving: ServingConfig) -> type:
    """A gunicorn worker class running uvicorn with :func:`uvicorn_options`."""
    from uvicorn_worker import UvicornWorker

    # gunicorn made the listening socket: its backlog is gunicorn's setting.
    options = {key: value for key, value in uvicorn_options(serving).items() if key != "backlog"}

    class ServiceWorker(UvicornWorker):
        CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, **options}

    return ServiceWorker
