from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_FORMAT_JPEG: _ClassVar[ImageFormat]
    IMAGE_FORMAT_PNG: _ClassVar[ImageFormat]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_CLASSIFICATION: _ClassVar[ModelKind]
    MODEL_KIND_DETECTION: _ClassVar[ModelKind]

class Delivery(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_UNSPECIFIED: _ClassVar[Delivery]
    DELIVERY_ORDERED: _ClassVar[Delivery]
    DELIVERY_AS_READY: _ClassVar[Delivery]

class DropPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROP_POLICY_UNSPECIFIED: _ClassVar[DropPolicy]
    DROP_POLICY_QUEUE: _ClassVar[DropPolicy]
    DROP_POLICY_DROP_STALE: _ClassVar[DropPolicy]

class DropReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROP_REASON_UNSPECIFIED: _ClassVar[DropReason]
    DROP_REASON_STALE: _ClassVar[DropReason]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_FORMAT_JPEG: ImageFormat
IMAGE_FORMAT_PNG: ImageFormat
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_CLASSIFICATION: ModelKind
MODEL_KIND_DETECTION: ModelKind
DELIVERY_UNSPECIFIED: Delivery
DELIVERY_ORDERED: Delivery
DELIVERY_AS_READY: Delivery
DROP_POLICY_UNSPECIFIED: DropPolicy
DROP_POLICY_QUEUE: DropPolicy
DROP_POLICY_DROP_STALE: DropPolicy
DROP_REASON_UNSPECIFIED: DropReason
DROP_REASON_STALE: DropReason

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "version_label", "signature_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABEL_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    version_label: str
    signature_name: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., version_label: _Optional[str] = ..., signature_name: _Optional[str] = ...) -> None: ...

class ServedBy(_message.Message):
    __slots__ = ("name", "version", "signature_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    signature_name: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., signature_name: _Optional[str] = ...) -> None: ...

class ImageSize(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "preprocess_ms", "upstream_ms", "postprocess_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    preprocess_ms: float
    upstream_ms: float
    postprocess_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ..., upstream_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "image", "top_k", "min_score", "request_id", "annotate")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATE_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: bytes
    top_k: int
    min_score: float
    request_id: str
    annotate: AnnotateOptions
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[bytes] = ..., top_k: _Optional[int] = ..., min_score: _Optional[float] = ..., request_id: _Optional[str] = ..., annotate: _Optional[_Union[AnnotateOptions, _Mapping]] = ...) -> None: ...

class AnnotateOptions(_message.Message):
    __slots__ = ("enabled", "format", "jpeg_quality")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    format: ImageFormat
    jpeg_quality: int
    def __init__(self, enabled: _Optional[bool] = ..., format: _Optional[_Union[ImageFormat, str]] = ..., jpeg_quality: _Optional[int] = ...) -> None: ...

class EncodedImage(_message.Message):
    __slots__ = ("data", "mime_type", "size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    size: ImageSize
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., size: _Optional[_Union[ImageSize, _Mapping]] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("class_id", "label", "score")
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    class_id: int
    label: str
    score: float
    def __init__(self, class_id: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("request_id", "model", "image_size", "classifications", "timings", "annotated_image")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: ServedBy
    image_size: ImageSize
    classifications: _containers.RepeatedCompositeFieldContainer[Classification]
    timings: Timings
    annotated_image: EncodedImage
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[_Union[ServedBy, _Mapping]] = ..., image_size: _Optional[_Union[ImageSize, _Mapping]] = ..., classifications: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., annotated_image: _Optional[_Union[EncodedImage, _Mapping]] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("model", "image", "min_score", "max_detections", "request_id", "annotate")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATE_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: bytes
    min_score: float
    max_detections: int
    request_id: str
    annotate: AnnotateOptions
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[bytes] = ..., min_score: _Optional[float] = ..., max_detections: _Optional[int] = ..., request_id: _Optional[str] = ..., annotate: _Optional[_Union[AnnotateOptions, _Mapping]] = ...) -> None: ...

class NormalizedBox(_message.Message):
    __slots__ = ("ymin", "xmin", "ymax", "xmax")
    YMIN_FIELD_NUMBER: _ClassVar[int]
    XMIN_FIELD_NUMBER: _ClassVar[int]
    YMAX_FIELD_NUMBER: _ClassVar[int]
    XMAX_FIELD_NUMBER: _ClassVar[int]
    ymin: float
    xmin: float
    ymax: float
    xmax: float
    def __init__(self, ymin: _Optional[float] = ..., xmin: _Optional[float] = ..., ymax: _Optional[float] = ..., xmax: _Optional[float] = ...) -> None: ...

class PixelBox(_message.Message):
    __slots__ = ("ymin", "xmin", "ymax", "xmax")
    YMIN_FIELD_NUMBER: _ClassVar[int]
    XMIN_FIELD_NUMBER: _ClassVar[int]
    YMAX_FIELD_NUMBER: _ClassVar[int]
    XMAX_FIELD_NUMBER: _ClassVar[int]
    ymin: float
    xmin: float
    ymax: float
    xmax: float
    def __init__(self, ymin: _Optional[float] = ..., xmin: _Optional[float] = ..., ymax: _Optional[float] = ..., xmax: _Optional[float] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("class_id", "label", "score", "box", "pixel_box")
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PIXEL_BOX_FIELD_NUMBER: _ClassVar[int]
    class_id: int
    label: str
    score: float
    box: NormalizedBox
    pixel_box: PixelBox
    def __init__(self, class_id: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ..., box: _Optional[_Union[NormalizedBox, _Mapping]] = ..., pixel_box: _Optional[_Union[PixelBox, _Mapping]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("request_id", "model", "image_size", "detections", "timings", "annotated_image")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: ServedBy
    image_size: ImageSize
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    timings: Timings
    annotated_image: EncodedImage
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[_Union[ServedBy, _Mapping]] = ..., image_size: _Optional[_Union[ImageSize, _Mapping]] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., annotated_image: _Optional[_Union[EncodedImage, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class DescribeModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class TensorDescription(_message.Message):
    __slots__ = ("name", "dtype", "shape", "unknown_rank")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_RANK_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    unknown_rank: bool
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., unknown_rank: _Optional[bool] = ...) -> None: ...

class Preprocessing(_message.Message):
    __slots__ = ("input_mode", "width", "height", "resize_mode", "resize_filter", "color", "normalization", "dtype", "layout")
    INPUT_MODE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    RESIZE_MODE_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FILTER_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    input_mode: str
    width: int
    height: int
    resize_mode: str
    resize_filter: str
    color: str
    normalization: str
    dtype: str
    layout: str
    def __init__(self, input_mode: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., resize_mode: _Optional[str] = ..., resize_filter: _Optional[str] = ..., color: _Optional[str] = ..., normalization: _Optional[str] = ..., dtype: _Optional[str] = ..., layout: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "kind", "ready", "version", "signature_name", "inputs", "outputs", "preprocessing", "label_count", "status_message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ModelKind
    ready: bool
    version: int
    signature_name: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorDescription]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorDescription]
    preprocessing: Preprocessing
    label_count: int
    status_message: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., ready: _Optional[bool] = ..., version: _Optional[int] = ..., signature_name: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorDescription, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorDescription, _Mapping]]] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., label_count: _Optional[int] = ..., status_message: _Optional[str] = ...) -> None: ...

