"""Streams and readiness in process (issue 15): connection-age rebalancing never cuts a stream,
the stream caps and idle timeout, and readiness that follows TF Serving's signals — on a real
gateway (gRPC on a free port) in front of an in-memory TF Serving."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from prometheus_client import CollectorRegistry

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.config import GatewayConfig, ModelSettings
from gateway.server import GatewayServer, create_server
from gateway.tfserving.client import GET_MODEL_STATUS
from tests.fakes import FakeUpstream, classifier, unavailable

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

Stub = classify_pb2_grpc.ImageGatewayStub


def png(colour: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def options() -> classify_pb2.StreamRequest:
    task = classify_pb2.ModelTask(model=classify_pb2.ModelRef(name="colors"), top_k=1)
    return classify_pb2.StreamRequest(options=classify_pb2.StreamOptions(tasks=[task]))


def frame(frame_id: int) -> classify_pb2.StreamRequest:
    return classify_pb2.StreamRequest(frame=classify_pb2.Frame(frame_id=frame_id, image=png()))


def classify_request() -> classify_pb2.ClassifyRequest:
    return classify_pb2.ClassifyRequest(model=classify_pb2.ModelRef(name="colors"), image=png())


def with_gateway(
    test: Callable[[GatewayServer, FakeUpstream, Stub], Awaitable[None]],
    registry: CollectorRegistry | None = None,
    **settings: object,
) -> None:
    async def main() -> None:
        upstream = FakeUpstream(classifier("colors"))
        config = GatewayConfig(
            host="127.0.0.1", port=0, http_port=-1, metrics_port=-1, status_poll_s=3600,
            models=(ModelSettings("colors"),), **settings,  # type: ignore[arg-type]
        )  # fmt: skip
        own = CollectorRegistry() if registry is None else registry
        server = create_server(config, registry=own, upstream=upstream)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                await test(server, upstream, Stub(channel))
        finally:
            upstream.release()
            await server.stop(grace=0)

    asyncio.run(main())


def test_a_stream_outlives_several_connection_ages_and_new_calls_still_succeed() -> None:
    """Before issue 15 the age's grace was shutdown_grace_s: this stream died at ~2 s."""

    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        call = stub.Stream()
        await call.write(options())
        started = time.monotonic()
        answered = 0
        # Pace the frames over ~4 connection ages (1 s each): time passing is the subject.
        while time.monotonic() - started < 4.0:
            await call.write(frame(answered))
            response = await call.read()
            assert response.WhichOneof("message") == "result", response
            assert response.result.frame_id == answered
            answered += 1
            await asyncio.sleep(0.25)
        # The connection got its GOAWAY long ago: unary calls go over a new one.
        for _ in range(3):
            reply = await stub.Classify(classify_request(), timeout=5)
            assert reply.classifications[0].class_id == 0  # red
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert answered >= 12

    with_gateway(test, max_connection_age_s=1.0, shutdown_grace_s=1.0)


async def eventually(condition: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until ``condition`` holds, polled every 20 ms; fails after ``within`` s."""
    began = time.monotonic()
    while not await condition():
        assert time.monotonic() - began < within, f"never held within {within} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - began


async def readiness(server: GatewayServer) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        request = health_pb2.HealthCheckRequest(service="")
        return int((await health_pb2_grpc.HealthStub(channel).Check(request)).status)


def test_readiness_follows_the_upstream_probe_both_ways_between_polls() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        assert await readiness(server) == SERVING
        upstream.fail("status", unavailable(method=GET_MODEL_STATUS))  # one failed probe
        await eventually(lambda: is_(server, NOT_SERVING), within=1.0)
        assert not server.ready
        await eventually(lambda: is_(server, SERVING), within=1.0)  # the next probe passes
        assert server.ready

    with_gateway(test, upstream_probe_s=0.05)


def test_predicts_failing_unavailable_make_the_gateway_not_ready_at_the_threshold() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        upstream.fail("send", *(unavailable() for _ in range(3)))
        for attempt in range(3):
            assert await readiness(server) == SERVING, attempt
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Classify(classify_request(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await eventually(lambda: is_(server, NOT_SERVING), within=1.0)

    with_gateway(test, upstream_probe_s=3600, unready_after_failures=3)


async def is_(server: GatewayServer, status: int) -> bool:
    return await readiness(server) == status


async def open_stream(stub: Stub) -> grpc.aio.StreamStreamCall:
    """A stream with its options sent and one frame answered: admitted and running."""
    call = stub.Stream()
    await call.write(options())
    await call.write(frame(0))
    assert (await call.read()).result.frame_id == 0
    return call


def test_a_stream_over_max_streams_is_refused_at_once_and_a_freed_place_is_reused() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        first, second = await open_stream(stub), await open_stream(stub)
        refused = stub.Stream()
        await refused.write(options())
        assert await refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await refused.details() == "the gateway is at its limit of 2 open streams"
        await first.done_writing()
        assert await first.code() == grpc.StatusCode.OK
        third = await open_stream(stub)
        for call in (second, third):
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK

    with_gateway(test, max_streams=2)


def idle_timeouts(server: GatewayServer) -> float | None:
    return server.registry.get_sample_value("tfs_gateway_streams_idle_timeouts_total")


def test_a_stream_that_sends_no_options_ends_deadline_exceeded_and_is_counted() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        call = stub.Stream()
        assert await call.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert (
            await call.details() == "the stream sent no options for 0.3 s (stream_idle_timeout_s)"
        )
        assert idle_timeouts(server) == 1

    with_gateway(test, stream_idle_timeout_s=0.3)


def test_a_stream_that_goes_silent_after_its_answers_ends_deadline_exceeded() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        call = await open_stream(stub)
        assert await call.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert await call.details() == "the stream sent nothing for 0.3 s (stream_idle_timeout_s)"
        assert idle_timeouts(server) == 1
        counted = server.registry.get_sample_value(
            "tfs_gateway_requests_total",
            {"method": "Stream", "model": "colors", "code": "DEADLINE_EXCEEDED"},
        )
        assert counted == 1

    with_gateway(test, stream_idle_timeout_s=0.3)


def test_a_frame_in_flight_longer_than_the_idle_timeout_is_answered_not_cut() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        call = stub.Stream()
        await call.write(options())
        upstream.hold()
        await call.write(frame(7))
        await upstream.wait_sent(1)
        await asyncio.sleep(0.6)  # twice the idle timeout, with the frame in flight: the subject
        upstream.release()
        assert (await call.read()).result.frame_id == 7
        assert await call.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # silent afterwards

    with_gateway(test, stream_idle_timeout_s=0.3)
