"""One way to observe a call (gateway/calls.py): the same failure reads the same through gRPC
unary, a stream, one stream frame and HTTP — status, incident id and counter — on a real
gateway (real gRPC and HTTP servers on free ports) in front of an in-memory TF Serving."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import grpc
import grpc.aio
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.config import GatewayConfig, ModelSettings
from gateway.server import GatewayServer, create_server
from tests.fakes import FakeUpstream, classifier

BUG = RuntimeError("a bug in the gateway")


def png(colour: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def with_gateway(
    test: Callable[
        [GatewayServer, FakeUpstream, classify_pb2_grpc.ImageGatewayStub], Awaitable[None]
    ],
) -> None:
    """Run ``test`` against a started gateway (gRPC and HTTP on free ports, no metrics port)."""

    async def main() -> None:
        upstream = FakeUpstream(classifier("colors"))
        config = GatewayConfig(
            host="127.0.0.1", port=0, http_port=0, metrics_port=-1, status_poll_s=3600,
            models=(ModelSettings("colors"),),
        )  # fmt: skip
        server = create_server(config, registry=CollectorRegistry(), upstream=upstream)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                await test(server, upstream, classify_pb2_grpc.ImageGatewayStub(channel))
        finally:
            upstream.release()
            await server.stop(grace=0)

    asyncio.run(main())


def requests_counted(server: GatewayServer, method: str, code: str, model: str = "colors") -> float:
    value = server.registry.get_sample_value(
        "tfs_gateway_requests_total", {"method": method, "model": model, "code": code}
    )
    return value or 0.0


async def frames(
    *messages: classify_pb2.StreamRequest,
) -> AsyncIterator[classify_pb2.StreamRequest]:
    for message in messages:
        yield message


def stream_options(request_id: str) -> classify_pb2.StreamRequest:
    task = classify_pb2.ModelTask(model=classify_pb2.ModelRef(name="colors"))
    return classify_pb2.StreamRequest(
        options=classify_pb2.StreamOptions(tasks=[task], request_id=request_id)
    )


def test_a_bug_reads_the_same_through_unary_http_stream_and_frame(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="gateway.calls")

    async def test(server: GatewayServer, upstream: FakeUpstream, stub) -> None:
        upstream.fail("send", BUG, BUG, BUG)  # unary, HTTP, frame

        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.Classify(
                classify_pb2.ClassifyRequest(model={"name": "colors"}, image=png(), request_id="r1")
            )
        assert unary.value.code() == grpc.StatusCode.INTERNAL
        assert unary.value.details() == "internal error (request id r1)"

        url = f"http://127.0.0.1:{server.http_port}/v1/models/colors:classify?request_id=r2"
        async with aiohttp.ClientSession() as session, session.post(url, data=png()) as answer:
            assert answer.status == 500
            assert await answer.json() == {
                "error": {"code": "INTERNAL", "message": "internal error (request id r2)"}
            }

        frame = classify_pb2.StreamRequest(frame=classify_pb2.Frame(frame_id=7, image=png()))
        [response] = [r async for r in stub.Stream(frames(stream_options("r3"), frame))]
        assert (response.error.frame_id, response.error.code, response.error.message) == (
            7, "INTERNAL", "internal error (request id r3.7)",
        )  # fmt: skip

        def broken_resolve(tasks: object) -> object:
            raise BUG

        server.dataplane.resolve = broken_resolve  # type: ignore[method-assign]
        call = stub.Stream(frames(stream_options("r4")))
        with pytest.raises(grpc.aio.AioRpcError) as stream:
            async for _ in call:
                pass
        assert stream.value.code() == grpc.StatusCode.INTERNAL
        assert stream.value.details() == "internal error (request id r4)"

        for method in ("Classify", "http.Classify", "StreamFrame", "Stream"):
            assert requests_counted(server, method, "INTERNAL") == 1, method
        assert requests_counted(server, "Stream", "OK") == 1  # the stream that carried frame 7

    with_gateway(test)
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "Classify failed (request id r1)",
        "http.Classify failed (request id r2)",
        "StreamFrame failed (request id r3.7)",
        "Stream failed (request id r4)",
    ]
    assert all(r.exc_info and r.exc_info[1] is BUG for r in caplog.records)  # the traceback


def test_a_caller_error_reads_the_same_through_unary_http_and_frame() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.Classify(classify_pb2.ClassifyRequest(model={"name": "colors"}, image=b"x"))
        url = f"http://127.0.0.1:{server.http_port}/v1/models/colors:classify"
        async with aiohttp.ClientSession() as session, session.post(url, data=b"x") as answer:
            body = await answer.json()
        frame = classify_pb2.StreamRequest(frame=classify_pb2.Frame(frame_id=1, image=b"x"))
        [response] = [r async for r in stub.Stream(frames(stream_options(""), frame))]

        message = unary.value.details()
        assert message == (
            "the data is not an image in a supported format (JPEG, PNG, WEBP, BMP, GIF); "
            "first bytes: 78"
        )
        assert unary.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (answer.status, body["error"]) == (
            400,
            {"code": "INVALID_ARGUMENT", "message": message},
        )
        assert (response.error.code, response.error.message) == ("INVALID_ARGUMENT", message)
        for method in ("Classify", "http.Classify", "StreamFrame"):
            assert requests_counted(server, method, "INVALID_ARGUMENT") == 1, method

    with_gateway(test)


def test_an_http_caller_that_leaves_is_counted_cancelled_and_its_predict_cancelled() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub) -> None:
        upstream.hold()
        url = f"http://127.0.0.1:{server.http_port}/v1/models/colors:classify"
        async with aiohttp.ClientSession() as session:
            request = asyncio.ensure_future(session.post(url, data=png()))
            await upstream.wait_sent(1)
            request.cancel()  # the caller hangs up while TF Serving works
            with pytest.raises(asyncio.CancelledError):
                await request
        while requests_counted(server, "http.Classify", "CANCELLED") == 0:
            await asyncio.sleep(0.01)
        assert requests_counted(server, "http.Classify", "OK") == 0
        assert server.calls.admission.in_flight == 0

    with_gateway(test)


def test_a_caller_that_cancels_a_grpc_call_is_counted_cancelled() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub) -> None:
        upstream.hold()
        call = stub.Classify(classify_pb2.ClassifyRequest(model={"name": "colors"}, image=png()))
        await upstream.wait_sent(1)
        call.cancel()
        while requests_counted(server, "Classify", "CANCELLED") == 0:
            await asyncio.sleep(0.01)
        assert requests_counted(server, "Classify", "OK") == 0
        assert server.calls.admission.in_flight == 0

    with_gateway(test)


def test_calls_over_the_in_flight_limit_are_shed_with_the_tables_status() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub) -> None:
        server.calls.admission.limit = 1
        upstream.hold()
        first = stub.Classify(classify_pb2.ClassifyRequest(model={"name": "colors"}, image=png()))
        await upstream.wait_sent(1)
        with pytest.raises(grpc.aio.AioRpcError) as shed:
            await stub.Classify(classify_pb2.ClassifyRequest(model={"name": "colors"}, image=png()))
        url = f"http://127.0.0.1:{server.http_port}/v1/models/colors:classify"
        async with aiohttp.ClientSession() as session, session.post(url, data=png()) as answer:
            assert answer.status == 429
        upstream.release()
        assert (await first).classifications[0].class_id == 0  # red: channel 0 is the largest
        assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert shed.value.details() == "the gateway is at its limit of 1 requests in flight"
        # A shed gRPC call's message is never read (DECISIONS 24), so it has no model.
        assert requests_counted(server, "Classify", "RESOURCE_EXHAUSTED", model="") == 1
        assert requests_counted(server, "http.Classify", "RESOURCE_EXHAUSTED") == 1

    with_gateway(test)


def test_grpc_messages_share_the_receive_budget_with_http_bodies() -> None:
    """A unary call holds max_message_bytes of max_receive_bytes_in_flight while its message
    arrives, then only the message's size, until it ends (DECISIONS 24)."""

    async def main() -> None:
        upstream = FakeUpstream(classifier("colors"))
        config = GatewayConfig(
            host="127.0.0.1", port=0, http_port=-1, metrics_port=-1, status_poll_s=3600,
            max_message_bytes=1 << 20, max_receive_bytes_in_flight=(1 << 20) + 16,
            models=(ModelSettings("colors"),),
        )  # fmt: skip
        server = create_server(config, registry=CollectorRegistry(), upstream=upstream)
        await server.start()
        request = classify_pb2.ClassifyRequest(model={"name": "colors"}, image=png())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = classify_pb2_grpc.ImageGatewayStub(channel)
                upstream.hold()
                first = stub.Classify(request)
                await upstream.wait_sent(1)
                assert server.calls.receiving.used == request.ByteSize()
                with pytest.raises(grpc.aio.AioRpcError) as shed:
                    await stub.Classify(request)  # would need 1 MiB while arriving: no room
                upstream.release()
                await first
                assert server.calls.receiving.used == 0
        finally:
            upstream.release()
            await server.stop(grace=0)
        assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert shed.value.details() == (
            "the gateway is receiving its limit of requests (1.0 MiB max_receive_bytes_in_flight);"
            " this one may take 1.0 MiB: retry later"
        )

    asyncio.run(main())
