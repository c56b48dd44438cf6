"""TF Serving's outputs for one image → the caller's typed outputs (top-k labels or labelled
boxes, per the model's settings and the task's options), and the annotated image."""

from __future__ import annotations

from gateway.choices import ModelKind
from gateway.decode import DecodeLimits, decode_image
from gateway.drawing import AnnotateSpec, EncodedImage, draw_classifications, draw_detections
from gateway.drawing import encode as encode_image
from gateway.inference import Classifications, Detections, Outputs, Task
from gateway.labels import detections, top_k_labels
from gateway.models import ServedModel, SignatureBinding
from gateway.pipeline import Preprocessed
from gateway.tfserving.signatures import Prediction


def read_outputs(
    task: Task,
    served: ServedModel,
    binding: SignatureBinding,
    pre: Preprocessed,
    prediction: Prediction,
) -> Outputs:
    settings = served.settings
    min_score = task.min_score or settings.min_score
    if binding.outputs.kind == ModelKind.CLASSIFICATION:
        scores = prediction.outputs[binding.outputs.scores_output]
        return Classifications(
            top_k_labels(
                scores[0],
                served.labels,
                task.top_k or settings.top_k,
                min_score,
                softmax=settings.logits,
                label_offset=settings.label_offset,
            )
        )
    return Detections(
        detections(
            prediction.outputs,
            served.labels,
            pre.geometry,
            (pre.header.width, pre.header.height),
            min_score,
            task.max_detections or settings.max_detections,
            settings.label_offset,
            # An encoded-input model saw the image as stored, not as displayed.
            orientation=pre.header.orientation if binding.profile.encoded else 1,
        )
    )


def annotate(
    image: bytes,
    outputs: Outputs,
    spec: AnnotateSpec,
    limits: DecodeLimits,
    background: tuple[int, int, int],
) -> EncodedImage:
    """Worker thread: draw on the original image, decoded again at full size."""
    picture = decode_image(image, limits, background=background).image
    if isinstance(outputs, Detections):
        drawn = draw_detections(picture, outputs.detections)
    else:
        drawn = draw_classifications(picture, outputs.labels)
    return encode_image(drawn, spec)
