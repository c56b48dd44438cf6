"""The ImageGateway gRPC servicer: proto requests in, data-plane calls, proto responses out;
admission, the error table and request metrics around every call. No image or tensor logic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
import grpc.aio

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.dataplane import DataPlane
from gateway.errors import GatewayError, InvalidRequestError
from gateway.streaming import FrameIn, StreamSettings, process_stream
from gateway.transport import convert

log = logging.getLogger(__name__)
T = TypeVar("T")


class ImageGatewayServicer(classify_pb2_grpc.ImageGatewayServicer):
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.metrics = dataplane.metrics

    async def Classify(
        self, request: classify_pb2.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> classify_pb2.ClassifyResponse:
        async def run() -> classify_pb2.ClassifyResponse:
            call = convert.image_request(request, request.top_k, 0, context.time_remaining())
            result = await self.dataplane.classify(call)
            return convert.classify_response(request.request_id, result)

        return await self._handle("Classify", request.model.name, request.request_id, context, run)

    async def Detect(
        self, request: classify_pb2.DetectRequest, context: grpc.aio.ServicerContext
    ) -> classify_pb2.DetectResponse:
        async def run() -> classify_pb2.DetectResponse:
            call = convert.image_request(
                request, 0, request.max_detections, context.time_remaining()
            )
            result = await self.dataplane.detect(call)
            return convert.detect_response(request.request_id, result)

        return await self._handle("Detect", request.model.name, request.request_id, context, run)

    async def ListModels(
        self, request: classify_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> classify_pb2.ListModelsResponse:
        async def run() -> classify_pb2.ListModelsResponse:
            models = [convert.model_info(m) for m in self.dataplane.models.values()]
            return classify_pb2.ListModelsResponse(models=models)

        return await self._handle("ListModels", "", "", context, run, admit=False)

    async def DescribeModel(
        self, request: classify_pb2.DescribeModelRequest, context: grpc.aio.ServicerContext
    ) -> classify_pb2.ModelInfo:
        async def run() -> classify_pb2.ModelInfo:
            return convert.model_info(self.dataplane.model(request.name))

        return await self._handle("DescribeModel", request.name, "", context, run, admit=False)

    async def Analyze(
        self, request: classify_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> classify_pb2.AnalyzeResponse:
        async def run() -> classify_pb2.AnalyzeResponse:
            tasks = [convert.task(t) for t in request.tasks]
            results = await self.dataplane.run(request.image, tasks, context.time_remaining())
            return convert.analyze_response(request.request_id, results)

        model = request.tasks[0].model.name if request.tasks else ""
        return await self._handle("Analyze", model, request.request_id, context, run)

    async def Stream(
        self,
        requests: AsyncIterator[classify_pb2.StreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[classify_pb2.StreamResponse]:
        """One response per frame; stream-level errors end the stream with a status."""
        start = time.perf_counter()
        code, message, model = grpc.StatusCode.OK, "", ""
        self.metrics.streams_active.inc()
        try:
            first = await anext(aiter(requests), None)
            if first is None:
                return
            if not first.HasField("options"):
                raise InvalidRequestError("the first message of a stream must be its options")
            options = first.options
            model = options.tasks[0].model.name if options.tasks else ""
            settings = self._stream_settings(options)
            self.dataplane.plans(settings.tasks)  # unknown or unready models end it at once

            async def frames() -> AsyncIterator[FrameIn]:
                async for item in requests:
                    if not item.HasField("frame"):
                        raise InvalidRequestError("options may only come as the first message")
                    yield FrameIn(item.frame.frame_id, item.frame.image, item.frame.timestamp_us)

            async for outcome in process_stream(
                self.dataplane, frames(), settings, context.time_remaining
            ):
                yield convert.stream_response(outcome)
        except GatewayError as error:
            code, message = error.code, error.message
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self.metrics.streams_active.dec()
            self.metrics.record_request("Stream", model, code.name, start)
        if code != grpc.StatusCode.OK:
            await context.abort(code, message)

    def _stream_settings(self, options: classify_pb2.StreamOptions) -> StreamSettings:
        config = self.dataplane.config
        window = options.window or config.stream_window
        if window > config.max_stream_window:
            raise InvalidRequestError(
                f"window {window} is over the gateway's max_stream_window of "
                f"{config.max_stream_window}"
            )
        return StreamSettings(
            tasks=[convert.task(t) for t in options.tasks],
            ordered=options.delivery != classify_pb2.DELIVERY_AS_READY,
            drop_stale=options.drop_policy == classify_pb2.DROP_POLICY_DROP_STALE,
            window=window,
        )

    async def _handle(
        self,
        method: str,
        model: str,
        request_id: str,
        context: grpc.aio.ServicerContext,
        run: Callable[[], Awaitable[T]],
        admit: bool = True,
    ) -> T:
        """Run one RPC: admission, error → status through errors.py's table, metrics."""
        start = time.perf_counter()
        code, message = grpc.StatusCode.OK, ""
        try:
            with self.dataplane.admitted() if admit else contextlib.nullcontext():
                return await run()
        except GatewayError as error:
            code, message = error.code, error.message
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            incident = request_id or uuid.uuid4().hex[:12]
            log.exception("%s failed (request id %s)", method, incident)
            code, message = grpc.StatusCode.INTERNAL, f"internal error (request id {incident})"
        finally:
            self.metrics.record_request(method, model, code.name, start)
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")
