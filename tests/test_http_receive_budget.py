"""The receive budget (max_receive_bytes_in_flight): an HTTP body's bytes are held, from its
header, before any of it is read and until its call ends; a body that does not fit is shed
429 at once, unread. Real listeners on free ports, raw sockets for slow senders."""

from __future__ import annotations

import asyncio
import gzip
import io
import time

import numpy as np
import pytest
from PIL import Image

from gateway.server import GatewayServer
from tests.fakes import FakeUpstream
from tests.httpraw import exchange, png, post, read_answer, with_gateway

CLASSIFY = "/v1/models/colors:classify"
KIB, MIB = 1024, 1024 * 1024
ONE_MIB_BUDGET = {"max_receive_bytes_in_flight": MIB, "max_message_bytes": MIB}


def big_png() -> bytes:
    """A red-dominated PNG of ~600 KiB (noise, uncompressed)."""
    noise = np.random.default_rng(0).integers(0, 256, (350, 585, 3), dtype=np.uint8)
    noise[..., 0] = 255
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def held(server: GatewayServer) -> tuple[int, float | None]:
    """The budget's bytes in use, as held and as exported."""
    gauge = server.registry.get_sample_value("tfs_gateway_receive_bytes_in_flight")
    return server.calls.receiving.used, gauge


async def until_held(server: GatewayServer, nbytes: int) -> None:
    while server.calls.receiving.used != nbytes:
        await asyncio.sleep(0.01)


def test_a_body_that_does_not_fit_is_shed_429_at_once_unread_and_the_first_completes() -> None:
    image = big_png()
    assert 590 * KIB < len(image) < 610 * KIB

    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        port = server.http_port or 0
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(CLASSIFY, image[:1000], length=len(image)))  # the rest comes later
        await until_held(server, len(image))  # held from the header, before it is read
        assert held(server) == (len(image), len(image))

        started = time.monotonic()
        shed = await exchange(port, post(CLASSIFY, image[:1000], length=len(image)))
        assert time.monotonic() - started < 1.0  # measured: ~0.001 s
        assert shed.status == 429
        assert shed.headers["retry-after"] == "1"
        assert shed.error() == (
            "RESOURCE_EXHAUSTED",
            "the gateway is receiving its limit of requests (1.0 MiB "
            "max_receive_bytes_in_flight); this one may take 0.6 MiB: retry later",
        )
        too_large = await exchange(port, post(CLASSIFY, b"", length=MIB + 1))
        assert too_large.status == 413  # the message limit is said first, budget or not
        small = await exchange(port, post(CLASSIFY, png()))  # the budget has room for it
        assert small.status == 200, small.body
        assert held(server) == (len(image), len(image))  # the first is still sending

        writer.write(image[1000:])
        answer = await read_answer(reader)
        writer.close()
        assert answer.status == 200, answer.body
        assert held(server) == (0, 0.0)
        labels = {"method": "http.Classify", "model": "colors", "code": "RESOURCE_EXHAUSTED"}
        assert server.registry.get_sample_value("tfs_gateway_requests_total", labels) == 2

    with_gateway(test, **ONE_MIB_BUDGET)


@pytest.mark.parametrize("ending", ["the client disconnects", "the body times out"])
def test_a_body_that_never_arrives_gives_its_bytes_back(ending: str) -> None:
    image = big_png()

    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        writer.write(post(CLASSIFY, image[:1000], length=len(image)))
        await until_held(server, len(image))
        if ending == "the client disconnects":
            writer.close()
        else:
            answer = await read_answer(reader)
            writer.close()
            assert answer.status == 408
            assert held(server) == (0, 0.0)
        await until_held(server, 0)
        assert held(server) == (0, 0.0)
        second = await exchange(server.http_port or 0, post(CLASSIFY, image))
        assert second.status == 200, second.body  # the whole budget is there again
        assert held(server) == (0, 0.0)

    with_gateway(test, http_body_timeout_s=0.5, **ONE_MIB_BUDGET)


def _chunked_head(*headers: str) -> bytes:
    head = [f"POST {CLASSIFY} HTTP/1.1", "Host: gateway", "Transfer-Encoding: chunked", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.mark.parametrize("kind", ["chunked", "gzip"])
def test_a_body_of_unknown_size_holds_the_message_limit_then_only_what_it_read(kind: str) -> None:
    image = png()
    if kind == "chunked":
        first, rest = _chunked_head() + _chunk(image[:10]), _chunk(image[10:]) + b"0\r\n\r\n"
    else:  # Content-Length counts compressed bytes: it says nothing of the body's size
        body = gzip.compress(image)
        first = post(CLASSIFY, body[:10], "Content-Encoding: gzip", length=len(body))
        rest = body[10:]
    limit = 512 * KIB

    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        upstream.hold()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        writer.write(first)
        await until_held(server, limit)
        assert held(server) == (limit, limit)
        writer.write(rest)
        await upstream.wait_sent(1)
        assert held(server) == (len(image), len(image))  # the body lives until the call ends
        upstream.release()
        answer = await read_answer(reader)
        writer.close()
        assert answer.status == 200, answer.body
        assert held(server) == (0, 0.0)

    with_gateway(test, max_message_bytes=limit, max_receive_bytes_in_flight=MIB)
