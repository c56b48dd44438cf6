"""Bad input and its answers on gRPC (issue 15, items 13, 14, 15 and 17): malformed protobuf and
unknown enum values are the caller's INVALID_ARGUMENT, a passed deadline is counted as the
DEADLINE_EXCEEDED the caller saw, and a shed call says when to come back — each on a real
gateway (gRPC on a free port) in front of an in-memory TF Serving, which then still serves an
ordinary Classify."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from PIL import Image
from prometheus_client import CollectorRegistry

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.config import GatewayConfig, ModelSettings
from gateway.errors import UpstreamError
from gateway.server import GatewayServer, create_server
from gateway.tfserving.client import PREDICT
from tests.fakes import FakeUpstream, classifier

SERVICE = "/tfsgateway.v1.ImageGateway"
GARBAGE = b"\xff\xff\xff"  # a varint that never ends: no message of any type
FORMATS = "IMAGE_FORMAT_UNSPECIFIED = 0, IMAGE_FORMAT_JPEG = 1, IMAGE_FORMAT_PNG = 2"

Test = Callable[[GatewayServer, FakeUpstream, grpc.aio.Channel], Awaitable[None]]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def with_gateway(test: Test, **settings: object) -> None:
    """Run ``test`` against a started gateway (gRPC on a free port), then check that it still
    classifies an ordinary image."""

    async def main() -> None:
        upstream = FakeUpstream(classifier("colors"))
        config = GatewayConfig(
            host="127.0.0.1", port=0, http_port=-1, metrics_port=-1, status_poll_s=3600,
            models=(ModelSettings("colors"),), **settings,  # type: ignore[arg-type]
        )  # fmt: skip
        server = create_server(config, registry=CollectorRegistry(), upstream=upstream)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                await test(server, upstream, channel)
                upstream.release()
                stub = classify_pb2_grpc.ImageGatewayStub(channel)
                ordinary = await stub.Classify(classify_request(), timeout=10)
                assert ordinary.classifications[0].class_id == 0  # red: channel 0 is largest
        finally:
            upstream.release()
            await server.stop(grace=0)

    asyncio.run(main())


def classify_request(**fields: object) -> classify_pb2.ClassifyRequest:
    return classify_pb2.ClassifyRequest(model={"name": "colors"}, image=png(), **fields)  # type: ignore[arg-type]


def counted(server: GatewayServer, method: str, code: str, model: str = "colors") -> float:
    labels = {"method": method, "model": model, "code": code}
    return server.registry.get_sample_value("tfs_gateway_requests_total", labels) or 0.0


async def until_counted(
    server: GatewayServer, method: str, code: str, model: str = "colors"
) -> None:
    """The server counts a call when its handler ends, which may be after the caller's answer."""
    async with asyncio.timeout(5):
        while counted(server, method, code, model) == 0:
            await asyncio.sleep(0.01)


def options(**fields: object) -> classify_pb2.StreamOptions:
    task = classify_pb2.ModelTask(model=classify_pb2.ModelRef(name="colors"))
    return classify_pb2.StreamOptions(tasks=[task], **fields)  # type: ignore[arg-type]


async def messages(*items: classify_pb2.StreamRequest) -> AsyncIterator[classify_pb2.StreamRequest]:
    for item in items:
        yield item


