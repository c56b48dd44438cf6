"""Label files, top-k and detection decoding, with no server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.labels import Box, _orient, detections, load_labels, top_k_labels
from gateway.pipeline import Geometry


def test_plain_label_file_numbers_lines_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("background\ncat\n\ndog\n")
    assert load_labels(path) == {0: "background", 1: "cat", 2: "", 3: "dog"}


def test_label_map_pbtxt_prefers_display_name_and_skips_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "label_map.pbtxt"
    path.write_text(
        """
        # a TF Object Detection API label map
        item { name: "/m/01g317" id: 1 display_name: "person" }
        item {
          name: "bicycle"
          id: 2
          keypoints { id: 0 label: "x" }
          frequency: FREQUENT
        }
        """
    )
    assert load_labels(path) == {1: "person", 2: "bicycle"}


def test_top_k_orders_by_score_then_index_and_applies_min_score() -> None:
    scores = np.array([0.1, 0.3, 0.3, 0.05, 0.25], np.float32)
    labels = {i: f"c{i}" for i in range(5)}
    top = top_k_labels(scores, labels, k=3)
    assert [(x.class_id, x.label) for x in top] == [(1, "c1"), (2, "c2"), (4, "c4")]
    assert top[0].score == pytest.approx(0.3)
    assert [x.class_id for x in top_k_labels(scores, labels, k=5, min_score=0.2)] == [1, 2, 4]


def test_softmax_only_when_asked_and_label_offset() -> None:
    logits = np.array([2.0, 0.0, 1.0])
    top = top_k_labels(logits, {1: "a", 2: "b", 3: "c"}, k=2, softmax=True, label_offset=1)
    expected = np.exp(logits) / np.exp(logits).sum()
    assert [(x.class_id, x.label) for x in top] == [(1, "a"), (3, "c")]
    assert [x.score for x in top] == pytest.approx([expected[0], expected[2]])
    raw = top_k_labels(logits, {}, k=1)
    assert (raw[0].class_id, raw[0].label, raw[0].score) == (0, "", 2.0)


def _od_outputs(boxes, scores, classes, num=None) -> dict[str, np.ndarray]:
    outputs = {
        "detection_boxes": np.array([boxes], np.float32),
        "detection_scores": np.array([scores], np.float32),
        "detection_classes": np.array([classes], np.float32),
    }
    if num is not None:
        outputs["num_detections"] = np.array([num], np.float32)
    return outputs


def test_detections_honour_num_detections_threshold_and_maximum() -> None:
    outputs = _od_outputs(
        [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0, 1, 1], [0.1, 0.1, 0.2, 0.2]],
        [0.9, 0.4, 0.8, 0.99],
        [1, 2, 3, 4],
        num=3,  # the 4th is padding, whatever its score
    )
    found = detections(outputs, {1: "a", 3: "c"}, Geometry(0, 0, 100, 50), (100, 50))
    assert [(d.class_id, d.label, round(d.score, 2)) for d in found] == [
        (1, "a", 0.9), (3, "c", 0.8), (2, "", 0.4),
    ]  # fmt: skip
    assert len(detections(outputs, {}, Geometry(0, 0, 100, 50), (100, 50), min_score=0.5)) == 2
    assert len(detections(outputs, {}, Geometry(0, 0, 100, 50), (100, 50), max_detections=1)) == 1
    assert found[0].pixel_box == Box(0.0, 0.0, 25.0, 50.0)


def test_letterbox_boxes_map_back_to_original_pixels_and_clip() -> None:
    # 640x480 letterboxed into 224x224: the input spans y -80..560 of the original.
    geometry = Geometry(0, -80, 640, 640)
    outputs = _od_outputs([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.1, 1.0]], [0.9, 0.8], [1, 1])
    found = detections(outputs, {}, geometry, (640, 480))
    assert len(found) == 1  # the second box lies entirely in the padding: dropped
    assert found[0].pixel_box == Box(80.0, 320.0, 400.0, 640.0)
    assert found[0].box == Box(80 / 480, 0.5, 400 / 480, 1.0)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_stored_boxes_turn_with_the_exif_orientation_as_pillow_turns_pixels(
    orientation: int,
) -> None:
    stored = np.zeros((40, 60), np.uint8)
    stored[5:15, 10:30] = 255  # rows 5-14, columns 10-29 of a 60x40 image
    box = np.array([5 / 40, 10 / 60, 15 / 40, 30 / 60])
    image = Image.fromarray(stored)
    image.getexif()  # exif_transpose reads orientation from the image's EXIF
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    from PIL import ImageOps

    displayed = np.asarray(ImageOps.exif_transpose(image))
    rows, cols = np.nonzero(displayed)
    h, w = displayed.shape
    expected = (rows.min() / h, cols.min() / w, (rows.max() + 1) / h, (cols.max() + 1) / w)
    assert _orient(box, orientation) == pytest.approx(expected)