class ModelTask(_message.Message):
    __slots__ = ("model", "top_k", "min_score", "max_detections", "annotate")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATE_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    top_k: int
    min_score: float
    max_detections: int
    annotate: AnnotateOptions
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., top_k: _Optional[int] = ..., min_score: _Optional[float] = ..., max_detections: _Optional[int] = ..., annotate: _Optional[_Union[AnnotateOptions, _Mapping]] = ...) -> None: ...

class ModelResult(_message.Message):
    __slots__ = ("model", "kind", "classifications", "detections", "timings", "annotated_image")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    model: ServedBy
    kind: ModelKind
    classifications: _containers.RepeatedCompositeFieldContainer[Classification]
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    timings: Timings
    annotated_image: EncodedImage
    def __init__(self, model: _Optional[_Union[ServedBy, _Mapping]] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., classifications: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., annotated_image: _Optional[_Union[EncodedImage, _Mapping]] = ...) -> None: ...

class AnalyzeRequest(_message.Message):
    __slots__ = ("image", "tasks", "request_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    tasks: _containers.RepeatedCompositeFieldContainer[ModelTask]
    request_id: str
    def __init__(self, image: _Optional[bytes] = ..., tasks: _Optional[_Iterable[_Union[ModelTask, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AnalyzeResponse(_message.Message):
    __slots__ = ("request_id", "image_size", "results")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    image_size: ImageSize
    results: _containers.RepeatedCompositeFieldContainer[ModelResult]
    def __init__(self, request_id: _Optional[str] = ..., image_size: _Optional[_Union[ImageSize, _Mapping]] = ..., results: _Optional[_Iterable[_Union[ModelResult, _Mapping]]] = ...) -> None: ...

class StreamOptions(_message.Message):
    __slots__ = ("tasks", "delivery", "drop_policy", "window", "request_id")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    DROP_POLICY_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[ModelTask]
    delivery: Delivery
    drop_policy: DropPolicy
    window: int
    request_id: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[ModelTask, _Mapping]]] = ..., delivery: _Optional[_Union[Delivery, str]] = ..., drop_policy: _Optional[_Union[DropPolicy, str]] = ..., window: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("frame_id", "image", "timestamp_us")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    image: bytes
    timestamp_us: int
    def __init__(self, frame_id: _Optional[int] = ..., image: _Optional[bytes] = ..., timestamp_us: _Optional[int] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("options", "frame")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    options: StreamOptions
    frame: Frame
    def __init__(self, options: _Optional[_Union[StreamOptions, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("frame_id", "timestamp_us", "image_size", "results")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    timestamp_us: int
    image_size: ImageSize
    results: _containers.RepeatedCompositeFieldContainer[ModelResult]
    def __init__(self, frame_id: _Optional[int] = ..., timestamp_us: _Optional[int] = ..., image_size: _Optional[_Union[ImageSize, _Mapping]] = ..., results: _Optional[_Iterable[_Union[ModelResult, _Mapping]]] = ...) -> None: ...

class FrameDropped(_message.Message):
    __slots__ = ("frame_id", "timestamp_us", "reason")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    timestamp_us: int
    reason: DropReason
    def __init__(self, frame_id: _Optional[int] = ..., timestamp_us: _Optional[int] = ..., reason: _Optional[_Union[DropReason, str]] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("frame_id", "timestamp_us", "code", "message")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    timestamp_us: int
    code: str
    message: str
    def __init__(self, frame_id: _Optional[int] = ..., timestamp_us: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("result", "dropped", "error")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    result: FrameResult
    dropped: FrameDropped
    error: FrameError
    def __init__(self, result: _Optional[_Union[FrameResult, _Mapping]] = ..., dropped: _Optional[_Union[FrameDropped, _Mapping]] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ...) -> None: ...
