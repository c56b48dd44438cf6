"""One inference end to end, transport-free: resolve the model, then decode → preprocess →
upstream → postprocess, each stage timed. Every transport calls this, never the stages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from gateway.config import GatewayConfig, ModelSettings
from gateway.decode import DecodeLimits, decode_image
from gateway.drawing import (
    AnnotateSpec,
    EncodedImage,
    draw_classifications,
    draw_detections,
    encode,
)
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    ProfileError,
    UpstreamError,
    WrongModelKindError,
    for_caller,
)
from gateway.labels import (
    Detection,
    Label,
    ModelKind,
    OutputPlan,
    detections,
    load_labels,
    plan_outputs,
    top_k_labels,
)
from gateway.metrics import Metrics
from gateway.pipeline import Color, Preprocessed, PreprocessProfile, infer_profile, preprocess
from gateway.tensors import dtype_name
from gateway.upstream import (
    ModelMetadata,
    ModelRef,
    Prediction,
    TensorSpec,
    UpstreamClient,
    VersionState,
    build_predict_request,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelPlan:
    """How one signature of a model is fed and read."""

    signature_name: str
    profile: PreprocessProfile
    outputs: OutputPlan
    input_spec: TensorSpec


@dataclass
class ServedModel:
    settings: ModelSettings
    labels: dict[int, str]
    metadata: ModelMetadata | None = None
    plans: dict[str, ModelPlan] = field(default_factory=dict)
    ready: bool = False
    failures: int = 0
    status_message: str = "not checked yet"

    @property
    def name(self) -> str:
        return self.settings.name

    def plan(self, signature_name: str = "") -> ModelPlan:
        name = signature_name or self.settings.signature_name or "serving_default"
        if name not in self.plans:
            if self.metadata is None:
                raise ModelNotReadyError(f"model {self.name!r} is not ready: {self.status_message}")
            signature = self.metadata.signature(name)
            try:
                profile = infer_profile(signature, self.settings.preprocess)
                outputs = plan_outputs(signature, self.settings)
                spec = signature.inputs[profile.input_name]
                check_profile_fits(profile, spec)
            except ProfileError as error:
                raise ProfileError(
                    f"model {self.name!r}, signature {name!r}: {error.message}"
                ) from None
            self.plans[name] = ModelPlan(name, profile, outputs, spec)
        return self.plans[name]


def check_profile_fits(profile: PreprocessProfile, spec: TensorSpec) -> None:
    """The tensors a profile makes must fit the signature (dtype, rank, fixed dims): checked once
    per model, so a misconfigured profile fails at load with a clear message, not per request."""
    if profile.encoded:
        return
    if profile.dtype != spec.dtype:
        raise ProfileError(
            f"the profile makes {dtype_name(profile.dtype)} tensors, the input {spec.alias!r} "
            f"takes {dtype_name(spec.dtype)}"
        )
    channels = 1 if profile.color == Color.GRAYSCALE else 3
    h, w = profile.height or -1, profile.width or -1
    made = (1, channels, h, w) if profile.layout == "NCHW" else (1, h, w, channels)
    if spec.shape is not None and (
        len(spec.shape) != 4
        or any(
            want >= 0 and got >= 0 and want != got
            for want, got in zip(spec.shape, made, strict=True)
        )
    ):
        shown = [n if n >= 0 else "any" for n in made]
        raise ProfileError(
            f"the profile makes tensors of shape {shown}, the input {spec.alias!r} takes "
            f"{list(spec.shape)}"
        )


@dataclass(frozen=True, slots=True)
class ImageRequest:
    model: ModelRef
    image: bytes
    top_k: int = 0
    min_score: float = 0.0
    max_detections: int = 0
    timeout_s: float | None = None  # what is left of the caller's deadline
    annotate: AnnotateSpec | None = None  # return the image with the results drawn on it


@dataclass(frozen=True, slots=True)
class Timings:
    decode_s: float
    preprocess_s: float
    upstream_s: float
    postprocess_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class InferenceResult:
    model: str
    version: int
    signature_name: str
    image_size: tuple[int, int]
    timings: Timings
    labels: list[Label] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    annotated: EncodedImage | None = None


class DataPlane:
    def __init__(
        self,
        config: GatewayConfig,
        upstream: UpstreamClient,
        metrics: Metrics,
        executor: Executor,
    ) -> None:
        self.config = config
        self.upstream = upstream
        self.metrics = metrics
        self.executor = executor
        self.models: dict[str, ServedModel] = {}
        self.in_flight = 0
        self.reconfigure(config)

    def reconfigure(self, config: GatewayConfig) -> None:
        """Adopt new settings (SIGHUP): limits, models and their label files. A model that stays
        keeps its TF Serving metadata; calls in flight finish with what they started with."""
        models = {}
        for settings in config.models:
            labels = load_labels(settings.labels) if settings.labels else {}
            old = self.models.get(settings.name)
            served = ServedModel(settings, labels)
            if old is not None:
                served.metadata, served.ready = old.metadata, old.ready
                served.status_message = old.status_message
            models[settings.name] = served
        self.config = config
        self.limits = DecodeLimits(config.max_image_pixels, config.allowed_formats)
        self.models = models
        self.metrics.add_models(tuple(models))
        self.metrics.in_flight_limit.set(config.max_in_flight)

    # --- models ---------------------------------------------------------------------------

    def model(self, name: str) -> ServedModel:
        if not name:
            raise InvalidRequestError("model.name is required")
        served = self.models.get(name)
        if served is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelNotFoundError(
                f"model {name!r} is not served by this gateway (models: {known})"
            )
        return served

    async def refresh(self) -> None:
        """Ask TF Serving about every model; load signatures of new versions; update readiness."""
        await asyncio.gather(*(self._refresh(m) for m in self.models.values()))

    async def _refresh(self, served: ServedModel) -> None:
        try:
            statuses = await self.upstream.status(ModelRef(served.name))
            available = [s.version for s in statuses if s.state == VersionState.AVAILABLE]
            if not available:
                raise ModelNotReadyError("TF Serving has no AVAILABLE version")
            if served.metadata is None or served.metadata.version != max(available):
                metadata = await self.upstream.metadata(ModelRef(served.name))
                served.metadata, served.plans = metadata, {}
                log.info(
                    "model %s: loaded the signature of version %s", served.name, metadata.version
                )
            served.plan()  # the default signature must be usable
        except GatewayError as error:
            served.failures += 1
            served.status_message = error.message
            if served.metadata is None or served.failures >= self.config.unready_after_failures:
                served.ready = False
            if isinstance(error, ProfileError):
                served.ready = False
        else:
            served.failures, served.ready, served.status_message = 0, True, "ready"
        self.metrics.model_ready.labels(served.name).set(1 if served.ready else 0)

    # --- inference -----------------------------------------------------------------------

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

    async def classify(self, request: ImageRequest) -> InferenceResult:
        return await self._infer(request, ModelKind.CLASSIFICATION)

    async def detect(self, request: ImageRequest) -> InferenceResult:
        return await self._infer(request, ModelKind.DETECTION)

    async def _infer(self, request: ImageRequest, kind: ModelKind) -> InferenceResult:
        start = time.perf_counter()
        served = self.model(request.model.name)
        if not served.ready:
            raise ModelNotReadyError(f"model {served.name!r} is not ready: {served.status_message}")
        plan = served.plan(request.model.signature_name)
        if plan.outputs.kind != kind:
            rpc = "Detect" if plan.outputs.kind == ModelKind.DETECTION else "Classify"
            raise WrongModelKindError(
                f"model {served.name!r} is a {plan.outputs.kind} model: call {rpc}"
            )
        if not request.image:
            raise InvalidRequestError("image is required (the encoded image bytes)")
        bound = self.metrics.for_model(served.name)
        bound.image_bytes.observe(len(request.image))

        ref = ModelRef(
            served.name,
            request.model.version,
            request.model.version_label,
            plan.signature_name,
        )
        loop = asyncio.get_running_loop()
        pre, predict_request, serialize_s = await loop.run_in_executor(
            self.executor, self._prepare, request.image, plan, ref
        )
        bound.image_pixels.observe(pre.header.width * pre.header.height)
        sent = time.perf_counter()
        try:
            prediction = await self.upstream.predict_serialized(
                predict_request, ref, request.timeout_s
            )
        except UpstreamError as error:
            self.metrics.upstream_errors.labels(served.name, error.code.name).inc()
            raise for_caller(error, served.name) from None
        received = time.perf_counter()
        result = self._postprocess(served, plan, request, pre, prediction)
        annotated = None
        if request.annotate is not None:
            annotated = await loop.run_in_executor(
                self.executor, self._annotate, request, plan.profile, result
            )
        done = time.perf_counter()

        timings = Timings(
            pre.decode_s,
            pre.preprocess_s + serialize_s,
            received - sent,
            done - received,
            done - start,
        )
        bound.stages["decode"].observe(timings.decode_s)
        bound.stages["preprocess"].observe(timings.preprocess_s)
        bound.stages["upstream"].observe(timings.upstream_s)
        bound.stages["postprocess"].observe(timings.postprocess_s)
        return InferenceResult(
            model=prediction.model,
            version=prediction.version or 0,
            signature_name=prediction.signature_name,
            image_size=(pre.header.width, pre.header.height),
            timings=timings,
            annotated=annotated,
            **result,
        )

    def _prepare(
        self, image: bytes, plan: ModelPlan, ref: ModelRef
    ) -> tuple[Preprocessed, bytes, float]:
        """Worker thread: decode, preprocess and serialise the whole PredictRequest, so the
        event loop never touches the tensor's bytes. Serialising counts as preprocessing."""
        profile = plan.profile
        pre = preprocess(image, profile, self.limits)
        start = time.perf_counter()
        request = build_predict_request(
            ref, {profile.input_name: pre.tensor}, plan.outputs.output_filter,
            {profile.input_name: profile.dtype},
        )  # fmt: skip
        return pre, request, time.perf_counter() - start

    def _annotate(
        self,
        request: ImageRequest,
        profile: PreprocessProfile,
        result: dict[str, list[Label] | list[Detection]],
    ) -> EncodedImage:
        """Worker thread: draw on the original image, decoded again at full size."""
        assert request.annotate is not None
        image = decode_image(request.image, self.limits, background=profile.background).image
        if "detections" in result:
            drawn = draw_detections(image, result["detections"])  # type: ignore[arg-type]
        else:
            drawn = draw_classifications(image, result["labels"])  # type: ignore[arg-type]
        return encode(drawn, request.annotate)

    def _postprocess(
        self,
        served: ServedModel,
        plan: ModelPlan,
        request: ImageRequest,
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
                    request.top_k or settings.top_k,
                    request.min_score or settings.min_score,
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
                request.min_score or settings.min_score,
                request.max_detections or settings.max_detections,
                settings.label_offset,
                orientation=pre.header.orientation if plan.profile.encoded else 1,
            )
        }
