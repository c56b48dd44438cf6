"""Model outputs → what callers want: top-k labels, or labelled boxes in original-image pixels.

Label files are plain text (one label per line, line n is output index n) or TF Object Detection
API ``label_map.pbtxt`` files, read with protobuf's text format, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from google.protobuf import text_format

from gateway._proto.tfserving import string_int_label_map_pb2
from gateway.errors import UpstreamProtocolError

if TYPE_CHECKING:  # config reads label files at load; pipeline imports config
    from gateway.pipeline import Geometry


@dataclass(frozen=True, slots=True)
class Label:
    class_id: int
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class Box:
    ymin: float
    xmin: float
    ymax: float
    xmax: float


@dataclass(frozen=True, slots=True)
class Detection:
    class_id: int
    label: str
    score: float
    box: Box  # normalised to the original image
    pixel_box: Box  # pixels of the original image


def load_labels(path: Path) -> dict[int, str]:
    """Label id → text. ``.pbtxt``: the label map's ids (display_name, else name); other files:
    one label per line, numbered from 0."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".pbtxt":
        label_map = text_format.Parse(
            text, string_int_label_map_pb2.StringIntLabelMap(), allow_unknown_field=True
        )
        return {item.id: item.display_name or item.name for item in label_map.item}
    return dict(enumerate(text.rstrip("\n").split("\n"))) if text.strip() else {}


def top_k_labels(
    scores: np.ndarray,
    labels: Mapping[int, str],
    k: int,
    min_score: float = 0.0,
    softmax: bool = False,
    label_offset: int = 0,
) -> list[Label]:
    """The ``k`` best classes of one row of scores, best first (ties: lower index first)."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    if softmax:
        values = np.exp(values - values.max())
        values /= values.sum()
    order = np.argsort(-values, kind="stable")[: max(k, 0)]
    return [
        Label(int(i) + label_offset, labels.get(int(i) + label_offset, ""), float(values[i]))
        for i in order
        if values[i] >= min_score
    ]


def detections(
    outputs: Mapping[str, np.ndarray],
    labels: Mapping[int, str],
    geometry: Geometry,
    image_size: tuple[int, int],
    min_score: float = 0.0,
    max_detections: int = 100,
    label_offset: int = 0,
    orientation: int = 1,
) -> list[Detection]:
    """TF OD API outputs of one image → labelled boxes on the original image, best first.

    Boxes are mapped through ``geometry`` (letterbox padding, crops) and clipped to the image;
    a box left with no area (all of it in the padding) is dropped. ``orientation`` is the EXIF
    orientation of an image the model saw as stored (encoded input), not as displayed.
    """
    try:
        boxes = np.asarray(outputs["detection_boxes"], np.float64).reshape(-1, 4)
        scores = np.asarray(outputs["detection_scores"], np.float64).ravel()
        classes = np.asarray(outputs["detection_classes"], np.float64).ravel()
    except (KeyError, ValueError) as error:
        raise UpstreamProtocolError(f"detection outputs are malformed: {error}") from None
    count = min(len(boxes), len(scores), len(classes))
    if "num_detections" in outputs:
        count = min(count, max(int(np.asarray(outputs["num_detections"]).ravel()[0]), 0))
    width, height = image_size
    found: list[Detection] = []
    for i in np.argsort(-scores[:count], kind="stable"):
        if len(found) >= max_detections or scores[i] < min_score:
            break
        ymin, xmin, ymax, xmax = _orient(boxes[i], orientation)
        pixel = Box(
            _clip(geometry.y0 + ymin * geometry.height, height),
            _clip(geometry.x0 + xmin * geometry.width, width),
            _clip(geometry.y0 + ymax * geometry.height, height),
            _clip(geometry.x0 + xmax * geometry.width, width),
        )
        if pixel.ymax <= pixel.ymin or pixel.xmax <= pixel.xmin:
            continue
        class_id = round(float(classes[i])) + label_offset
        found.append(
            Detection(
                class_id,
                labels.get(class_id, ""),
                float(scores[i]),
                Box(
                    pixel.ymin / height, pixel.xmin / width, pixel.ymax / height, pixel.xmax / width
                ),
                pixel,
            )
        )
    return found


def _clip(value: float, limit: int) -> float:
    return min(max(value, 0.0), float(limit))


def _orient(box: np.ndarray, orientation: int) -> tuple[float, float, float, float]:
    """A normalised [ymin, xmin, ymax, xmax] box in the stored image → the displayed image."""
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    if orientation == 2:  # mirrored horizontally
        xmin, xmax = 1 - xmax, 1 - xmin
    elif orientation == 3:  # rotated 180°
        ymin, xmin, ymax, xmax = 1 - ymax, 1 - xmax, 1 - ymin, 1 - xmin
    elif orientation == 4:  # mirrored vertically
        ymin, ymax = 1 - ymax, 1 - ymin
    elif orientation == 5:  # transposed
        ymin, xmin, ymax, xmax = xmin, ymin, xmax, ymax
    elif orientation == 6:  # displayed = stored turned 90° clockwise
        ymin, xmin, ymax, xmax = xmin, 1 - ymax, xmax, 1 - ymin
    elif orientation == 7:  # transversed
        ymin, xmin, ymax, xmax = 1 - xmax, 1 - ymax, 1 - xmin, 1 - ymin
    elif orientation == 8:  # displayed = stored turned 90° counter-clockwise
        ymin, xmin, ymax, xmax = 1 - xmax, ymin, 1 - xmin, ymax
    return ymin, xmin, ymax, xmax