# --- item 13: malformed protobuf ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "request_type"),
    [
        ("Classify", "ClassifyRequest"),
        ("Detect", "DetectRequest"),
        ("ListModels", "ListModelsRequest"),
        ("DescribeModel", "DescribeModelRequest"),
        ("Analyze", "AnalyzeRequest"),
    ],
)
def test_garbage_bytes_are_invalid_argument_counted_under_their_method(
    method: str, request_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)

    async def test(server: GatewayServer, upstream: FakeUpstream, channel) -> None:
        call = channel.unary_unary(f"{SERVICE}/{method}", request_serializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(GARBAGE)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details() == (
            f"the request is not a valid tfsgateway.v1.{request_type}: "
            "its protobuf encoding is corrupt"
        )
        assert counted(server, method, "INVALID_ARGUMENT", model="") == 1
        assert counted(server, method, "UNKNOWN", model="") == 0

    with_gateway(test)
    assert caplog.records == []  # no traceback, nothing at ERROR


def test_a_garbage_message_mid_stream_ends_it_with_invalid_argument(caplog) -> None:
    caplog.set_level(logging.ERROR)

    async def test(server: GatewayServer, upstream: FakeUpstream, channel) -> None:
        stream = channel.stream_stream(
            f"{SERVICE}/Stream", request_serializer=None,
            response_deserializer=classify_pb2.StreamResponse.FromString,
        )()  # fmt: skip
        await stream.write(classify_pb2.StreamRequest(options=options()).SerializeToString())
        frame = classify_pb2.StreamRequest(frame=classify_pb2.Frame(frame_id=1, image=png()))
        await stream.write(frame.SerializeToString())
        assert (await stream.read()).result.frame_id == 1
        await stream.write(GARBAGE)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stream.read()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details() == (
            "the request is not a valid tfsgateway.v1.StreamRequest: "
            "its protobuf encoding is corrupt"
        )
        await until_counted(server, "Stream", "INVALID_ARGUMENT")
        assert counted(server, "StreamFrame", "OK") == 1

    with_gateway(test)
    assert caplog.records == []


def test_reflection_still_describes_the_service_registered_with_raw_bytes() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, channel) -> None:
        def describe() -> tuple[list[str], list[str]]:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as sync:
                database = ProtoReflectionDescriptorDatabase(sync)
                service = database.FindFileContainingSymbol("tfsgateway.v1.ImageGateway")
                return list(database.get_services()), [m.name for m in service.service[0].method]

        loop = asyncio.get_running_loop()
        services, methods = await loop.run_in_executor(None, describe)  # a blocking client
        assert "tfsgateway.v1.ImageGateway" in services
        assert methods == ["Classify", "Detect", "ListModels", "DescribeModel", "Analyze", "Stream"]

    with_gateway(test)


# --- item 14: unknown enum values -----------------------------------------------------------


def _classify_with_format_7() -> classify_pb2.ClassifyRequest:
    request = classify_request(annotate={"enabled": True})
    request.annotate.format = 7  # type: ignore[assignment]  # proto3 keeps unknown numbers
    return request


def _detect_with_format_3() -> classify_pb2.DetectRequest:
    request = classify_pb2.DetectRequest(model={"name": "colors"}, image=png())
    request.annotate.format = 3  # type: ignore[assignment]
    return request


def _analyze_with_format_9_on_task_1() -> classify_pb2.AnalyzeRequest:
    request = classify_pb2.AnalyzeRequest(image=png())
    request.tasks.add().model.name = "colors"
    request.tasks.add().annotate.format = 9  # type: ignore[assignment]
    return request


@pytest.mark.parametrize(
    ("method", "build", "message"),
    [
        ("Classify", _classify_with_format_7,
         f"ClassifyRequest.annotate.format: unknown ImageFormat value 7 ({FORMATS})"),
        ("Detect", _detect_with_format_3,
         f"DetectRequest.annotate.format: unknown ImageFormat value 3 ({FORMATS})"),
        ("Analyze", _analyze_with_format_9_on_task_1,
         f"AnalyzeRequest.tasks[1].annotate.format: unknown ImageFormat value 9 ({FORMATS})"),
    ],
)  # fmt: skip
def test_an_unknown_enum_value_in_a_unary_request_is_named(
    method: str, build: Callable[[], object], message: str
) -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, channel) -> None:
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, method)(build())
        assert (raised.value.code(), raised.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, message,
        )  # fmt: skip
        # Refused as a whole, before any field is read: not counted under the model it names.
        assert counted(server, method, "INVALID_ARGUMENT", model="") == 1
        assert upstream.sent == []

    with_gateway(test)


