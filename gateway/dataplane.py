"""One inference end to end, transport-free: resolve the models, decode the image once, then
per model preprocess → upstream → postprocess, concurrently, each stage timed. Every transport
(gRPC unary and streams, HTTP) calls this, never the stages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from gateway.batching import Batcher
from gateway.choices import ModelKind
from gateway.config import GatewayConfig
from gateway.decode import DecodeLimits, decode_image
from gateway.drawing import (
    AnnotateSpec,
    EncodedImage,
    draw_classifications,
    draw_detections,
    encode,
)
from gateway.errors import (
    InvalidRequestError,
    ModelNotReadyError,
    OverloadedError,
    UpstreamError,
    WrongModelKindError,
    for_caller,
)
from gateway.labels import Detection, Label, detections, top_k_labels
from gateway.metrics import Metrics
from gateway.models import ModelCatalog, ServedModel, SignatureBinding
from gateway.pipeline import Preprocessed, preprocess_many
from gateway.tfserving.client import Upstream
from gateway.tfserving.signatures import ModelRef, Prediction


@dataclass(frozen=True, slots=True)
class Task:
    """One model to run on an image, with its options."""

    model: ModelRef
    kind: ModelKind | None = None  # required kind (Classify, Detect); None: the model's own
    top_k: int = 0
    min_score: float = 0.0
    max_detections: int = 0
    annotate: AnnotateSpec | None = None  # return the image with the results drawn on it


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """A single-model request (Classify, Detect)."""

    model: ModelRef
    image: bytes
    top_k: int = 0
    min_score: float = 0.0
    max_detections: int = 0
    timeout_s: float | None = None  # what is left of the caller's deadline
    annotate: AnnotateSpec | None = None

    def task(self, kind: ModelKind) -> Task:
        return Task(
            self.model, kind, self.top_k, self.min_score, self.max_detections, self.annotate
        )


@dataclass(frozen=True, slots=True)
class Timings:
    decode_s: float
    preprocess_s: float
    upstream_s: float
    postprocess_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """One model's answer on one image."""

    model: str
    version: int
    signature_name: str
    kind: ModelKind
    image_size: tuple[int, int]
    timings: Timings
    labels: list[Label] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    annotated: EncodedImage | None = None


@dataclass(frozen=True, slots=True)
class _Prepared:
    pre: Preprocessed
    request: bytes | None  # the serialised upstream request; None when micro-batched
    serialize_s: float


