"""The gateway's upstream client against the TF-Serving-compatible test server, both real
processes: metadata, status, Predict for every demo model with exactly known outputs, both
output encodings, version selection and every error code."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import numpy as np
import pytest
from PIL import Image

from gateway._proto.tfserving import get_model_metadata_pb2, predict_pb2, types_pb2
from gateway.errors import UpstreamError
from gateway.tfserving.client import GET_MODEL_METADATA, PREDICT, UpstreamClient
from gateway.tfserving.options import UpstreamOptions
from gateway.tfserving.signatures import ModelRef, VersionState
from gateway.tfserving.tensors import make_tensor_proto
from tests.conftest import ModelServerProcess, free_port, start_test_server

T = TypeVar("T")
COLORS = ("red", "green", "blue", "yellow", "cyan", "magenta", "white", "black")
RGB = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}


def call(target: str, body: Callable[[UpstreamClient], Awaitable[T]], **options: float) -> T:
    async def run() -> T:
        async with UpstreamClient(UpstreamOptions(target, **options)) as client:
            return await body(client)

    return asyncio.run(run())


def solid(colour: str, size: int = 224) -> np.ndarray:
    image = np.zeros((size, size, 3), np.float32)
    image[...] = RGB[colour]
    return image


def framed(frame: str, centre: str) -> np.ndarray:
    """A 224² image whose outer ring (3/4 of the area) is ``frame`` and central half ``centre``."""
    image = solid(frame)
    image[56:168, 56:168] = RGB[centre]
    return image


def reference_probabilities(images: np.ndarray, centre_fraction: float = 1.0) -> np.ndarray:
    """The colour classifier's formula, in numpy: softmax(-8 * squared distance to prototypes)."""
    if centre_fraction < 1:
        margin = int(images.shape[1] * (1 - centre_fraction) / 2)
        images = images[:, margin:-margin, margin:-margin]
    prototypes = np.array(
        [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1), (1, 1, 1), (0, 0, 0)],
        np.float64,
    )
    mean = images.mean(axis=(1, 2), dtype=np.float64)
    logits = -8 * ((mean[:, None, :] - prototypes[None]) ** 2).sum(-1)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (50, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


# --- metadata and status ---------------------------------------------------------------------


def test_metadata_discovers_the_classifier_signature(tfserving: ModelServerProcess) -> None:
    metadata = call(tfserving.target, lambda c: c.metadata(ModelRef("colors")))
    assert (metadata.name, metadata.version) == ("colors", 2)
    assert set(metadata.signatures) == {"serving_default", "__saved_model_init_op"}
    signature = metadata.signature()
    assert signature.method_name == "tensorflow/serving/predict"
    [images] = signature.inputs.values()
    assert (images.alias, images.dtype, images.shape) == (
        "images",
        types_pb2.DT_FLOAT,
        (-1, 224, 224, 3),
    )
    outputs = {alias: (spec.dtype, spec.shape) for alias, spec in signature.outputs.items()}
    assert outputs == {
        "probabilities": (types_pb2.DT_FLOAT, (-1, 8)),
        "class_id": (types_pb2.DT_INT64, (-1,)),
    }


def test_metadata_discovers_string_detection_and_named_signatures(
    tfserving: ModelServerProcess,
) -> None:
    async def body(client: UpstreamClient) -> dict[str, object]:
        return {m: await client.metadata(ModelRef(m)) for m in ("colors_bytes", "shapes", "echo")}

    found = call(tfserving.target, body)
    encoded = found["colors_bytes"].signature()
    assert {a: (s.dtype, s.shape) for a, s in encoded.inputs.items()} == {
        "image_bytes": (types_pb2.DT_STRING, (-1,))
    }
    detector = found["shapes"].signature()
    assert {a: (s.dtype, s.shape) for a, s in detector.inputs.items()} == {
        "input_tensor": (types_pb2.DT_UINT8, (1, -1, -1, 3))
    }
    assert {a: (s.dtype, s.shape) for a, s in detector.outputs.items()} == {
        "num_detections": (types_pb2.DT_FLOAT, (1,)),
        "detection_boxes": (types_pb2.DT_FLOAT, (1, 10, 4)),
        "detection_scores": (types_pb2.DT_FLOAT, (1, 10)),
        "detection_classes": (types_pb2.DT_FLOAT, (1, 10)),
    }
    echo_bytes = found["echo"].signature("bytes")
    assert echo_bytes.inputs["input"].dtype == types_pb2.DT_STRING
    assert found["echo"].signature().inputs["input"].shape == (-1, -1, -1, -1)


def test_metadata_of_a_version_and_of_a_label(tfserving: ModelServerProcess) -> None:
    async def body(client: UpstreamClient) -> list[int | None]:
        by_number = await client.metadata(ModelRef("colors", version=1))
        by_label = await client.metadata(ModelRef("colors", version_label="canary"))
        return [by_number.version, by_label.version]

    assert call(tfserving.target, body) == [1, 2]


def test_status_reports_every_loaded_version_available(tfserving: ModelServerProcess) -> None:
    statuses = call(tfserving.target, lambda c: c.status(ModelRef("colors")))
    assert [(s.version, s.state, s.error_code) for s in statuses] == [
        (2, VersionState.AVAILABLE, grpc.StatusCode.OK),
        (1, VersionState.AVAILABLE, grpc.StatusCode.OK),
    ]
    one = call(tfserving.target, lambda c: c.status(ModelRef("colors", version=1)))
    assert [s.version for s in one] == [1]


# --- Predict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["tfserving", "tfserving_tensor_content"])
def test_classifier_names_the_dominant_colour_in_either_encoding(
    server: str, request: pytest.FixtureRequest
) -> None:
    target = request.getfixturevalue(server).target
    images = np.stack([solid(c) for c in ("red", "green", "blue", "yellow")])
    prediction = call(
        target, lambda c: c.predict(ModelRef("colors", version=1), {"images": images})
    )
    assert (prediction.model, prediction.version, prediction.signature_name) == (
        "colors",
        1,
        "serving_default",
    )
    assert [COLORS[i] for i in prediction.outputs["class_id"]] == ["red", "green", "blue", "yellow"]
    assert prediction.outputs["class_id"].dtype == np.int64
    # float32 softmax in TensorFlow against float64 numpy: equal to float32 precision.
    np.testing.assert_allclose(
        prediction.outputs["probabilities"], reference_probabilities(images), rtol=1e-5, atol=1e-7
    )


def test_default_server_answers_in_typed_fields_and_flagged_one_in_tensor_content(
    tfserving: ModelServerProcess, tfserving_tensor_content: ModelServerProcess
) -> None:
    """Looks at the raw response, not the decoded arrays, to prove which encoding arrived."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "colors"
    request.inputs["images"].CopyFrom(make_tensor_proto(solid("red")[None]))

    async def raw(target: str) -> predict_pb2.PredictResponse:
        async with grpc.aio.insecure_channel(target) as channel:
            method = channel.unary_unary(
                PREDICT,
                request_serializer=predict_pb2.PredictRequest.SerializeToString,
                response_deserializer=predict_pb2.PredictResponse.FromString,
            )
            return await method(request, timeout=30)

    typed = asyncio.run(raw(tfserving.target)).outputs
    assert len(typed["probabilities"].float_val) == 8
    assert list(typed["class_id"].int64_val) == [0]
    assert not typed["probabilities"].tensor_content

    packed = asyncio.run(raw(tfserving_tensor_content.target)).outputs
    assert len(packed["probabilities"].tensor_content) == 8 * 4
    assert not packed["probabilities"].float_val


def test_versions_answer_differently_by_number_label_and_latest(
    tfserving: ModelServerProcess,
) -> None:
    image = {"images": framed("red", "blue")[None]}

    async def body(client: UpstreamClient) -> list[tuple[int | None, str]]:
        refs = [
            ModelRef("colors", version=1),
            ModelRef("colors", version=2),
            ModelRef("colors", version_label="stable"),
            ModelRef("colors", version_label="canary"),
            ModelRef("colors"),
        ]
        results = [await client.predict(ref, image) for ref in refs]
        return [(r.version, COLORS[r.outputs["class_id"][0]]) for r in results]

    assert call(tfserving.target, body) == [
        (1, "red"),
        (2, "blue"),
        (1, "red"),
        (2, "blue"),
        (2, "blue"),
    ]


def test_string_model_decodes_encoded_images_in_the_graph(tfserving: ModelServerProcess) -> None:
    blobs = [png((0, 0, 255)), png((0, 255, 0), (300, 200))]
    prediction = call(
        tfserving.target,
        lambda c: c.predict(ModelRef("colors_bytes"), {"image_bytes": np.array(blobs, object)}),
    )
    assert [COLORS[i] for i in prediction.outputs["class_id"]] == ["blue", "green"]
    assert prediction.outputs["byte_length"].tolist() == [len(b) for b in blobs]


def test_detector_finds_exact_boxes_scores_and_classes(tfserving: ModelServerProcess) -> None:
    image = np.zeros((1, 100, 200, 3), np.uint8)
    image[0, 20:60, 30:90] = (255, 0, 0)  # red rectangle: fill ratio 1
    yy, xx = np.mgrid[0:100, 0:200]
    disc = (yy - 75) ** 2 + (xx - 150) ** 2 < 20**2
    image[0][disc] = (0, 0, 255)  # blue disc of radius 20 around (75, 150)
    outputs = call(
        tfserving.target, lambda c: c.predict(ModelRef("shapes"), {"input_tensor": image})
    ).outputs
    assert outputs["num_detections"].tolist() == [2.0]
    assert outputs["detection_classes"][0, :3].tolist() == [1.0, 3.0, 0.0]
    # The graph divides pixel edges by the image size in float32; so does the expectation.
    edges = np.array([[20, 30, 60, 90], [56, 131, 95, 170]], np.float32)
    np.testing.assert_array_equal(
        outputs["detection_boxes"][0, :2], edges / np.array([100, 200, 100, 200], np.float32)
    )
    scores = outputs["detection_scores"][0]
    assert scores[0] == 1.0
    assert scores[1] == pytest.approx(disc.sum() / (39 * 39))
    assert scores[2:].tolist() == [0.0] * 8


@pytest.mark.parametrize("server", ["tfserving", "tfserving_tensor_content"])
def test_echo_round_trips_a_tensor_far_over_4_mib(
    server: str, request: pytest.FixtureRequest
) -> None:
    target = request.getfixturevalue(server).target
    tensor = np.random.default_rng(7).random((1, 1080, 1920, 3), dtype=np.float32)  # 24 MiB
    prediction = call(target, lambda c: c.predict(ModelRef("echo"), {"input": tensor}))
    np.testing.assert_array_equal(prediction.outputs["output"], tensor)


def test_named_signature_echoes_bytes_unchanged(tfserving: ModelServerProcess) -> None:
    blobs = np.array([b"\x00\xffraw", png((1, 2, 3))], dtype=object)
    prediction = call(
        tfserving.target,
        lambda c: c.predict(ModelRef("echo", signature_name="bytes"), {"input": blobs}),
    )
    assert prediction.signature_name == "bytes"
    assert prediction.outputs["output"].tolist() == blobs.tolist()


def test_output_filter_returns_only_the_named_outputs(tfserving: ModelServerProcess) -> None:
    prediction = call(
        tfserving.target,
        lambda c: c.predict(
            ModelRef("colors"), {"images": solid("red")[None]}, output_filter=["class_id"]
        ),
    )
    assert list(prediction.outputs) == ["class_id"]


# --- errors ----------------------------------------------------------------------------------

RED = {"images": solid("red")[None]}
PREDICT_ERRORS = [
    (
        ModelRef("nope"),
        RED,
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    ),
    (
        ModelRef("colors", version=7),
        RED,
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(colors, 7)",
    ),
    (
        ModelRef("colors", version_label="beta"),
        RED,
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: beta",
    ),
    (
        ModelRef("colors", signature_name="classify"),
        RED,
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "classify" not found.',
    ),
    (
        ModelRef("colors"),
        {"image": RED["images"]},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor alias not found in signature: image. "
        "Inputs expected to be in the set {images}.",
    ),
    (
        ModelRef("colors"),
        {"images": RED["images"], "extra": RED["images"]},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 2!=1 len({extra,images}) != len({images}). "
        "Sent extra: {extra}. Missing but required: {}.",
    ),
    (
        ModelRef("colors"),
        {"images": RED["images"].astype(np.uint8)},
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be float but uint8 is provided",
    ),
    (
        ModelRef("colors"),
        {"images": np.zeros((1, 2), np.float32)},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input images has shape [1, 2], incompatible with the signature's shape "
        "[-1, 224, 224, 3] (-1: any size)",
    ),
]


@pytest.mark.parametrize(("model", "inputs", "code", "message"), PREDICT_ERRORS)
def test_predict_errors_keep_tf_servings_code_and_message(
    tfserving: ModelServerProcess,
    model: ModelRef,
    inputs: dict[str, np.ndarray],
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(UpstreamError) as caught:
        call(tfserving.target, lambda c: c.predict(model, inputs))
    assert (caught.value.code, caught.value.details, caught.value.method) == (
        code,
        message,
        PREDICT,
    )
    assert caught.value.message == f"upstream: {message}"


def test_unknown_output_filter_is_invalid_argument(tfserving: ModelServerProcess) -> None:
    with pytest.raises(UpstreamError) as caught:
        call(tfserving.target, lambda c: c.predict(ModelRef("colors"), RED, output_filter=["x"]))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details == (
        "output tensor alias not found in signature: x "
        "Outputs expected to be in the set {class_id,probabilities}."
    )


def test_metadata_request_without_field_is_invalid_argument(tfserving: ModelServerProcess) -> None:
    async def raw() -> None:
        async with grpc.aio.insecure_channel(tfserving.target) as channel:
            method = channel.unary_unary(
                GET_MODEL_METADATA,
                request_serializer=get_model_metadata_pb2.GetModelMetadataRequest.SerializeToString,
                response_deserializer=get_model_metadata_pb2.GetModelMetadataResponse.FromString,
            )
            request = get_model_metadata_pb2.GetModelMetadataRequest()
            request.model_spec.name = "colors"
            await method(request, timeout=30)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(raw())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        caught.value.details() == "GetModelMetadataRequest must specify at least one metadata_field"
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (ModelRef("nope"), "Could not find any versions of model nope"),
        (ModelRef("colors", version=9), "Could not find version 9 of model colors"),
    ],
)
def test_status_of_unknown_model_or_version_is_not_found(
    tfserving: ModelServerProcess, model: ModelRef, message: str
) -> None:
    with pytest.raises(UpstreamError) as caught:
        call(tfserving.target, lambda c: c.status(model))
    assert (caught.value.code, caught.value.details) == (grpc.StatusCode.NOT_FOUND, message)


def test_unreachable_upstream_is_unavailable() -> None:
    with pytest.raises(UpstreamError) as caught:
        call(f"localhost:{free_port()}", lambda c: c.metadata(ModelRef("colors")), timeout_s=5)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_every_call_has_a_deadline(models_dir) -> None:
    slow = start_test_server(models_dir / "models.config", "--test_latency_ms", "2000")
    try:
        with pytest.raises(UpstreamError) as caught:
            call(slow.target, lambda c: c.predict(ModelRef("colors"), RED), timeout_s=0.5)
        assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        slow.stop()
