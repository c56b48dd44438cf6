"""The one place the public API's protobuf messages meet the data plane's Python types."""

from __future__ import annotations

from gateway._proto import classify_pb2
from gateway.choices import ModelKind
from gateway.config import GatewayConfig
from gateway.drawing import AnnotateSpec
from gateway.errors import GatewayError, InvalidRequestError
from gateway.inference import (
    Classifications,
    Detections,
    ImageRequest,
    InferenceResult,
    Task,
    Timings,
)
from gateway.labels import Box
from gateway.models import ServedModel
from gateway.stream_flow import FrameOut
from gateway.streaming import StreamSettings
from gateway.tfserving.signatures import ModelRef, TensorSpec
from gateway.tfserving.tensors import dtype_name

_KINDS = {
    ModelKind.CLASSIFICATION: classify_pb2.MODEL_KIND_CLASSIFICATION,
    ModelKind.DETECTION: classify_pb2.MODEL_KIND_DETECTION,
}


def model_ref(ref: classify_pb2.ModelRef) -> ModelRef:
    choice = ref.WhichOneof("version_choice")
    return ModelRef(
        ref.name,
        version=ref.version if choice == "version" else None,
        version_label=ref.version_label if choice == "version_label" else None,
        signature_name=ref.signature_name,
    )


def image_request(
    request: classify_pb2.ClassifyRequest | classify_pb2.DetectRequest, timeout_s: float | None
) -> ImageRequest:
    if isinstance(request, classify_pb2.ClassifyRequest):
        top_k, max_detections = request.top_k, 0
    else:
        top_k, max_detections = 0, request.max_detections
    task = Task(
        model=model_ref(request.model),
        top_k=top_k,
        min_score=request.min_score,
        max_detections=max_detections,
        annotate=annotate_spec(request.annotate),
    )
    return ImageRequest(task, request.image, timeout_s)


def _timings(timings: Timings) -> classify_pb2.Timings:
    return classify_pb2.Timings(
        decode_ms=timings.decode_s * 1e3,
        preprocess_ms=timings.preprocess_s * 1e3,
        upstream_ms=timings.upstream_s * 1e3,
        postprocess_ms=timings.postprocess_s * 1e3,
        total_ms=timings.total_s * 1e3,
    )


def _served_by(result: InferenceResult) -> classify_pb2.ServedBy:
    return classify_pb2.ServedBy(
        name=result.model, version=result.version, signature_name=result.signature_name
    )


def _image_size(size: tuple[int, int]) -> classify_pb2.ImageSize:
    return classify_pb2.ImageSize(width=size[0], height=size[1])


def _annotated(result: InferenceResult) -> classify_pb2.EncodedImage | None:
    if result.annotated is None:
        return None
    return classify_pb2.EncodedImage(
        data=result.annotated.data,
        mime_type=result.annotated.mime_type,
        size=_image_size(result.annotated.size),
    )


def _classifications(result: InferenceResult) -> list[classify_pb2.Classification]:
    if not isinstance(result.outputs, Classifications):
        return []
    return [
        classify_pb2.Classification(class_id=x.class_id, label=x.label, score=x.score)
        for x in result.outputs.labels
    ]


def classify_response(request_id: str, result: InferenceResult) -> classify_pb2.ClassifyResponse:
    return classify_pb2.ClassifyResponse(
        request_id=request_id,
        classifications=_classifications(result),
        model=_served_by(result),
        image_size=_image_size(result.image_size),
        timings=_timings(result.timings),
        annotated_image=_annotated(result),
    )


def _normalized_box(box: Box) -> classify_pb2.NormalizedBox:
    return classify_pb2.NormalizedBox(ymin=box.ymin, xmin=box.xmin, ymax=box.ymax, xmax=box.xmax)


def _pixel_box(box: Box) -> classify_pb2.PixelBox:
    return classify_pb2.PixelBox(ymin=box.ymin, xmin=box.xmin, ymax=box.ymax, xmax=box.xmax)


def _detections(result: InferenceResult) -> list[classify_pb2.Detection]:
    if not isinstance(result.outputs, Detections):
        return []
    return [
        classify_pb2.Detection(
            class_id=d.class_id,
            label=d.label,
            score=d.score,
            box=_normalized_box(d.box),
            pixel_box=_pixel_box(d.pixel_box),
        )
        for d in result.outputs.detections
    ]


