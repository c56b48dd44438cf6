"""One inference end to end, transport-free: resolve the models, decode the image once, then
per model preprocess → upstream → postprocess, concurrently, each stage timed. Every transport
(gRPC unary and streams, HTTP) calls this, never the stages.

Each task in flight is one record that each stage takes and returns: a :class:`Job` (what
serves the task), a :class:`Prepared` (its input, made in a worker thread), an
:class:`~gateway.inference.InferenceResult`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import grpc
import numpy as np

from gateway.batching import Batcher
from gateway.choices import Color, ModelKind
from gateway.config import GatewayConfig
from gateway.decode import DecodeLimits, ImageHeader, Opened, open_image
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotReadyError,
    UpstreamError,
    WrongModelKindError,
    for_caller,
)
from gateway.inference import ImageRequest, InferenceResult, Task, Timings
from gateway.memory_budget import MemoryBudget, decode_bytes
from gateway.metrics import Metrics
from gateway.models import ModelCatalog, ServedModel, SignatureBinding
from gateway.pipeline import Preprocessed, preprocess_many
from gateway.postprocess import annotate, read_outputs
from gateway.tfserving.client import Upstream
from gateway.tfserving.signatures import ModelRef, Prediction
from gateway.tfserving.tensors import numpy_dtype


@dataclass(frozen=True, slots=True)
class Job:
    """One task in flight: the model and signature that serve it, and the reference sent
    upstream (the caller's version choice with the resolved signature name)."""

    task: Task
    served: ServedModel
    binding: SignatureBinding
    ref: ModelRef
    batched: bool  # goes through the model's micro-batcher


@dataclass(frozen=True, slots=True)
class SerializedRequest:
    """The whole PredictRequest, serialised in the worker thread."""

    data: bytes
    serialize_s: float


@dataclass(frozen=True, slots=True)
class BatchInput:
    """The tensor alone: the micro-batcher stacks it with others and builds the request."""

    tensor: np.ndarray


@dataclass(frozen=True, slots=True)
class Prepared:
    job: Job
    pre: Preprocessed
    input: SerializedRequest | BatchInput


class DataPlane:
    def __init__(
        self, config: GatewayConfig, upstream: Upstream, metrics: Metrics, executor: Executor
    ) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.executor = executor
        self.catalog = ModelCatalog(config, upstream, metrics)
        self.batchers: dict[str, Batcher] = {}
        self.budget = MemoryBudget(config.max_decode_bytes_in_flight, config.retry_after_ms)
        self.reconfigure(config)

    # --- configuration and models ---------------------------------------------------------

    def reconfigure(self, config: GatewayConfig) -> None:
        """Adopt new settings (SIGHUP) without dropping calls in flight: all of them, or none
        (the catalogue raises ConfigError before anything changes)."""
        self.catalog.reconfigure(config)
        self.config = config
        self.limits = DecodeLimits(config.max_image_pixels, config.allowed_formats)
        self.budget.limit = config.max_decode_bytes_in_flight  # reservations keep their bytes
        self.budget.retry_after_ms = config.retry_after_ms
        # New batchers take the new settings; batches already queued in the old ones still go
        # out (their timers and tasks hold them).
        self.batchers = {
            m.name: Batcher(
                m.name,
                self.upstream,
                self.executor,
                self.metrics,
                m.batch_max_size,
                m.batch_max_wait_ms / 1000,
            )
            for m in config.models
            if m.batch_max_size > 1
        }

    @property
    def models(self) -> dict[str, ServedModel]:
        return self.catalog.models

    def model(self, name: str) -> ServedModel:
        return self.catalog.model(name)

    async def refresh(self) -> None:
        await self.catalog.refresh()

    # --- inference -----------------------------------------------------------------------

    async def classify(self, request: ImageRequest) -> InferenceResult:
        return await self._single(request, ModelKind.CLASSIFICATION)

    async def detect(self, request: ImageRequest) -> InferenceResult:
        return await self._single(request, ModelKind.DETECTION)

    async def _single(self, request: ImageRequest, kind: ModelKind) -> InferenceResult:
        task = dataclasses.replace(request.task, kind=kind)  # Classify, Detect: a kind required
        [result] = await self.run(request.image, [task], request.timeout_s)
        return result

    def resolve(self, tasks: Sequence[Task]) -> list[Job]:
        """Every task's model and signature, or fail before any work is done."""
        if not tasks:
            raise InvalidRequestError("at least one model is required")
        if len(tasks) > self.config.max_tasks:
            raise InvalidRequestError(
                f"{len(tasks)} tasks is over the gateway's max_tasks of {self.config.max_tasks}"
            )
        return [self._job(task) for task in tasks]

    def _job(self, task: Task) -> Job:
        served = self.model(task.model.name)
        if not served.ready:
            raise ModelNotReadyError(f"model {served.name!r} is not ready: {served.status_message}")
        binding = served.binding(task.model.signature_name)
        kind = binding.outputs.kind
        if task.kind is not None and kind != task.kind:
            rpc = "Detect" if kind == ModelKind.DETECTION else "Classify"
            raise WrongModelKindError(f"model {served.name!r} is a {kind} model: call {rpc}")
        ref = ModelRef(
            served.name, task.model.version, task.model.version_label, binding.signature_name
        )
        batched = served.name in self.batchers and binding.batchable
        return Job(task, served, binding, ref, batched)

    async def run(
        self, image: bytes, tasks: Sequence[Task], timeout_s: float | None = None
    ) -> list[InferenceResult]:
        """Every task on one image: one decode, then the models concurrently.

        The memory this takes is reserved first, from the header (see ``memory_budget``): the
        decode, held until the tensors are built (or the annotated images drawn: each decodes
        the image again), and every task's tensor, held until the call ends."""
        start = time.perf_counter()
        jobs = self.resolve(tasks)
        if not image:
            raise InvalidRequestError("image is required (the encoded image bytes)")
        for job in jobs:
            self.metrics.for_model(job.served.name).image_bytes.observe(len(image))
        # The header only (~25 us for a 1080p JPEG): cheap enough for the loop; the worker
        # decodes from this same opened image, so nothing is parsed twice.
        opened = open_image(image, self.limits)
        header = opened[1]
        annotating = sum(job.task.annotate is not None for job in jobs)
        decodes = max(annotating, any(not job.binding.profile.encoded for job in jobs))
        tensors = sum(_task_bytes(job, header, image) for job in jobs)
        what = f"the {header.width}x{header.height} {header.format} image"
        try:
            reservation = self.budget.reserve(decode_bytes(header) * decodes + tensors, what)
        except GatewayError:
            opened[0].close()
            raise
        with reservation:
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(self.executor, self._prepare, image, jobs, opened)
            if not annotating:
                reservation.keep(tensors)  # the decoded pixels are gone; the tensors go upstream
            for job in jobs:
                pixels = header.width * header.height
                self.metrics.for_model(job.served.name).image_pixels.observe(pixels)
            return list(
                await asyncio.gather(*(self._infer(p, image, timeout_s, start) for p in prepared))
            )

    def _prepare(self, image: bytes, jobs: list[Job], opened: Opened) -> list[Prepared]:
        """Worker thread: one decode, each model's tensor, and (unless micro-batched) the whole
        serialised upstream request, so the event loop never touches the tensor's bytes."""
        profiles = [job.binding.profile for job in jobs]
        pres = preprocess_many(image, profiles, self.limits, opened)
        return [
            Prepared(job, pre, self._input(job, pre)) for job, pre in zip(jobs, pres, strict=True)
        ]

    def _input(self, job: Job, pre: Preprocessed) -> SerializedRequest | BatchInput:
        if job.batched:
            return BatchInput(pre.tensor)
        began = time.perf_counter()
        profile, outputs = job.binding.profile, job.binding.outputs
        data = self.upstream.prepare(
            job.ref, {profile.input_name: pre.tensor}, outputs.output_filter,
            {profile.input_name: profile.dtype},
        )  # fmt: skip
        return SerializedRequest(data, time.perf_counter() - began)

    async def _predict(self, prepared: Prepared, timeout_s: float | None) -> Prediction:
        job = prepared.job
        try:
            if isinstance(prepared.input, BatchInput):
                profile = job.binding.profile
                return await self.batchers[job.served.name].predict(
                    job.ref, profile.input_name, prepared.input.tensor, profile.dtype,
                    job.binding.outputs.output_filter, timeout_s,
                )  # fmt: skip
            return await self.upstream.send(prepared.input.data, job.ref, timeout_s)
        except UpstreamError as error:
            self.metrics.upstream_errors.labels(job.served.name, error.code.name).inc()
            if error.code == grpc.StatusCode.UNAVAILABLE:  # a readiness signal, like a probe
                self.catalog.call_failed(job.served.name, error)
            raise for_caller(error, job.served.name) from None

    async def _infer(
        self, prepared: Prepared, image: bytes, timeout_s: float | None, start: float
    ) -> InferenceResult:
        job, pre = prepared.job, prepared.pre
        sent = time.perf_counter()
        prediction = await self._predict(prepared, timeout_s)
        received = time.perf_counter()
        outputs = read_outputs(job.task, job.served, job.binding, pre, prediction)
        annotated = None
        if job.task.annotate is not None:
            annotated = await asyncio.get_running_loop().run_in_executor(
                self.executor, annotate, image, outputs, job.task.annotate, self.limits,
                job.binding.profile.background,
            )  # fmt: skip
        done = time.perf_counter()
        serialize_s = (
            prepared.input.serialize_s if isinstance(prepared.input, SerializedRequest) else 0.0
        )
        timings = Timings(pre.decode_s, pre.preprocess_s + serialize_s, received - sent,
                          done - received, done - start)  # fmt: skip
        stages = self.metrics.for_model(job.served.name).stages
        stages["decode"].observe(timings.decode_s)
        stages["preprocess"].observe(timings.preprocess_s)
        stages["upstream"].observe(timings.upstream_s)
        stages["postprocess"].observe(timings.postprocess_s)
        return InferenceResult(
            model=prediction.model,
            version=prediction.version or 0,
            signature_name=prediction.signature_name,
            image_size=(pre.header.width, pre.header.height),
            timings=timings,
            outputs=outputs,
            annotated=annotated,
        )


def _task_bytes(job: Job, header: ImageHeader, image: bytes) -> int:
    """A task's tensor, counted twice: the array and its serialised request."""
    profile = job.binding.profile
    if profile.encoded:
        return 2 * len(image)
    width, height = profile.width or header.width, profile.height or header.height
    channels = 1 if profile.color == Color.GRAYSCALE else 3
    return 2 * width * height * channels * numpy_dtype(profile.dtype).itemsize
