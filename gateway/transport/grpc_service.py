"""The ImageGateway gRPC servicer: proto requests in, data-plane calls, proto responses out.
Each RPC runs inside ``calls.observe`` (admission, error table, metrics) and aborts with the
call's error, if any. No image or tensor logic, no ``except``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.calls import Call, Calls
from gateway.dataplane import DataPlane
from gateway.errors import InvalidRequestError
from gateway.streaming import FrameIn, first_message, process_stream
from gateway.transport import convert

if TYPE_CHECKING:
    from typing import TypeAlias

    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


async def _abort(context: Context, call: Call) -> None:
    if call.error is not None:
        await context.abort(call.error.code, call.error.message)


class ImageGatewayServicer(classify_pb2_grpc.ImageGatewayServicer):
    def __init__(self, dataplane: DataPlane, calls: Calls) -> None:
        self.dataplane = dataplane
        self.calls = calls

    async def Classify(
        self, request: classify_pb2.ClassifyRequest, context: Context
    ) -> classify_pb2.ClassifyResponse:
        model, request_id = request.model.name, request.request_id
        with self.calls.observe("Classify", model, request_id) as call, self.calls.admitted():
            image_request = convert.image_request(request, context.time_remaining())
            result = await self.dataplane.classify(image_request)
            return convert.classify_response(request_id, result)
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def Detect(
        self, request: classify_pb2.DetectRequest, context: Context
    ) -> classify_pb2.DetectResponse:
        model, request_id = request.model.name, request.request_id
        with self.calls.observe("Detect", model, request_id) as call, self.calls.admitted():
            image_request = convert.image_request(request, context.time_remaining())
            result = await self.dataplane.detect(image_request)
            return convert.detect_response(request_id, result)
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def ListModels(
        self, request: classify_pb2.ListModelsRequest, context: Context
    ) -> classify_pb2.ListModelsResponse:
        with self.calls.observe("ListModels") as call:
            models = [convert.model_info(m) for m in self.dataplane.models.values()]
            return classify_pb2.ListModelsResponse(models=models)
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def DescribeModel(
        self, request: classify_pb2.DescribeModelRequest, context: Context
    ) -> classify_pb2.ModelInfo:
        with self.calls.observe("DescribeModel", request.name) as call:
            return convert.model_info(self.dataplane.model(request.name))
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def Analyze(
        self, request: classify_pb2.AnalyzeRequest, context: Context
    ) -> classify_pb2.AnalyzeResponse:
        model = request.tasks[0].model.name if request.tasks else ""
        with (
            self.calls.observe("Analyze", model, request.request_id) as call,
            self.calls.admitted(),
        ):
            tasks = [convert.task(t) for t in request.tasks]
            results = await self.dataplane.run(request.image, tasks, context.time_remaining())
            return convert.analyze_response(request.request_id, results)
        await _abort(context, call)
        raise AssertionError("unreachable: abort raises")

    async def Stream(
        self,
        requests: AsyncIterator[classify_pb2.StreamRequest],
        context: Context,
    ) -> AsyncIterator[classify_pb2.StreamResponse]:
        """One response per frame; stream-level errors end the stream with a status."""
        idle_s = self.dataplane.config.stream_idle_timeout_s
        with (
            self.calls.observe("Stream", stream=True) as call,
            self.calls.stream_admitted(),
        ):
            first = await first_message(requests, idle_s)
            if first is None:
                return
            if not first.HasField("options"):
                raise InvalidRequestError("the first message of a stream must be its options")
            options = first.options
            call.model = options.tasks[0].model.name if options.tasks else ""
            call.request_id = options.request_id
            settings = convert.stream_settings(options, self.dataplane.config)
            self.dataplane.resolve(settings.tasks)  # unknown or unready models end it now

            async def frames() -> AsyncIterator[FrameIn]:
                async for item in requests:
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
