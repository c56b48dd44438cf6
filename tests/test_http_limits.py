"""Nobody holds the HTTP ports (issue 15): slow bodies hold no in-flight place, connections are
capped and timed out, /metrics is served from the event loop, HTTP callers get a deadline and a
Retry-After, multipart never touches the disk, and shutdown refuses new HTTP work at once.
Real listeners on free ports, in front of an in-memory TF Serving; each test within 30 s."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import grpc
import grpc.aio
import numpy as np
import pytest
from PIL import Image

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.server import GatewayServer
from gateway.transport.listener import RepeatedLines, quiet_accept_errors
from tests.fakes import FakeUpstream
from tests.httpraw import exchange, multipart, png, post, read_answer, with_gateway

CLASSIFY = "/v1/models/colors:classify"


def counted(server: GatewayServer, method: str, code: str) -> float:
    labels = {"method": method, "model": "colors", "code": code}
    return server.registry.get_sample_value("tfs_gateway_requests_total", labels) or 0.0


async def grpc_classify(server: GatewayServer) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        request = classify_pb2.ClassifyRequest(model={"name": "colors"}, image=png())
        response = await stub.Classify(request, timeout=5)
        return response.classifications[0].class_id


async def open_slow_body(port: int) -> asyncio.StreamWriter:
    """A connection that promises a 1 MB body and sends one byte of it."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(CLASSIFY, b"\x89", "Content-Type: image/png", length=1_000_000))
    await writer.drain()
    return writer


def test_slow_bodies_beyond_the_in_flight_limit_lock_nobody_out() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        slow = server.config.max_in_flight + 32  # more than every in-flight place (default 128)
        writers = [await open_slow_body(server.http_port or 0) for _ in range(slow)]
        while server._http.in_flight.count < slow:  # every one is waiting for its body
            await asyncio.sleep(0.01)
        started = time.monotonic()
        assert await grpc_classify(server) == 0  # red
        answer = await exchange(server.http_port or 0, post(CLASSIFY, png()))
        assert answer.status == 200, answer.body
        assert time.monotonic() - started < 2.0  # measured: ~0.02 s
        assert server.calls.admission.in_flight == 0
        for writer in writers:
            writer.close()

    with_gateway(test)


def test_a_body_that_does_not_arrive_in_time_is_answered_408() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        writer.write(post(CLASSIFY, b"abc", length=1000))
        answer = await read_answer(reader)
        writer.close()
        assert answer.status == 408
        assert answer.error() == (
            "DEADLINE_EXCEEDED",
            "the request body did not arrive within 0.2 s",
        )
        assert counted(server, "http.Classify", "DEADLINE_EXCEEDED") == 1

    with_gateway(test, http_body_timeout_s=0.2)


def test_a_connection_over_the_cap_of_busy_ones_is_answered_503_at_once() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        assert server._http is not None
        busy = [await open_slow_body(server.http_port or 0) for _ in range(3)]
        while server._http.in_flight.count < 3:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        answer = await exchange(server.http_port or 0, post(CLASSIFY, png()))
        assert time.monotonic() - started < 1.0
        assert answer.status == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.error() == (
            "UNAVAILABLE",
            "the gateway is at its limit of 3 open HTTP connections",
        )
        for writer in busy:
            writer.close()
        while server._http.in_flight.count > 0:
            await asyncio.sleep(0.01)
        assert (await exchange(server.http_port or 0, post(CLASSIFY, png()))).status == 200

    with_gateway(test, max_http_connections=3)


def test_at_the_cap_the_oldest_idle_connection_makes_way_for_a_new_one() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        assert server._http is not None
        web_server = server._http.runner.server
        assert web_server is not None
        idle = [await asyncio.open_connection("127.0.0.1", server.http_port) for _ in range(3)]
        while len(web_server.connections) < 3:
            await asyncio.sleep(0.01)
        answer = await exchange(server.http_port or 0, post(CLASSIFY, png()))
        assert answer.status == 200
        oldest, _ = idle[0]
        assert await oldest.read() == b""  # closed by the gateway
        for _, writer in idle:
            writer.close()

    with_gateway(test, max_http_connections=3)


def test_a_connection_without_a_whole_header_is_closed_after_the_idle_timeout() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        for port in (server.http_port, server.metrics_port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: gateway\r\n")  # and no more
            started = time.monotonic()
            assert await reader.read() == b""  # closed by the gateway
            assert time.monotonic() - started < 3.0  # a 0.3 s timeout; aiohttp rounds up
            writer.close()

    with_gateway(test, http_idle_timeout_s=0.3)


def test_a_grpc_connection_that_never_speaks_http2_is_closed_after_the_idle_timeout() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        connections = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(50)]
        started = time.monotonic()
        for reader, writer in connections:
            data = await reader.read()  # the server's SETTINGS, then GOAWAY, then EOF
            assert b"Did not receive HTTP/2 settings before handshake timeout" in data
            writer.close()
        assert time.monotonic() - started < 3.0  # a 0.5 s timeout (gRPC's default is 120 s)
        assert await grpc_classify(server) == 0  # red, while and after

    with_gateway(test, http_idle_timeout_s=0.5)


