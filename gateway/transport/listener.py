"""HTTP listeners on the gateway's event loop (the API and the metrics endpoint), bounded so that
no caller can hold the port: a cap on open connections (at the cap the oldest idle one is
closed for a new one; when every one has a request running, the new one is answered 503 at
once and closed, never queued), a timeout for a connection that sends no whole request header
(slow or idle, aiohttp's keep-alive timer covers both), and a stop that refuses new
connections at once while requests in flight finish."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.errors import ConnectionLimitError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    max_connections: int = 512
    idle_timeout_s: float = 15.0  # no whole request header for this long: the connection closes
    retry_after_s: int = 1  # what a refused caller is told


class _Refused(asyncio.Protocol):
    """A connection over the cap: answered 503 without reading the request, then closed once
    the caller has read it (or after a second), so the answer is not lost to a reset."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.answer)
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(1.0, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read: it is refused whatever it is

    def eof_received(self) -> bool:
        return False  # the caller is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _refusal(limits: ListenerLimits) -> bytes:
    error = ConnectionLimitError(
        f"the gateway is at its limit of {limits.max_connections} open HTTP connections"
    )
    body = json.dumps({"error": {"code": error.code.name, "message": error.message}}).encode()
    head = (
        f"HTTP/1.1 {error.http.value} {error.http.phrase}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Retry-After: {limits.retry_after_s}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def retry_after_s(retry_after_ms: int) -> int:
    """``Retry-After`` is in whole seconds; at least 1 so that a caller always backs off."""
    return max(1, math.ceil(retry_after_ms / 1000))


class _InFlight:
    """The requests a listener is handling (and on which connections), so that a stop knows
    when it is quiet and the cap knows which connections are idle."""

    def __init__(self) -> None:
        self.count = 0
        self.quiet = asyncio.Event()
        self.busy: set[object] = set()  # the connections (protocols) with a request running

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.count += 1
        self.quiet.clear()
        self.busy.add(request.protocol)
        try:
            return await handler(request)
        finally:
            self.busy.discard(request.protocol)
            self.count -= 1
            if self.count == 0:
                self.quiet.set()


@dataclass(frozen=True, slots=True)
class Listener:
    """One HTTP app served on one port: ``await Listener.start(app, host, port, limits)``."""

    runner: web.AppRunner
    server: asyncio.Server
    port: int
    in_flight: _InFlight

    @classmethod
    async def start(
        cls, app: web.Application, host: str, port: int, limits: ListenerLimits
    ) -> Listener:
        in_flight = _InFlight()
        app.middlewares.insert(0, in_flight.middleware)
        # handler_cancellation: a caller that hangs up cancels its work (decode, the Predict),
        # as a gRPC cancel does. keepalive_timeout: aiohttp arms it when a connection opens and
        # after each response, and closes the connection if no whole request header has come
        # by then, so it is the header timeout too. shutdown_timeout: ``stop`` has already
        # waited for the requests in flight.
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            keepalive_timeout=limits.idle_timeout_s,
            shutdown_timeout=0.05,
        )
        await runner.setup()
        web_server = runner.server
        assert web_server is not None
        refusal = _refusal(limits)

        def protocol() -> asyncio.Protocol:
            # At the cap, the oldest connection with no request running (idle keep-alive, or
            # a header still arriving) makes way; if every one is busy, the new one is refused.
            open_ = [c for c in web_server.connections if c.transport is not None]
            if len(open_) >= limits.max_connections:
                idle = next((c for c in open_ if c not in in_flight.busy), None)
                if idle is None:
                    return _Refused(refusal)
                idle.force_close()
            return web_server()

        loop = asyncio.get_running_loop()
        bare = host.strip("[]")
        if bare in ("", "::", "0.0.0.0"):
            server = await loop.create_server(protocol, sock=_dual_stack_socket(port))
        else:
            server = await loop.create_server(protocol, bare, port, reuse_address=True)
        return cls(runner, server, server.sockets[0].getsockname()[1], in_flight)

    async def stop(self, grace: float) -> None:
        """Refuse new connections now, close idle keep-alive connections, let requests in
        flight finish within ``grace`` seconds, then cancel what is left."""
        self.server.close()
        web_server = self.runner.server
        if web_server is not None:
            web_server.pre_shutdown()  # each connection closes after its current request
        if self.in_flight.count:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.in_flight.quiet.wait()
        await self.runner.cleanup()


def _dual_stack_socket(port: int) -> socket.socket:
    """One socket for IPv4 and IPv6 on every interface. (asyncio would make "::" IPv6-only,
    and with port 0 bind the two families to two different ports.)"""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[str, int] = ("::", port)
    except OSError:  # no IPv6 on this host
        sock, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    return sock


class RepeatedLines(logging.Filter):
    """Lets a log line that starts with ``prefix`` through once per ``period_s``, noting how
    many were held back: out of file descriptors, asyncio logs one per accept attempt, and
    the log grew 101 MB in 30 s (issue 15)."""

    def __init__(self, prefix: str, period_s: float = 10.0) -> None:
        super().__init__()
        self.prefix = prefix
        self.period_s = period_s
        self.last = -math.inf
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.prefix):
            return True
        now = time.monotonic()
        if now - self.last < self.period_s:
            self.held += 1
            return False
        if self.held:
            record.msg, record.args = f"{message} ({self.held} more like it not logged)", None
        self.last, self.held = now, 0
        return True


def quiet_accept_errors() -> None:
    """Rate-limit asyncio's "socket.accept() out of system resource" lines (once per process)."""
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, RepeatedLines) for f in asyncio_log.filters):
        asyncio_log.addFilter(RepeatedLines("socket.accept() out of system resource"))


def raise_open_files_limit() -> None:
    """Every connection is a file descriptor: take the hard ``nofile`` limit, not the (often
    1024) soft one, so that idle connections are timed out before descriptors run out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:  # e.g. an unlimited hard limit on macOS
            logging.getLogger(__name__).warning(
                "could not raise the open files limit from %d to %d: %s", soft, hard, error
            )
