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

# A timer may fire this much before its time (the event loop rounds to milliseconds): the
# deadline counts as reached.
TIMER_SLACK_S = 0.005


class HeaderDeadline(asyncio.Protocol):
    """Mixin for uvicorn's HTTP protocols: closes a connection whose request headers are not
    complete ``header_read_s`` after they became due.

    Headers are due from the connection's opening and, on a kept-alive connection, from the
    first byte of the next request (until then uvicorn's keep-alive timeout applies). They are
    complete once uvicorn has started the request's cycle.

    The clock is a deadline checked by one timer per connection, not a timer per request: a
    request only writes and clears ``_deadline``; the timer, when it fires, closes the
    connection if its deadline has passed, re-arms for a later one, or lapses when no headers
    are due (the next request that makes them due arms it again). A timer created and
    cancelled on every request had cost ~10,000 instructions of a ~830,000-instruction
    ``/predict`` (callgrind, benchmarks/serving.py's Default service).
    """

    # uvicorn's protocol state read here.
    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, header_read_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_read_s = header_read_s
        self._header_timer: asyncio.TimerHandle | None = None
        # When the headers now due must be complete; None while none are due.
        self._deadline: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._headers_due()

    def data_received(self, data: bytes) -> None:
        # Bytes after a complete response (a body the app did not read, say) count as the
        # next request's: they must end in complete headers in time too.
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._headers_due()
        super().data_received(data)
        cycle = self.cycle
        if self._deadline is not None and cycle is not None and not cycle.response_complete:
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._deadline = None
        super().connection_lost(exc)

    def _headers_due(self) -> None:
        self._deadline = self.loop.time() + self.header_read_s
        if self._header_timer is None:
            self._header_timer = self.loop.call_at(self._deadline, self._check_headers)

    def _check_headers(self) -> None:
        self._header_timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if deadline - self.loop.time() > TIMER_SLACK_S:
            # Headers completed meanwhile and the next ones became due later.
            self._header_timer = self.loop.call_at(deadline, self._check_headers)
            return
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
    """``uvicorn.Config`` keyword arguments: event loop, HTTP protocol, connection limits and
    the access log."""
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
        "access_log": serving.access_log,
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