def detect_response(request_id: str, result: InferenceResult) -> classify_pb2.DetectResponse:
    return classify_pb2.DetectResponse(
        request_id=request_id,
        detections=_detections(result),
        model=_served_by(result),
        image_size=_image_size(result.image_size),
        timings=_timings(result.timings),
        annotated_image=_annotated(result),
    )


def _tensor(spec: TensorSpec) -> classify_pb2.TensorDescription:
    return classify_pb2.TensorDescription(
        name=spec.alias,
        dtype=dtype_name(spec.dtype),
        shape=list(spec.shape or ()),
        unknown_rank=spec.shape is None,
    )


def model_info(served: ServedModel) -> classify_pb2.ModelInfo:
    info = classify_pb2.ModelInfo(
        name=served.name,
        ready=served.ready,
        label_count=len(served.labels),
        status_message=served.status_message,
    )
    if served.metadata is None:
        return info
    try:
        binding = served.binding()
    except GatewayError as error:
        info.status_message = error.message
        return info
    signature = served.metadata.signature(binding.signature_name)
    profile = binding.profile
    info.kind = _KINDS[binding.outputs.kind]
    info.version = served.metadata.version or 0
    info.signature_name = binding.signature_name
    info.inputs.extend(_tensor(s) for s in signature.inputs.values())
    info.outputs.extend(_tensor(s) for s in signature.outputs.values())
    info.preprocessing.CopyFrom(
        classify_pb2.Preprocessing(
            input_mode="encoded" if profile.encoded else "tensor",
            width=profile.width,
            height=profile.height,
            resize_mode=profile.resize_mode.value,
            resize_filter=profile.resize_filter,
            color=profile.color.value,
            normalization=profile.normalization.value,
            dtype=dtype_name(profile.dtype),
            layout=profile.layout,
        )
    )
    return info


def annotate_spec(options: classify_pb2.AnnotateOptions) -> AnnotateSpec | None:
    if not options.enabled:
        return None
    return AnnotateSpec(
        png=options.format == classify_pb2.IMAGE_FORMAT_PNG, jpeg_quality=options.jpeg_quality
    )


def task(message: classify_pb2.ModelTask) -> Task:
    return Task(
        model=model_ref(message.model),
        top_k=message.top_k,
        min_score=message.min_score,
        max_detections=message.max_detections,
        annotate=annotate_spec(message.annotate),
    )


def model_result(result: InferenceResult) -> classify_pb2.ModelResult:
    return classify_pb2.ModelResult(
        kind=_KINDS[result.kind],
        classifications=_classifications(result),
        detections=_detections(result),
        model=_served_by(result),
        timings=_timings(result.timings),
        annotated_image=_annotated(result),
    )


def analyze_response(
    request_id: str, results: list[InferenceResult]
) -> classify_pb2.AnalyzeResponse:
    return classify_pb2.AnalyzeResponse(
        request_id=request_id,
        image_size=_image_size(results[0].image_size),
        results=[model_result(r) for r in results],
    )


def stream_response(frame: FrameOut) -> classify_pb2.StreamResponse:
    if frame.dropped:
        return classify_pb2.StreamResponse(
            dropped=classify_pb2.FrameDropped(
                frame_id=frame.frame_id, timestamp_us=frame.timestamp_us,
                reason=classify_pb2.DROP_REASON_STALE,
            )
        )  # fmt: skip
    if frame.error is not None:
        return classify_pb2.StreamResponse(
            error=classify_pb2.FrameError(
                frame_id=frame.frame_id, timestamp_us=frame.timestamp_us,
                code=frame.error.code.name, message=frame.error.message,
            )
        )  # fmt: skip
    results = frame.results or []
    return classify_pb2.StreamResponse(
        result=classify_pb2.FrameResult(
            frame_id=frame.frame_id,
            timestamp_us=frame.timestamp_us,
            image_size=_image_size(results[0].image_size if results else (0, 0)),
            results=[model_result(r) for r in results],
        )
    )


def stream_settings(options: classify_pb2.StreamOptions, config: GatewayConfig) -> StreamSettings:
    window = options.window or config.stream_window
    if window > config.max_stream_window:
        raise InvalidRequestError(
            f"window {window} is over the gateway's max_stream_window of {config.max_stream_window}"
        )
    return StreamSettings(
        tasks=[task(t) for t in options.tasks],
        ordered=options.delivery != classify_pb2.DELIVERY_AS_READY,
        drop_stale=options.drop_policy == classify_pb2.DROP_POLICY_DROP_STALE,
        window=window,
        request_id=options.request_id,
        max_unread_bytes=config.max_stream_unread_bytes,
    )
