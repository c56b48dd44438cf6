"""Errors to callers never carry TF Serving's addresses (issue 14): gRPC details, HTTP JSON,
ModelInfo.status_message; the log keeps the address, with the request id the caller sees."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import grpc.aio
import pytest
from prometheus_client import CollectorRegistry

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.errors import UpstreamError
from gateway.server import GatewayServer, create_server
from tests.fakes import FakeUpstream, classifier
from tests.images import solid
from tests.test_server import config_with

REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:{port}: "
    "Failed to connect to remote host: Connection refused"
)


@pytest.mark.parametrize(
    ("details", "shown"),
    [
        (REFUSED.format(port=8500), "cannot connect to TF Serving"),
        ("DNS resolution failed for tfserving:8500: C-ares status is not ARES_SUCCESS",
         "cannot connect to TF Serving"),
        ("Cannot connect to host 10.0.0.5:8501 ssl:default [Connect call failed ('10.0.0.5', 1)]",
         "cannot connect to TF Serving"),
        ("Servable not found for request: Specific(colors, 9)",
         "Servable not found for request: Specific(colors, 9)"),
        ("reset by peer ipv6:[::1]:8500", "reset by peer <address>"),
        ("backend tfs-0.tfs.svc:8500 went away", "backend <address> went away"),
        ("GET http://10.1.2.3:8501/v1/models/x failed", "GET <address> failed"),
    ],
)  # fmt: skip
def test_upstream_messages_lose_their_addresses(details: str, shown: str) -> None:
    error = UpstreamError(grpc.StatusCode.UNAVAILABLE, details, "Predict")
    assert error.message == f"upstream: {shown}"
    assert error.logged == f"upstream: {details}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(server: GatewayServer, path: str, body: bytes | None = None) -> str:
    url = f"http://127.0.0.1:{server.http_port}{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as answer:
            return str(answer.read().decode())
    except urllib.error.HTTPError as error:
        return str(error.read().decode())


async def _everything_a_caller_sees(server: GatewayServer) -> list[str]:
    seen = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        request = classify_pb2.ClassifyRequest(model={"name": "colors"}, image=solid("red"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Classify(request)
        seen.append(refused.value.details() or "")
        models = await stub.ListModels(classify_pb2.ListModelsRequest())
        seen += [m.status_message for m in models.models]
    seen.append(await asyncio.to_thread(_http, server, "/v1/models/colors:classify", solid("red")))
    for path in ("/v1/models", "/v1/models/colors", "/readyz"):
        seen.append(await asyncio.to_thread(_http, server, path))
    return seen


def test_with_tf_serving_gone_no_caller_sees_its_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    port = _free_port()  # nothing listens there: TF Serving is stopped
    config = config_with(tmp_path / "labels.txt", upstream=f"127.0.0.1:{port}")

    async def main() -> None:
        server = create_server(config, CollectorRegistry())
        await server.start()
        try:
            seen = await _everything_a_caller_sees(server)
        finally:
            await server.stop(grace=0)
        assert seen[0] == "model 'colors' is not ready: upstream: cannot connect to TF Serving"
        assert all(str(port) not in text and "127.0.0.1" not in text for text in seen), seen
        assert "cannot connect to TF Serving" in json.loads(seen[2])["error"]["message"]

    caplog.set_level(logging.INFO)
    asyncio.run(main())
    assert any(f"127.0.0.1:{port}" in message for message in caplog.messages)


def test_a_failed_predict_names_the_request_id_whose_log_line_has_the_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    upstream = FakeUpstream(classifier())
    upstream.fail(
        "send", UpstreamError(grpc.StatusCode.UNAVAILABLE, REFUSED.format(port=8500), "x")
    )

    async def test(server: GatewayServer) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = classify_pb2_grpc.ImageGatewayStub(channel)
            request = classify_pb2.ClassifyRequest(
                model={"name": "colors"}, image=solid("red"), request_id="r-7"
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Classify(request)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert refused.value.details() == "upstream: cannot connect to TF Serving (request id r-7)"

    async def main() -> None:
        server = create_server(config_with(tmp_path / "labels.txt"), upstream=upstream)
        await server.start()
        try:
            await test(server)
        finally:
            await server.stop(grace=0)

    asyncio.run(main())
    [line] = [m for m in caplog.messages if "request id r-7" in m]
    assert "ipv4:127.0.0.1:8500" in line
