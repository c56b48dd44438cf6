"""What goes into the data plane and what comes out of it, as small frozen records: the tasks
a caller asks for, and one result per task with its typed outputs and stage timings."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.choices import ModelKind
from gateway.drawing import AnnotateSpec, EncodedImage
from gateway.labels import Detection, Label
from gateway.tfserving.signatures import ModelRef


@dataclass(frozen=True, slots=True)
class Task:
    """One model to run on an image, with its options (zero means the model's default)."""

    model: ModelRef
    kind: ModelKind | None = None  # required kind (Classify, Detect); None: the model's own
    top_k: int = 0
    min_score: float = 0.0
    max_detections: int = 0
    annotate: AnnotateSpec | None = None  # return the image with the results drawn on it


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """A single-model request (Classify, Detect)."""

    task: Task
    image: bytes
    timeout_s: float | None = None  # what is left of the caller's deadline


@dataclass(frozen=True, slots=True)
class Timings:
    decode_s: float
    preprocess_s: float
    upstream_s: float
    postprocess_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class Classifications:
    labels: list[Label]


@dataclass(frozen=True, slots=True)
class Detections:
    detections: list[Detection]


Outputs = Classifications | Detections


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """One model's answer on one image."""

    model: str
    version: int
    signature_name: str
    image_size: tuple[int, int]
    timings: Timings
    outputs: Outputs
    annotated: EncodedImage | None = None

    @property
    def kind(self) -> ModelKind:
        if isinstance(self.outputs, Detections):
            return ModelKind.DETECTION
        return ModelKind.CLASSIFICATION