class DataPlane:
    def __init__(
        self, config: GatewayConfig, upstream: Upstream, metrics: Metrics, executor: Executor
    ) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.executor = executor
        self.catalog = ModelCatalog(config, upstream, metrics)
        self.in_flight = 0
        self.batchers: dict[str, Batcher] = {}
        self.reconfigure(config)

    # --- configuration and models ---------------------------------------------------------

    def reconfigure(self, config: GatewayConfig) -> None:
        """Adopt new settings (SIGHUP) without dropping calls in flight."""
        self.config = config
        self.limits = DecodeLimits(config.max_image_pixels, config.allowed_formats)
        self.catalog.reconfigure(config)
        self.metrics.in_flight_limit.set(config.max_in_flight)
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

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one of the in-flight places, or shed the request at once."""
        if self.in_flight >= self.config.max_in_flight:
            raise OverloadedError(
                f"the gateway is at its limit of {self.config.max_in_flight} requests in flight"
            )
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()

    # --- inference -----------------------------------------------------------------------

    async def classify(self, request: ImageRequest) -> InferenceResult:
        [result] = await self.run(
            request.image, [request.task(ModelKind.CLASSIFICATION)], request.timeout_s
        )
        return result

    async def detect(self, request: ImageRequest) -> InferenceResult:
        [result] = await self.run(
            request.image, [request.task(ModelKind.DETECTION)], request.timeout_s
        )
        return result

    def plans(self, tasks: Sequence[Task]) -> list[tuple[ServedModel, SignatureBinding]]:
        """Resolve every task's model and plan, or fail before any work is done."""
        if not tasks:
            raise InvalidRequestError("at least one model is required")
        resolved = []
        for task in tasks:
            served = self.model(task.model.name)
            if not served.ready:
                raise ModelNotReadyError(
                    f"model {served.name!r} is not ready: {served.status_message}"
                )
            plan = served.binding(task.model.signature_name)
            if task.kind is not None and plan.outputs.kind != task.kind:
                rpc = "Detect" if plan.outputs.kind == ModelKind.DETECTION else "Classify"
                raise WrongModelKindError(
                    f"model {served.name!r} is a {plan.outputs.kind} model: call {rpc}"
                )
            resolved.append((served, plan))
        return resolved

    async def run(
        self, image: bytes, tasks: Sequence[Task], timeout_s: float | None = None
    ) -> list[InferenceResult]:
        """Every task on one image: one decode, then the models concurrently."""
        start = time.perf_counter()
        resolved = self.plans(tasks)
        if not image:
            raise InvalidRequestError("image is required (the encoded image bytes)")
        for served, _ in resolved:
            self.metrics.for_model(served.name).image_bytes.observe(len(image))
        refs = [
            ModelRef(served.name, t.model.version, t.model.version_label, plan.signature_name)
            for t, (served, plan) in zip(tasks, resolved, strict=True)
        ]
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self.executor, self._prepare, image, resolved, refs)
        header = prepared[0].pre.header
        for served, _ in resolved:
            self.metrics.for_model(served.name).image_pixels.observe(header.width * header.height)
        return list(
            await asyncio.gather(
                *(
                    self._one(image, task, served, plan, ref, prep, timeout_s, start)
                    for task, (served, plan), ref, prep in zip(
                        tasks, resolved, refs, prepared, strict=True
                    )
                )
            )
        )

    def _prepare(
        self,
        image: bytes,
        resolved: list[tuple[ServedModel, SignatureBinding]],
        refs: list[ModelRef],
    ) -> list[_Prepared]:
        """Worker thread: one decode, each model's tensor, and (unless micro-batched) the whole
        serialised upstream request, so the event loop never touches the tensor's bytes."""
        pres = preprocess_many(image, [plan.profile for _, plan in resolved], self.limits)
        prepared = []
        for (served, plan), ref, pre in zip(resolved, refs, pres, strict=True):
            if served.name in self.batchers and plan.batchable:
                prepared.append(_Prepared(pre, None, 0.0))
                continue
            began = time.perf_counter()
            profile = plan.profile
            request = self.upstream.prepare(
                ref, {profile.input_name: pre.tensor}, plan.outputs.output_filter,
                {profile.input_name: profile.dtype},
            )  # fmt: skip
            prepared.append(_Prepared(pre, request, time.perf_counter() - began))
        return prepared

    async def _one(
        self,
        image: bytes,
        task: Task,
        served: ServedModel,
        plan: SignatureBinding,
        ref: ModelRef,
        prep: _Prepared,
        timeout_s: float | None,
        start: float,
    ) -> InferenceResult:
        pre = prep.pre
        sent = time.perf_counter()
        try:
            if prep.request is None:
                profile = plan.profile
                prediction = await self.batchers[served.name].predict(
                    ref, profile.input_name, pre.tensor, profile.dtype,
                    plan.outputs.output_filter, timeout_s,
                )  # fmt: skip
            else:
                prediction = await self.upstream.send(prep.request, ref, timeout_s)
        except UpstreamError as error:
            self.metrics.upstream_errors.labels(served.name, error.code.name).inc()
            raise for_caller(error, served.name) from None
        received = time.perf_counter()
        outputs = self._postprocess(served, plan, task, pre, prediction)
        annotated = None
        if task.annotate is not None:
            annotated = await asyncio.get_running_loop().run_in_executor(
                self.executor, self._annotate, image, task.annotate, plan, outputs
            )
        done = time.perf_counter()
        timings = Timings(pre.decode_s, pre.preprocess_s + prep.serialize_s, received - sent,
                          done - received, done - start)  # fmt: skip
        bound = self.metrics.for_model(served.name)
        bound.stages["decode"].observe(timings.decode_s)
        bound.stages["preprocess"].observe(timings.preprocess_s)
        bound.stages["upstream"].observe(timings.upstream_s)
        bound.stages["postprocess"].observe(timings.postprocess_s)
        return InferenceResult(
            model=prediction.model,
            version=prediction.version or 0,
            signature_name=prediction.signature_name,
            kind=plan.outputs.kind,
            image_size=(pre.header.width, pre.header.height),
            timings=timings,
            annotated=annotated,
            **outputs,
        )

    def _annotate(
        self,
        image: bytes,
        spec: AnnotateSpec,
        plan: SignatureBinding,
        outputs: dict[str, list[Label] | list[Detection]],
    ) -> EncodedImage:
        """Worker thread: draw on the original image, decoded again at full size."""
        picture = decode_image(image, self.limits, background=plan.profile.background).image
        if "detections" in outputs:
            drawn = draw_detections(picture, outputs["detections"])  # type: ignore[arg-type]
        else:
            drawn = draw_classifications(picture, outputs["labels"])  # type: ignore[arg-type]
        return encode(drawn, spec)

    def _postprocess(
        self,
        served: ServedModel,
        plan: SignatureBinding,
        task: Task,
        pre: Preprocessed,
        prediction: Prediction,
    ) -> dict[str, list[Label] | list[Detection]]:
        settings = served.settings
        if plan.outputs.kind == ModelKind.CLASSIFICATION:
            scores = prediction.outputs[plan.outputs.scores_output]
            return {
                "labels": top_k_labels(
                    scores[0],
                    served.labels,
                    task.top_k or settings.top_k,
                    task.min_score or settings.min_score,
                    softmax=settings.logits,
                    label_offset=settings.label_offset,
                )
            }
        return {
            "detections": detections(
                prediction.outputs,
                served.labels,
                pre.geometry,
                (pre.header.width, pre.header.height),
                task.min_score or settings.min_score,
                task.max_detections or settings.max_detections,
                settings.label_offset,
                orientation=pre.header.orientation if plan.profile.encoded else 1,
            )
        }
