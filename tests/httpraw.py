"""A started gateway for HTTP tests, and raw HTTP/1.1 over a socket for what a well-behaved
client library will not send (slow bodies, half headers, broken multipart)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from PIL import Image
from prometheus_client import CollectorRegistry

from gateway.config import GatewayConfig, ModelSettings
from gateway.server import GatewayServer, create_server
from tests.fakes import FakeUpstream, classifier


def png(colour: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def with_gateway(
    test: Callable[[GatewayServer, FakeUpstream], Awaitable[None]], **settings: object
) -> None:
    """Run ``test`` (within 30 s) against a started gateway: gRPC, HTTP and metrics on free
    loopback ports, default limits unless ``settings`` say otherwise."""

    async def main() -> None:
        upstream = FakeUpstream(classifier("colors"))
        config = GatewayConfig(
            host="127.0.0.1", port=0, http_port=0, metrics_port=0, status_poll_s=3600,
            models=(ModelSettings("colors"),), **settings,  # type: ignore[arg-type]
        )  # fmt: skip
        server = create_server(config, registry=CollectorRegistry(), upstream=upstream)
        await server.start()
        try:
            async with asyncio.timeout(30):
                await test(server, upstream)
        finally:
            upstream.release()
            await server.stop(grace=0)

    asyncio.run(main())


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def error(self) -> tuple[str, str]:
        error = json.loads(self.body)["error"]
        return error["code"], error["message"]


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(status, headers, body)


async def exchange(port: int, request: bytes) -> Answer:
    """Send ``request`` as it is on a new connection and read one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await read_answer(reader)
    finally:
        writer.close()


def post(path: str, body: bytes, *headers: str, length: int | None = None) -> bytes:
    """A POST as bytes; ``length``: the Content-Length to claim, if not ``len(body)``."""
    length = len(body) if length is None else length
    head = [f"POST {path} HTTP/1.1", "Host: gateway", f"Content-Length: {length}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def multipart(boundary: str, *parts: tuple[str, bytes]) -> bytes:
    body = b""
    for name, data in parts:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        body += data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()