def _stream_options(field: str, value: int) -> classify_pb2.StreamOptions:
    stream_options = options()
    if field == "tasks[0].annotate.format":
        stream_options.tasks[0].annotate.format = value  # type: ignore[assignment]
    else:
        setattr(stream_options, field, value)
    return stream_options


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("delivery", 9, "StreamRequest.options.delivery: unknown Delivery value 9 "
         "(DELIVERY_UNSPECIFIED = 0, DELIVERY_ORDERED = 1, DELIVERY_AS_READY = 2)"),
        ("drop_policy", 5, "StreamRequest.options.drop_policy: unknown DropPolicy value 5 "
         "(DROP_POLICY_UNSPECIFIED = 0, DROP_POLICY_QUEUE = 1, DROP_POLICY_DROP_STALE = 2)"),
        ("tasks[0].annotate.format", 4,
         "StreamRequest.options.tasks[0].annotate.format: unknown ImageFormat value 4 "
         f"({FORMATS})"),
    ],
)  # fmt: skip
def test_an_unknown_enum_value_in_stream_options_ends_the_stream_naming_it(
    field: str, value: int, message: str
) -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, channel) -> None:
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        first = classify_pb2.StreamRequest(options=_stream_options(field, value))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stub.Stream(messages(first)):
                pass
        assert (raised.value.code(), raised.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, message,
        )  # fmt: skip
        await until_counted(server, "Stream", "INVALID_ARGUMENT", model="")

    with_gateway(test)


# --- item 17: deadlines counted as the caller saw them --------------------------------------


def test_a_deadline_that_passes_while_tf_serving_works_is_counted_deadline_exceeded() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, channel) -> None:
        upstream.hold()
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Classify(classify_request(), timeout=0.5)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await until_counted(server, "Classify", "DEADLINE_EXCEEDED")
        assert counted(server, "Classify", "CANCELLED") == 0
        assert len(upstream.sent) == 1

    with_gateway(test)


def test_a_stream_whose_deadline_passes_is_counted_deadline_exceeded() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, channel) -> None:
        upstream.hold()
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        frame = classify_pb2.StreamRequest(frame=classify_pb2.Frame(frame_id=1, image=png()))
        stream = stub.Stream(timeout=0.5)
        await stream.write(classify_pb2.StreamRequest(options=options()))
        await stream.write(frame)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stream.read()
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await until_counted(server, "Stream", "DEADLINE_EXCEEDED")
        assert counted(server, "Stream", "CANCELLED") == 0

    with_gateway(test)


def test_an_upstream_deadline_exceeded_reads_as_deadline_exceeded() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, channel) -> None:
        error = UpstreamError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", PREDICT)
        upstream.fail("send", error)
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Classify(classify_request())
        assert (raised.value.code(), raised.value.details()) == (
            grpc.StatusCode.DEADLINE_EXCEEDED, "upstream: Deadline Exceeded",
        )  # fmt: skip
        assert counted(server, "Classify", "DEADLINE_EXCEEDED") == 1

    with_gateway(test)


# --- item 15: load shedding says when to come back ------------------------------------------


def test_a_shed_call_carries_the_configured_retry_pushback() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, channel) -> None:
        server.calls.admission.limit = 1
        upstream.hold()
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        first = stub.Classify(classify_request())
        await upstream.wait_sent(1)
        with pytest.raises(grpc.aio.AioRpcError) as shed:
            await stub.Classify(classify_request())
        upstream.release()
        await first
        assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert tuple(shed.value.trailing_metadata() or ()) == (("grpc-retry-pushback-ms", "250"),)
        # Shed before its message was read (DECISIONS 24): counted with no model.
        assert counted(server, "Classify", "RESOURCE_EXHAUSTED", model="") == 1

    with_gateway(test, retry_after_ms=250)