def test_idle_connections_to_the_metrics_port_take_no_threads() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        threads = threading.active_count()
        idle = [
            await asyncio.open_connection("127.0.0.1", server.metrics_port) for _ in range(1000)
        ]
        request = b"GET /metrics HTTP/1.1\r\nHost: gateway\r\n\r\n"
        answer = await exchange(server.metrics_port or 0, request)
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert b"tfs_gateway_in_flight_limit 32.0" in answer.body
        assert threading.active_count() <= threads  # was one thread per connection
        for _, writer in idle:
            writer.close()

    with_gateway(test)


def test_the_metrics_port_serves_openmetrics_when_asked_and_binds_the_configured_host() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        accept = "Accept: application/openmetrics-text; version=1.0.0"
        request = f"GET /metrics HTTP/1.1\r\nHost: gateway\r\n{accept}\r\n\r\n".encode()
        answer = await exchange(server.metrics_port or 0, request)
        assert answer.headers["content-type"].startswith("application/openmetrics-text")
        assert answer.body.endswith(b"# EOF\n")
        assert server._metrics_listener is not None
        [sock] = server._metrics_listener.server.sockets
        assert sock.getsockname()[0] == "127.0.0.1"  # host, not every interface

    with_gateway(test)


def test_an_http_callers_timeout_ends_the_call_504_and_is_counted_so() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        upstream.hold()
        port = server.http_port or 0
        started = time.monotonic()
        by_header = await exchange(port, post(CLASSIFY, png(), "X-Request-Timeout: 0.2"))
        by_query = await exchange(port, post(CLASSIFY + "?timeout=0.1", png()))
        assert time.monotonic() - started < 2.0
        assert (by_header.status, by_query.status) == (504, 504)
        assert by_header.error() == ("DEADLINE_EXCEEDED", "the caller's timeout of 0.2 s passed")
        assert upstream.sent[0].timeout == pytest.approx(0.2, abs=0.05)  # passed on
        assert counted(server, "http.Classify", "DEADLINE_EXCEEDED") == 2
        assert server.calls.admission.in_flight == 0

    with_gateway(test)


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "soon"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(timeout: str) -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        answer = await exchange(server.http_port or 0, post(f"{CLASSIFY}?timeout={timeout}", png()))
        assert answer.status == 400
        assert answer.error() == (
            "INVALID_ARGUMENT",
            f"timeout must be a number of seconds above 0, got {timeout!r}",
        )

    with_gateway(test)


def test_shed_callers_are_told_when_to_come_back() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        server.calls.admission.limit = 1
        upstream.hold()
        url = f"http://127.0.0.1:{server.http_port}{CLASSIFY}"
        async with aiohttp.ClientSession() as session:
            first = asyncio.ensure_future(session.post(url, data=png()))
            await upstream.wait_sent(1)
            async with session.post(url, data=png()) as shed:
                assert shed.status == 429
                assert shed.headers["Retry-After"] == "3"  # 2500 ms, rounded up
            upstream.release()
            assert (await first).status == 200

    with_gateway(test, retry_after_ms=2500)


def test_a_2_mib_multipart_upload_works_without_a_writable_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)
    monkeypatch.setattr(tempfile, "tempdir", str(read_only))
    noise = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    noise[..., 0] = 255  # red dominates, whatever the noise
    image = io_png(Image.fromarray(noise))
    assert len(image) > 2 * 1024 * 1024

    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        body = multipart("b0undary", ("top_k", b"1"), ("image", image))
        header = "Content-Type: multipart/form-data; boundary=b0undary"
        answer = await exchange(server.http_port or 0, post(CLASSIFY, body, header))
        assert answer.status == 200, answer.body

    if os.geteuid() == 0:  # root writes anywhere: make the directory unusable instead
        monkeypatch.setattr(tempfile, "tempdir", str(read_only / "missing"))
    with_gateway(test)


def io_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def test_after_shutdown_starts_http_refuses_new_connections_and_finishes_calls_in_flight() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        upstream.hold()
        port = server.http_port or 0
        in_flight = asyncio.ensure_future(exchange(port, post(CLASSIFY, png())))
        await upstream.wait_sent(1)
        stopping = asyncio.ensure_future(server.stop(grace=10))
        while True:  # the listener closes once shutdown_delay_s has passed
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                break
            except ConnectionResetError:  # it was in the backlog as the listener closed
                continue
            writer.close()
            await asyncio.sleep(0.01)
        upstream.release()
        assert (await in_flight).status == 200  # the call in flight finished
        await stopping

    with_gateway(test, shutdown_delay_s=0.1)


def test_start_up_raises_the_open_files_limit_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:

        async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
            assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)

        with_gateway(test)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_flood_of_accept_errors_is_logged_once_then_with_a_count(caplog) -> None:
    quiet_accept_errors()
    assert any(isinstance(f, RepeatedLines) for f in logging.getLogger("asyncio").filters)
    flooded = logging.getLogger("tests.flooded")
    repeated = RepeatedLines("socket.accept() out of system resource", period_s=3600)
    flooded.addFilter(repeated)
    caplog.set_level(logging.ERROR, logger="tests.flooded")
    for _ in range(1000):
        flooded.error("socket.accept() out of system resource\nsocket: %s", "x")
    flooded.error("something else")
    repeated.last -= 3600  # the period has passed
    flooded.error("socket.accept() out of system resource\nsocket: %s", "x")
    assert [r.getMessage() for r in caplog.records] == [
        "socket.accept() out of system resource\nsocket: x",
        "something else",
        "socket.accept() out of system resource\nsocket: x (999 more like it not logged)",
    ]
