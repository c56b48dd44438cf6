"""The one way a call is observed, whatever carried it (gRPC unary, a stream, one stream frame,
HTTP): admission, the error table, incident ids, logging and request metrics.

Every transport wraps its work in ``with calls.observe(...) as call:`` (inference adds
``, calls.admitted()`` to hold an in-flight place) and afterwards answers ``call.error`` if
there is one; no transport catches exceptions or records metrics itself. A cross-cutting
concern (auth, tracing, access log) is added here, once, for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType

import grpc

from gateway.config import GatewayConfig
from gateway.errors import (
    GatewayError,
    InternalError,
    OverloadedError,
    ReceiveBudgetError,
    StreamIdleError,
    TooManyStreamsError,
    UpstreamError,
)
from gateway.memory_budget import MemoryBudget, Reservation, mib
from gateway.metrics import Metrics

log = logging.getLogger(__name__)


class Admission:
    """The in-flight limit: a call holds a place while it runs, or is shed at once, told to
    come back after ``retry_after_ms``."""

    def __init__(self, metrics: Metrics, limit: int, retry_after_ms: int = 1000) -> None:
        self.metrics = metrics
        self.in_flight = 0
        self.limit = limit
        self.retry_after_ms = retry_after_ms
        metrics.in_flight_limit.set(limit)

    @contextlib.contextmanager
    def place(self) -> Iterator[None]:
        if self.in_flight >= self.limit:
            raise OverloadedError(
                f"the gateway is at its limit of {self.limit} requests in flight",
                self.retry_after_ms,
            )
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()


@dataclass(slots=True)
class Call:
    """One call as observed: what it was for and how it ended. Transports may fill in
    ``model`` and ``request_id`` once they have read them (HTTP reads them from the body)."""

    method: str
    model: str = ""
    request_id: str = ""
    deadline: float | None = None  # time.monotonic() by which the caller wants an answer
    started: float = field(default_factory=time.perf_counter)
    error: GatewayError | None = None
    cancelled: bool = False
    deadline_passed: bool = False  # when cancelled: because the caller's deadline passed

    @property
    def code(self) -> grpc.StatusCode:
        if self.cancelled and self.deadline_passed:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        if self.cancelled:
            return grpc.StatusCode.CANCELLED
        return grpc.StatusCode.OK if self.error is None else self.error.code

    def incident_id(self) -> str:
        """What the log line and the caller's message both name: the caller's request id, or
        a fresh one."""
        return self.request_id or uuid.uuid4().hex[:12]


def deadline_after(seconds: float | None) -> float | None:
    """The ``time.monotonic()`` deadline of a caller that allows ``seconds`` (None: none), for
    :meth:`Calls.observe`; transports read ``seconds`` from gRPC's deadline or HTTP's timeout."""
    return None if seconds is None else time.monotonic() + seconds


class Draining:
    """Shutdown, as open streams see it: once ``started``, they read no more frames and answer
    those they accepted by ``deadline`` (``time.monotonic()``), when the server's grace ends."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.deadline = math.inf

    def begin(self, deadline: float) -> None:
        self.deadline = deadline
        self.started.set()

    async def passed(self) -> None:
        await self.started.wait()
        await asyncio.sleep(max(0.0, self.deadline - time.monotonic()))


