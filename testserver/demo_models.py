"""Build the demo and test SavedModels in code: small real TensorFlow graphs with hand-set
weights, so every answer on a generated image is known in advance.

    python -m testserver.demo_models OUT_DIR

writes, under OUT_DIR, a TF Serving model base path per model (numeric version folders), its
label file, ``models.config`` (a text ModelServerConfig naming them all) and ``gateway.toml``
(the gateway's config for the demo models):

- ``colors`` (v1, v2): float32 [-1,224,224,3] in [0,1] → ``probabilities`` [-1,8] and
  ``class_id`` [-1] int64. v1 names the dominant colour of the whole image, v2 of its central
  half (crop 50 %), so an image with a red frame around a blue centre tells them apart.
  Labels: ``labels.txt``; version labels ``stable`` → 1, ``canary`` → 2.
- ``colors_bytes``: DT_STRING [-1] encoded images (JPEG/PNG/GIF/BMP) decoded in the graph, then
  v1 of ``colors``; also returns each input's byte length.
- ``shapes``: a TF Object Detection API style detector, uint8 [1,-1,-1,3] → ``num_detections``,
  ``detection_boxes``, ``detection_scores``, ``detection_classes``. It finds one region per
  colour (red, green, blue: label ids 1-3 in ``label_map.pbtxt``); the box is the region's
  bounding box, the score its fill ratio (1.0 for a filled rectangle, ~0.785 for a disc).
- ``echo``: returns its input unchanged: ``serving_default`` float32 [-1,-1,-1,-1] → ``output``,
  and ``bytes`` DT_STRING [-1] → ``output``; tests compare preprocessed tensors with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tensorflow as tf

COLOR_LABELS = ("red", "green", "blue", "yellow", "cyan", "magenta", "white", "black")
COLOR_PROTOTYPES = (
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (1.0, 1.0, 0.0),
    (0.0, 1.0, 1.0),
    (1.0, 0.0, 1.0),
    (1.0, 1.0, 1.0),
    (0.0, 0.0, 0.0),
)
# logits = -SHARPNESS * squared distance to each prototype: a pure colour wins with p ≈ 0.9987.
SHARPNESS = 8.0
IMAGE_SIZE = 224

DETECTION_CLASSES = ((1, "red", (255, 0, 0)), (2, "green", (0, 255, 0)), (3, "blue", (0, 0, 255)))
DETECTION_TOLERANCE = 40  # per channel, in 0-255 units
MAX_DETECTIONS = 10


def _colour_scores(images: tf.Tensor, centre_fraction: float) -> dict[str, tf.Tensor]:
    if centre_fraction < 1.0:
        images = tf.image.central_crop(images, centre_fraction)
    mean = tf.reduce_mean(images, axis=[1, 2])  # [B, 3]
    prototypes = tf.constant(COLOR_PROTOTYPES, dtype=tf.float32)  # [C, 3]
    distance = tf.reduce_sum(tf.square(mean[:, None, :] - prototypes[None, :, :]), axis=-1)
    logits = -SHARPNESS * distance
    return {"probabilities": tf.nn.softmax(logits), "class_id": tf.argmax(logits, axis=-1)}


class ColourClassifier(tf.Module):
    def __init__(self, centre_fraction: float) -> None:
        super().__init__()
        self.centre_fraction = centre_fraction

    @tf.function(
        input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, "images")]
    )
    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return _colour_scores(images, self.centre_fraction)


class EncodedColourClassifier(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "image_bytes")])
    def serve(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        def decode(data: tf.Tensor) -> tf.Tensor:
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            image = tf.image.convert_image_dtype(image, tf.float32)
            return tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE])

        images = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32),
        )
        outputs = _colour_scores(images, 1.0)
        outputs["byte_length"] = tf.strings.length(image_bytes)
        return outputs


class ColourRegionDetector(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, "input_tensor")])
    def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        image = tf.cast(input_tensor[0], tf.int32)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        boxes, scores, classes = [], [], []
        for class_id, _name, rgb in DETECTION_CLASSES:
            mask = tf.reduce_all(tf.abs(image - tf.constant(rgb)) <= DETECTION_TOLERANCE, axis=-1)
            rows = tf.cast(tf.reduce_any(mask, axis=1), tf.int32)
            cols = tf.cast(tf.reduce_any(mask, axis=0), tf.int32)
            present = tf.reduce_any(mask)
            ymin = tf.cast(tf.argmax(rows), tf.int32)
            ymax = height - tf.cast(tf.argmax(tf.reverse(rows, [0])), tf.int32)
            xmin = tf.cast(tf.argmax(cols), tf.int32)
            xmax = width - tf.cast(tf.argmax(tf.reverse(cols, [0])), tf.int32)
            box_area = tf.cast((ymax - ymin) * (xmax - xmin), tf.float32)
            fill = tf.reduce_sum(tf.cast(mask, tf.float32)) / tf.maximum(box_area, 1.0)
            h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
            box = tf.stack(
                [
                    tf.cast(ymin, tf.float32) / h,
                    tf.cast(xmin, tf.float32) / w,
                    tf.cast(ymax, tf.float32) / h,
                    tf.cast(xmax, tf.float32) / w,
                ]
            )
            boxes.append(tf.where(present, box, tf.zeros([4])))
            scores.append(tf.where(present, fill, 0.0))
            classes.append(tf.where(present, float(class_id), 0.0))
        scores_t = tf.stack(scores)
        order = tf.argsort(scores_t, direction="DESCENDING", stable=True)
        padding = MAX_DETECTIONS - len(DETECTION_CLASSES)
        return {
            "num_detections": tf.reduce_sum(tf.cast(scores_t > 0, tf.float32))[None],
            "detection_boxes": tf.pad(tf.gather(tf.stack(boxes), order), [[0, padding], [0, 0]])[
                None
            ],
            "detection_scores": tf.pad(tf.gather(scores_t, order), [[0, padding]])[None],
            "detection_classes": tf.pad(tf.gather(tf.stack(classes), order), [[0, padding]])[None],
        }


class Echo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, "input")])
    def serve(self, input: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"output": tf.identity(input)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "input")])
    def serve_bytes(self, input: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"output": tf.identity(input)}


def _save(
    module: tf.Module, path: Path, signatures: dict[str, tf.types.experimental.ConcreteFunction]
) -> None:
    tf.saved_model.save(module, str(path), signatures=signatures)


def build(out: Path) -> Path:
    """Write every model, its labels and models.config under ``out``; return the config path."""
    out = out.resolve()
    for version, fraction in ((1, 1.0), (2, 0.5)):
        module = ColourClassifier(fraction)
        _save(module, out / "colors" / str(version), {"serving_default": module.serve})
    (out / "colors" / "labels.txt").write_text("\n".join(COLOR_LABELS) + "\n")

    encoded = EncodedColourClassifier()
    _save(encoded, out / "colors_bytes" / "1", {"serving_default": encoded.serve})
    (out / "colors_bytes" / "labels.txt").write_text("\n".join(COLOR_LABELS) + "\n")

    detector = ColourRegionDetector()
    _save(detector, out / "shapes" / "1", {"serving_default": detector.serve})
    (out / "shapes" / "label_map.pbtxt").write_text(
        "".join(
            f'item {{\n  id: {class_id}\n  name: "{name}_region"\n  display_name: "{name}"\n}}\n'
            for class_id, name, _rgb in DETECTION_CLASSES
        )
    )

    echo = Echo()
    _save(echo, out / "echo" / "1", {"serving_default": echo.serve, "bytes": echo.serve_bytes})

    (out / "gateway.toml").write_text(
        "# tfs-gateway config for the demo models (label paths are relative to this file)\n"
        'upstream = "localhost:8500"\n\n'
        '[models.colors]\nlabels = "colors/labels.txt"\ntop_k = 3\n\n'
        '[models.colors_bytes]\nlabels = "colors_bytes/labels.txt"\ntop_k = 3\n\n'
        '[models.shapes]\nlabels = "shapes/label_map.pbtxt"\nmin_score = 0.5\n'
    )

    # models.config names this folder; models.container.config names /models, where compose and
    # the container images mount it.
    for name, base in (("models.config", out), ("models.container.config", Path("/models"))):
        (out / name).write_text(_server_config(base))
    (out / "gateway.container.toml").write_text(
        (out / "gateway.toml")
        .read_text()
        .replace('labels = "', 'labels = "/models/')
        .replace('upstream = "localhost:8500"\n', "")
    )
    return out / "models.config"


def _server_config(base: Path) -> str:
    return (
        "model_config_list {\n"
        + _model_entry(
            "colors",
            base / "colors",
            "  model_version_policy { all {} }\n"
            '  version_labels { key: "stable" value: 1 }\n'
            '  version_labels { key: "canary" value: 2 }\n',
        )
        + _model_entry("colors_bytes", base / "colors_bytes")
        + _model_entry("shapes", base / "shapes")
        + _model_entry("echo", base / "echo")
        + "}\n"
    )


def _model_entry(name: str, base_path: Path, extra: str = "") -> str:
    return (
        f'config {{\n  name: "{name}"\n  base_path: "{base_path}"\n'
        f'  model_platform: "tensorflow"\n{extra}}}\n'
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the models into")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
