"""The ImageGateway gRPC servicer: proto requests in, data-plane calls, proto responses out.
Each RPC runs inside ``calls.observe`` (admission, error table, metrics), parses its request
there (it arrives as bytes: see ``grpc_registration``) and aborts with the call's error, if
any. No image or tensor logic, no ``except``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.calls import Call, Calls, Observed, deadline_after
from gateway.dataplane import DataPlane
from gateway.errors import InvalidRequestError
from gateway.memory_budget import Reservation
from gateway.stream_flow import FrameIn
from gateway.streaming import first_message, process_stream
from gateway.transport import convert
from gateway.transport.parsing import parse

if TYPE_CHECKING:
    from typing import TypeAlias

    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

PUSHBACK = "grpc-retry-pushback-ms"  # gRPC's trailer for "retry after this many ms"


async def _abort(context: Context, call: Call) -> None:
    error = call.error
    if error is not None:
        pushback = () if error.retry_after_ms is None else ((PUSHBACK, str(error.retry_after_ms)),)
        await context.abort(error.code, error.message, pushback)


async def _only(messages: AsyncIterator[bytes], held: Reservation) -> bytes:
    """The one request message of a unary method (registered as client-streaming, so that it is
    read only once the call holds its in-flight place and its receive bytes:
    ``grpc_registration``); then only its own size stays held."""
    message = await anext(aiter(messages), None)
    if message is None:
        raise InvalidRequestError("the call carried no request message")
    held.keep(len(message))
    return message


class ImageGatewayServicer(classify_pb2_grpc.ImageGatewayServicer):
    def __init__(self, dataplane: DataPlane, calls: Calls) -> None:
        self.dataplane = dataplane
        self.calls = calls

    def _receiving(self) -> Reservation:
        """A unary call's message is held against the receive budget that HTTP bodies share:
        ``max_message_bytes`` while it arrives, then its size, until the call ends."""
        return self.calls.receiving_request(self.dataplane.config.max_message_bytes)

    def _observe(self, method: str, context: Context, stream: bool = False) -> Observed:
        deadline = deadline_after(context.time_remaining())
        return self.calls.observe(method, stream=stream, deadline=deadline)

    async def Classify(
        self, messages: AsyncIterator[bytes], context: Context
    ) -> classify_pb2.ClassifyResponse:
        with (
            self._observe("Classify", context) as call,
            self.calls.admitted(),
            self._receiving() as held,
        ):
            request = parse(classify_pb2.ClassifyRequest, await _only(messages, held))
            call.model, call.request_id = request.model.name, request.request_id
            image_request = convert.image_request(request, context.time_remaining())
            result = await self.dataplane.classify(image_request)
            return convert.classify_response(request.request_id, result)
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def Detect(
        self, messages: AsyncIterator[bytes], context: Context
    ) -> classify_pb2.DetectResponse:
        with (
            self._observe("Detect", context) as call,
            self.calls.admitted(),
            self._receiving() as held,
        ):
            request = parse(classify_pb2.DetectRequest, await _only(messages, held))
            call.model, call.request_id = request.model.name, request.request_id
            image_request = convert.image_request(request, context.time_remaining())
            result = await self.dataplane.detect(image_request)
            return convert.detect_response(request.request_id, result)
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def ListModels(self, data: bytes, context: Context) -> classify_pb2.ListModelsResponse:
        with self._observe("ListModels", context) as call:
            parse(classify_pb2.ListModelsRequest, data)
            models = [convert.model_info(m) for m in self.dataplane.models.values()]
            return classify_pb2.ListModelsResponse(models=models)
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def DescribeModel(self, data: bytes, context: Context) -> classify_pb2.ModelInfo:
        with self._observe("DescribeModel", context) as call:
            request = parse(classify_pb2.DescribeModelRequest, data)
            call.model = request.name
            return convert.model_info(self.dataplane.model(request.name))
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def Analyze(
        self, messages: AsyncIterator[bytes], context: Context
    ) -> classify_pb2.AnalyzeResponse:
        with (
            self._observe("Analyze", context) as call,
            self.calls.admitted(),
            self._receiving() as held,
        ):
            request = parse(classify_pb2.AnalyzeRequest, await _only(messages, held))
            call.model = request.tasks[0].model.name if request.tasks else ""
            call.request_id = request.request_id
            tasks = [convert.task(t) for t in request.tasks]
            results = await self.dataplane.run(request.image, tasks, context.time_remaining())
            return convert.analyze_response(request.request_id, results)
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def Stream(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[classify_pb2.StreamResponse]:
        """One response per frame; stream-level errors (a malformed message among them) end
        the stream with a status."""
        idle_s = self.dataplane.config.stream_idle_timeout_s
        with (
            self._observe("Stream", context, stream=True) as call,
            self.calls.stream_admitted(),
        ):
            data = await first_message(requests, idle_s)
            if data is None:
                return
            first = parse(classify_pb2.StreamRequest, data)
            if not first.HasField("options"):
                raise InvalidRequestError("the first message of a stream must be its options")
            options = first.options
            call.model = options.tasks[0].model.name if options.tasks else ""
            call.request_id = options.request_id
            settings = convert.stream_settings(options, self.dataplane.config)
            self.dataplane.resolve(settings.tasks)  # unknown or unready models end it now

            async def frames() -> AsyncIterator[FrameIn]:
                async for data in requests:
                    item = parse(classify_pb2.StreamRequest, data)
                    if not item.HasField("frame"):
                        raise InvalidRequestError("options may only come as the first message")
                    frame = item.frame
                    yield FrameIn(frame.frame_id, frame.image, frame.timestamp_us)

            outcomes = process_stream(
                self.dataplane, self.calls, frames(), settings, context.time_remaining, idle_s
            )
            async for outcome in outcomes:
                yield convert.stream_response(outcome)
        await _abort(context, call)