class Calls:
    def __init__(
        self,
        metrics: Metrics,
        max_in_flight: int,
        retry_after_ms: int = 1000,
        max_streams: int = 256,
        max_receive_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.metrics = metrics
        self.admission = Admission(metrics, max_in_flight, retry_after_ms)
        # Requests being received (HTTP bodies, gRPC messages), held until their call ends
        # (max_receive_bytes_in_flight): one budget for both transports.
        self.receiving = MemoryBudget(max_receive_bytes, retry_after_ms)
        metrics.receive_bytes.set_function(lambda: self.receiving.used)
        self.max_streams = max_streams
        self.streams = 0
        self.draining = Draining()

    @classmethod
    def for_config(cls, metrics: Metrics, config: GatewayConfig) -> Calls:
        return cls(
            metrics,
            config.max_in_flight,
            retry_after_ms=config.retry_after_ms,
            max_streams=config.max_streams,
            max_receive_bytes=config.max_receive_bytes_in_flight,
        )

    def reconfigure(self, config: GatewayConfig, max_message_bytes: int) -> None:
        """A reload's new limits; calls in flight keep the places they hold.
        ``max_message_bytes`` is the message limit in force (fixed at start): the receive
        budget never goes below it, or a message of that size could never fit."""
        self.admission.limit = config.max_in_flight
        self.admission.retry_after_ms = config.retry_after_ms
        self.metrics.in_flight_limit.set(config.max_in_flight)
        self.max_streams = config.max_streams
        self.receiving.limit = max(config.max_receive_bytes_in_flight, max_message_bytes)
        self.receiving.retry_after_ms = config.retry_after_ms

    def receiving_request(self, nbytes: int) -> Reservation:
        """Hold ``nbytes`` of a request about to be read (give back what it did not need with
        ``keep``), or ReceiveBudgetError before any of it is read."""
        budget = self.receiving

        def refused() -> GatewayError:
            return ReceiveBudgetError(
                f"the gateway is receiving its limit of requests ({mib(budget.limit)} MiB "
                f"max_receive_bytes_in_flight); this one may take {mib(nbytes)} MiB: retry later",
                budget.retry_after_ms,
            )

        return budget.hold(nbytes, refused)

    @contextlib.contextmanager
    def stream_admitted(self) -> Iterator[None]:
        """Hold one of ``max_streams`` places while a stream is open, or raise
        TooManyStreamsError at once (inside ``observe``, like ``admitted``)."""
        if self.streams >= self.max_streams:
            raise TooManyStreamsError(
                f"the gateway is at its limit of {self.max_streams} open streams"
            )
        self.streams += 1
        try:
            yield
        finally:
            self.streams -= 1

    def admitted(self) -> contextlib.AbstractContextManager[None]:
        """Hold an in-flight place for the body, or raise OverloadedError (inside ``observe``,
        which answers it like any other error)."""
        return self.admission.place()

    def observe(
        self,
        method: str,
        model: str = "",
        request_id: str = "",
        stream: bool = False,
        deadline: float | None = None,
    ) -> Observed:
        """Run the body as one call (see :class:`Observed`). ``stream``: count the call among
        the open streams while it lasts. ``deadline`` (see :func:`deadline_after`): a call
        cancelled once it has passed is counted DEADLINE_EXCEEDED, as its caller saw it."""
        return Observed(self, Call(method, model, request_id, deadline), stream)


class Observed:
    """The context of one call. A GatewayError, or any other exception (a bug: logged with an
    incident id, answered as INTERNAL without a traceback), ends up in ``call.error`` and is
    not raised; cancellation (the caller left, or shutdown) is recorded as CANCELLED, or as
    DEADLINE_EXCEEDED once the call's deadline has passed, and propagates. Either way the
    call is counted once, when it ends."""

    def __init__(self, calls: Calls, call: Call, stream: bool) -> None:
        self.calls = calls
        self.call = call
        self.stream = stream

    def __enter__(self) -> Call:
        if self.stream:
            self.calls.metrics.streams_active.inc()
        return self.call

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        call, metrics = self.call, self.calls.metrics
        if self.stream:
            metrics.streams_active.dec()
        if isinstance(exc, UpstreamError) and exc.logged != exc.message:
            # The caller's message lost TF Serving's addresses; the log keeps them.
            incident = call.incident_id()
            log.warning("%s failed (request id %s): %s", call.method, incident, exc.logged)
            call.error = exc.with_request_id(incident)
        elif isinstance(exc, GatewayError):
            call.error = exc
            if isinstance(exc, StreamIdleError):
                metrics.streams_idle_ended.inc()
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            call.cancelled = True
            call.deadline_passed = call.deadline is not None and time.monotonic() >= call.deadline
        elif isinstance(exc, Exception):
            incident = call.incident_id()
            log.error("%s failed (request id %s)", call.method, incident, exc_info=exc)
            call.error = InternalError(f"internal error (request id {incident})")
        metrics.record_request(call.method, call.model, call.code.name, call.started)
        return call.error is not None  # the error is the call's answer; anything else goes on
