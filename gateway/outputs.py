"""Which outputs of a signature the gateway reads, and as what: class scores (classification)
or TF Object Detection API boxes (detection), from the config or inferred from the signature."""

from __future__ import annotations

from dataclasses import dataclass

from gateway._proto.tfserving import types_pb2
from gateway.choices import ModelKind
from gateway.config import ModelSettings
from gateway.errors import ProfileError
from gateway.tfserving.signatures import Signature

DETECTION_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes")
_FLOATS = (types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_DOUBLE)


@dataclass(frozen=True, slots=True)
class OutputSelection:
    kind: ModelKind
    scores_output: str = ""  # classification: the [batch, classes] scores
    output_filter: tuple[str, ...] = ()


def select_outputs(signature: Signature, settings: ModelSettings) -> OutputSelection:
    """Classification or detection, from the config or from the signature's outputs."""
    outputs = signature.outputs
    is_detection = all(name in outputs for name in DETECTION_OUTPUTS)
    if settings.kind == ModelKind.DETECTION or (settings.kind is None and is_detection):
        if not is_detection:
            raise ProfileError(
                f"a detection model needs the outputs {', '.join(DETECTION_OUTPUTS)}"
            )
        wanted = [*DETECTION_OUTPUTS, *(["num_detections"] if "num_detections" in outputs else [])]
        return OutputSelection(ModelKind.DETECTION, output_filter=tuple(wanted))
    if settings.scores_output:
        if settings.scores_output not in outputs:
            raise ProfileError(f"scores_output {settings.scores_output!r} is not an output")
        return OutputSelection(
            ModelKind.CLASSIFICATION, settings.scores_output, (settings.scores_output,)
        )
    candidates = [
        name
        for name, spec in outputs.items()
        if spec.dtype in _FLOATS and spec.shape is not None and len(spec.shape) == 2
    ]
    if len(candidates) != 1:
        raise ProfileError(
            "cannot tell which output holds the class scores "
            f"(float [batch, classes] outputs: {', '.join(sorted(candidates)) or 'none'}): "
            'set scores_output, or kind = "detection"'
        )
    return OutputSelection(ModelKind.CLASSIFICATION, candidates[0], (candidates[0],))
