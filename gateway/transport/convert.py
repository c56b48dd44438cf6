"""The one place the public API's protobuf messages meet the data plane's Python types."""

from __future__ import annotations

from gateway._proto import classify_pb2
from gateway.choices import ModelKind
from gateway.dataplane import ImageRequest, InferenceResult, Task, Timings
from gateway.drawing import AnnotateSpec
from gateway.errors import GatewayError
from gateway.labels import Box
from gateway.models import ServedModel
from gateway.streaming import FrameOut
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
    request: classify_pb2.ClassifyRequest | classify_pb2.DetectRequest,
    top_k: int,
    max_detections: int,
    timeout_s: float | None,
) -> ImageRequest:
    return ImageRequest(
        model=model_ref(request.model),
        image=request.image,
        top_k=top_k,
        min_score=request.min_score,
        max_detections=max_detections,
        timeout_s=timeout_s,
        annotate=annotate_spec(request.annotate),
    )


def _timings(timings: Timings) -> classify_pb2.Timings:
    return classify_pb2.Timings(
        decode_ms=timings.decode_s * 1e3,
        preprocess_ms=timings.preprocess_s * 1e3,
        upstream_ms=timings.upstream_s * 1e3,
        postprocess_ms=timings.postprocess_s * 1e3,
        total_ms=timings.total_s * 1e3,
    )


def _common(result: InferenceResult) -> dict[str, object]:
    common: dict[str, object] = {
        "model": classify_pb2.ServedBy(
            name=result.model, version=result.version, signature_name=result.signature_name
        ),
        "image_size": classify_pb2.ImageSize(
            width=result.image_size[0], height=result.image_size[1]
        ),
        "timings": _timings(result.timings),
    }
    if result.annotated is not None:
        width, height = result.annotated.size
        common["annotated_image"] = classify_pb2.EncodedImage(
            data=result.annotated.data,
            mime_type=result.annotated.mime_type,
            size=classify_pb2.ImageSize(width=width, height=height),
        )
    return common


def _classifications(result: InferenceResult) -> list[classify_pb2.Classification]:
    return [
        classify_pb2.Classification(class_id=x.class_id, label=x.label, score=x.score)
        for x in result.labels
    ]


def classify_response(request_id: str, result: InferenceResult) -> classify_pb2.ClassifyResponse:
    return classify_pb2.ClassifyResponse(
        request_id=request_id,
        classifications=_classifications(result),
        **_common(result),  # type: ignore[arg-type]
    )


def _box(box: Box, message: type) -> object:
    return message(ymin=box.ymin, xmin=box.xmin, ymax=box.ymax, xmax=box.xmax)


def _detections(result: InferenceResult) -> list[classify_pb2.Detection]:
    return [
        classify_pb2.Detection(
            class_id=d.class_id,
            label=d.label,
            score=d.score,
            box=_box(d.box, classify_pb2.NormalizedBox),
            pixel_box=_box(d.pixel_box, classify_pb2.PixelBox),
        )
        for d in result.detections
    ]


def detect_response(request_id: str, result: InferenceResult) -> classify_pb2.DetectResponse:
    return classify_pb2.DetectResponse(
        request_id=request_id,
        detections=_detections(result),
        **_common(result),  # type: ignore[arg-type]
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
    common = _common(result)
    del common["image_size"]
    return classify_pb2.ModelResult(
        kind=_KINDS[result.kind],
        classifications=_classifications(result),
        detections=_detections(result),
        **common,  # type: ignore[arg-type]
    )


def analyze_response(
    request_id: str, results: list[InferenceResult]
) -> classify_pb2.AnalyzeResponse:
    width, height = results[0].image_size
    return classify_pb2.AnalyzeResponse(
        request_id=request_id,
        image_size=classify_pb2.ImageSize(width=width, height=height),
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
        code, message = frame.error
        return classify_pb2.StreamResponse(
            error=classify_pb2.FrameError(
                frame_id=frame.frame_id, timestamp_us=frame.timestamp_us, code=code.name,
                message=message,
            )
        )  # fmt: skip
    results = frame.results or []
    width, height = results[0].image_size if results else (0, 0)
    return classify_pb2.StreamResponse(
        result=classify_pb2.FrameResult(
            frame_id=frame.frame_id,
            timestamp_us=frame.timestamp_us,
            image_size=classify_pb2.ImageSize(width=width, height=height),
            results=[model_result(r) for r in results],
        )
    )
