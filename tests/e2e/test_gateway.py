"""The gateway end to end: test server (real SavedModels) ← wiretap ← gateway process ← stubs.

Every expected label and box is known by construction of the images and the demo models.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from gateway._proto import classify_pb2
from gateway._proto.tfserving import predict_pb2
from tests import images
from tests.conftest import GatewayProcess, require_tool
from tests.e2e.conftest import MAX_MESSAGE_BYTES
from tests.wiretap import Wiretap


def classify(stub, image: bytes, model: str = "colors", **options) -> classify_pb2.ClassifyResponse:
    ref = classify_pb2.ModelRef(name=model, **options.pop("ref", {}))
    return stub.Classify(
        classify_pb2.ClassifyRequest(model=ref, image=image, **options), timeout=30
    )


def detect(stub, image: bytes, model: str = "shapes", **options) -> classify_pb2.DetectResponse:
    ref = classify_pb2.ModelRef(name=model)
    return stub.Detect(classify_pb2.DetectRequest(model=ref, image=image, **options), timeout=30)


def labels(response: classify_pb2.ClassifyResponse) -> list[str]:
    return [c.label for c in response.classifications]


# --- Classify --------------------------------------------------------------------------------


@pytest.mark.parametrize("colour", ["red", "green", "blue", "yellow"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_classify_names_the_colour_in_every_allowed_format(stub, colour: str, fmt: str) -> None:
    response = classify(stub, images.solid(colour, fmt=fmt), request_id=f"{colour}-{fmt}")
    assert response.request_id == f"{colour}-{fmt}"
    assert labels(response)[0] == colour
    assert response.classifications[0].score > 0.99
    assert len(response.classifications) == 3  # the model's configured top_k
    assert (response.image_size.width, response.image_size.height) == (640, 480)
    assert (response.model.name, response.model.version, response.model.signature_name) == (
        "colors",
        2,
        "serving_default",
    )


def test_classify_reports_class_ids_scores_and_stage_timings(stub) -> None:
    response = classify(stub, images.solid("blue"), top_k=8)
    assert response.classifications[0].class_id == 2
    assert len(response.classifications) == 8
    scores = [c.score for c in response.classifications]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)  # all 8 softmax probabilities
    t = response.timings
    assert min(t.decode_ms, t.preprocess_ms, t.upstream_ms, t.postprocess_ms) > 0
    assert t.total_ms >= t.decode_ms + t.preprocess_ms + t.upstream_ms + t.postprocess_ms


def test_top_k_and_min_score_options(stub) -> None:
    assert labels(classify(stub, images.solid("red"), top_k=1)) == ["red"]
    assert labels(classify(stub, images.solid("red"), min_score=0.5)) == ["red"]


def test_version_number_label_and_latest_answer_differently(stub) -> None:
    image = images.framed("red", "blue")
    by_version = {
        "v1": classify(stub, image, ref={"version": 1}),
        "v2": classify(stub, image, ref={"version": 2}),
        "stable": classify(stub, image, ref={"version_label": "stable"}),
        "latest": classify(stub, image),
    }
    assert {k: (r.model.version, labels(r)[0]) for k, r in by_version.items()} == {
        "v1": (1, "red"),
        "v2": (2, "blue"),
        "stable": (1, "red"),
        "latest": (2, "blue"),
    }


def test_string_model_gets_the_callers_bytes_unchanged(stub, wiretap: Wiretap) -> None:
    image = images.solid("green", (50, 30), fmt="PNG") + b""  # exact bytes the model must see
    before = len(wiretap.predict_requests())
    response = classify(stub, image, model="colors_bytes")
    assert labels(response)[0] == "green"
    [call] = wiretap.predict_requests()[before:]
    sent = predict_pb2.PredictRequest.FromString(call.request)
    assert list(sent.inputs["image_bytes"].string_val) == [image]
    assert list(sent.output_filter) == ["probabilities"]


def test_classify_sends_a_float_tensor_in_tensor_content(stub, wiretap: Wiretap) -> None:
    before = len(wiretap.predict_requests())
    classify(stub, images.solid("red"))
    [call] = wiretap.predict_requests()[before:]
    tensor = predict_pb2.PredictRequest.FromString(call.request).inputs["images"]
    assert [d.size for d in tensor.tensor_shape.dim] == [1, 224, 224, 3]
    assert len(tensor.tensor_content) == 224 * 224 * 3 * 4
    assert not tensor.float_val


def test_callers_deadline_propagates_to_tf_serving(stub, wiretap: Wiretap) -> None:
    before = len(wiretap.predict_requests())
    request = classify_pb2.ClassifyRequest(model={"name": "colors"}, image=images.solid("red"))
    stub.Classify(request, timeout=4.0)
    [call] = wiretap.predict_requests()[before:]
    assert call.time_remaining is not None
    assert 2.0 < call.time_remaining < 4.1  # not the gateway's own 30 s (timer rounding)


# --- Detect ----------------------------------------------------------------------------------


def _boxes(response: classify_pb2.DetectResponse) -> dict[str, tuple[float, ...]]:
    return {
        d.label: (d.pixel_box.xmin, d.pixel_box.ymin, d.pixel_box.xmax, d.pixel_box.ymax)
        for d in response.detections
    }


def test_detect_maps_letterboxed_boxes_back_to_original_pixels(stub) -> None:
    response = detect(stub, images.encode(images.scene(), "PNG"))
    assert (response.image_size.width, response.image_size.height) == images.SCENE_SIZE
    assert [(d.label, d.class_id, d.score) for d in response.detections] == [
        ("red", 1, 1.0),
        ("blue", 3, 1.0),
    ]
    # The model saw the scene at 0.8 scale (320x240 in a 320x320 letterbox, nearest filter):
    # each edge is exact to one model pixel, 1.25 original pixels.
    for label, box in _boxes(response).items():
        np.testing.assert_allclose(box, images.SCENE_BOXES[label], atol=1.25)
    red = response.detections[0]
    w, h = images.SCENE_SIZE
    assert red.box.xmin == pytest.approx(red.pixel_box.xmin / w)
    assert red.box.ymax == pytest.approx(red.pixel_box.ymax / h)


def test_detect_on_an_exif_rotated_jpeg_reports_displayed_coordinates(stub) -> None:
    response = detect(stub, images.rotated_jpeg(images.scene(), orientation=6))
    assert (response.image_size.width, response.image_size.height) == images.SCENE_SIZE
    # JPEG edges blur by up to a pixel on top of the letterbox's 1.25.
    for label, box in _boxes(response).items():
        np.testing.assert_allclose(box, images.SCENE_BOXES[label], atol=2.5)
    assert sorted(_boxes(response)) == ["blue", "red"]


def test_max_detections_and_min_score(stub) -> None:
    scene = images.encode(images.scene(), "PNG")
    assert [d.label for d in detect(stub, scene, max_detections=1).detections] == ["red"]
    assert detect(stub, scene, min_score=1.01).detections == []


# --- models ----------------------------------------------------------------------------------


def test_list_and_describe_models(stub) -> None:
    listed = stub.ListModels(classify_pb2.ListModelsRequest(), timeout=10)
    assert [(m.name, m.ready, m.kind, m.label_count) for m in listed.models] == [
        ("colors", True, classify_pb2.MODEL_KIND_CLASSIFICATION, 8),
        ("colors_bytes", True, classify_pb2.MODEL_KIND_CLASSIFICATION, 8),
        ("shapes", True, classify_pb2.MODEL_KIND_DETECTION, 3),
    ]
    colors = stub.DescribeModel(classify_pb2.DescribeModelRequest(name="colors"), timeout=10)
    assert colors.version == 2
    assert [(t.name, t.dtype, list(t.shape)) for t in colors.inputs] == [
        ("images", "DT_FLOAT", [-1, 224, 224, 3])
    ]
    p = colors.preprocessing
    assert (p.input_mode, p.width, p.height, p.resize_mode, p.normalization, p.dtype, p.layout) == (
        "tensor", 224, 224, "stretch", "unit", "DT_FLOAT", "NHWC",
    )  # fmt: skip
    shapes = stub.DescribeModel(classify_pb2.DescribeModelRequest(name="shapes"), timeout=10)
    assert (shapes.preprocessing.resize_mode, shapes.preprocessing.dtype) == (
        "letterbox",
        "DT_UINT8",
    )
    encoded = stub.DescribeModel(classify_pb2.DescribeModelRequest(name="colors_bytes"), timeout=10)
    assert encoded.preprocessing.input_mode == "encoded"


# --- errors ----------------------------------------------------------------------------------

JPEG = images.solid("red")


def _truncated_jpeg() -> bytes:
    data = images.encode(images.noise((64, 64)), "JPEG")
    return data[: len(data) // 2]


ERRORS = [
    (
        "not an image",
        {"image": b"hello world"},
        grpc.StatusCode.INVALID_ARGUMENT,
        "the data is not an image in a supported format (JPEG, PNG, WEBP, BMP, GIF); "
        "first bytes: 68656c6c6f20776f",
    ),
    (
        "disallowed format",
        {"image": images.encode(Image.new("RGB", (8, 8)), "TIFF")},
        grpc.StatusCode.INVALID_ARGUMENT,
        "image format TIFF is not allowed (allowed: JPEG, PNG, WEBP, BMP, GIF)",
    ),
    (
        "truncated",
        {"image": _truncated_jpeg()},
        grpc.StatusCode.INVALID_ARGUMENT,
        re.compile(r"the JPEG image could not be decoded: image file is truncated"),
    ),
    (
        "over the pixel limit",
        {"image": images.encode(Image.new("L", (3000, 2000)), "PNG")},
        grpc.StatusCode.INVALID_ARGUMENT,
        "the image is 3000x2000 = 6.0 Mpx, over the 4 Mpx limit",
    ),
    (
        "no image",
        {"image": b""},
        grpc.StatusCode.INVALID_ARGUMENT,
        "image is required (the encoded image bytes)",
    ),
    (
        "no model",
        {"model": {"name": ""}, "image": JPEG},
        grpc.StatusCode.INVALID_ARGUMENT,
        "model.name is required",
    ),
    (
        "unknown model",
        {"model": {"name": "resnet"}, "image": JPEG},
        grpc.StatusCode.NOT_FOUND,
        "model 'resnet' is not served by this gateway (models: colors, colors_bytes, shapes)",
    ),
    (
        "unknown version",
        {"model": {"name": "colors", "version": 9}, "image": JPEG},
        grpc.StatusCode.NOT_FOUND,
        "upstream: Servable not found for request: Specific(colors, 9)",
    ),
    (
        "unknown label",
        {"model": {"name": "colors", "version_label": "beta"}, "image": JPEG},
        grpc.StatusCode.NOT_FOUND,
        "upstream: Unrecognized servable version label: beta",
    ),
    (
        "unknown signature",
        {"model": {"name": "colors", "signature_name": "predict"}, "image": JPEG},
        grpc.StatusCode.FAILED_PRECONDITION,
        "model 'colors' has no signature \"predict\" "
        "(it has: __saved_model_init_op, serving_default)",
    ),
    (
        "wrong kind",
        {"model": {"name": "shapes"}, "image": JPEG},
        grpc.StatusCode.FAILED_PRECONDITION,
        "model 'shapes' is a detection model: call Detect",
    ),
    (
        "over the byte limit",
        {"image": b"\xff" * (MAX_MESSAGE_BYTES + 1)},
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        re.compile(r"Received message larger than max \(\d+ vs\. 4194304\)"),
    ),
]


@pytest.mark.parametrize(("case", "fields", "code", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_requests_get_a_clear_status_and_the_gateway_keeps_serving(
    stub, gateway: GatewayProcess, case: str, fields: dict, code: grpc.StatusCode, message
) -> None:
    request = classify_pb2.ClassifyRequest(model={"name": "colors"})
    request.MergeFrom(classify_pb2.ClassifyRequest(**fields))
    if "model" in fields:
        request.model.CopyFrom(classify_pb2.ModelRef(**fields["model"]))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Classify(request, timeout=30)
    assert caught.value.code() == code
    if isinstance(message, re.Pattern):
        assert message.search(caught.value.details()), caught.value.details()
    else:
        assert caught.value.details() == message
    assert gateway.process.poll() is None
    assert labels(classify(stub, images.solid("green")))[0] == "green"


def test_detect_on_a_classifier_says_which_rpc_to_call(stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        detect(stub, JPEG, model="colors")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == "model 'colors' is a classification model: call Classify"


# --- health, reflection, metrics, no TensorFlow ------------------------------------------------


def test_health_reports_readiness_per_model_and_liveness(gateway: GatewayProcess) -> None:
    with grpc.insecure_channel(gateway.target) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        for service in (
            "",
            "tfsgateway.v1.ImageGateway",
            "liveness",
            "model/colors",
            "model/shapes",
        ):
            response = check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_gateway_service(gateway: GatewayProcess) -> None:
    with grpc.insecure_channel(gateway.target) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "tfsgateway.v1.ImageGateway" in services
        assert "grpc.health.v1.Health" in services
        file = ProtoReflectionDescriptorDatabase(channel).FindFileContainingSymbol(
            "tfsgateway.v1.ClassifyRequest"
        )
        assert file.name == "classify.proto"
        assert [s.name for s in file.service] == ["ImageGateway"]


def _scrape(gateway: GatewayProcess) -> str:
    with urllib.request.urlopen(
        f"http://localhost:{gateway.metrics_port}/metrics", timeout=10
    ) as r:
        return r.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_the_calls_made(stub, gateway: GatewayProcess) -> None:
    def count(samples, method, model, code) -> float:
        key = ("tfs_gateway_requests_total", (("code", code), ("method", method), ("model", model)))
        return samples.get(key, 0.0)

    before = _samples(_scrape(gateway))
    for _ in range(3):
        classify(stub, images.solid("red"))
    detect(stub, images.encode(images.scene(), "PNG"))
    for bad in (b"nope", b"zzz"):
        with pytest.raises(grpc.RpcError):
            classify(stub, bad)
    with pytest.raises(grpc.RpcError):
        classify(stub, JPEG, model="unknown-model")
    after = _samples(_scrape(gateway))

    deltas = {
        ("Classify", "colors", "OK"): 3,
        ("Detect", "shapes", "OK"): 1,
        ("Classify", "colors", "INVALID_ARGUMENT"): 2,
        ("Classify", "_unknown", "NOT_FOUND"): 1,
    }
    for (method, model, code), delta in deltas.items():
        assert count(after, method, model, code) - count(before, method, model, code) == delta
    stage = (
        "tfs_gateway_stage_duration_seconds_count",
        (("model", "colors"), ("stage", "upstream")),
    )
    assert after[stage] - before.get(stage, 0) == 3
    assert after[("tfs_gateway_in_flight_requests", ())] == 0
    assert after[("tfs_gateway_model_ready", (("model", "colors"),))] == 1


def test_metrics_pass_promtool(gateway: GatewayProcess) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=_scrape(gateway), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gateway_process_never_loads_tensorflow(stub, gateway: GatewayProcess) -> None:
    classify(stub, images.solid("red"))
    maps = Path(f"/proc/{gateway.process.pid}/maps").read_text()
    assert "tensorflow" not in maps
    assert "libgrpc" in maps or "cygrpc" in maps  # the check reads the right process


# --- the CLI and the example client, as users run them -------------------------------------


def test_cli_classify_and_detect_print_json(gateway: GatewayProcess, tmp_path: Path) -> None:
    import json

    red, scene = tmp_path / "red.jpg", tmp_path / "scene.png"
    red.write_bytes(images.solid("red"))
    scene.write_bytes(images.encode(images.scene(), "PNG"))
    base = [sys.executable, "-m", "gateway"]
    out = subprocess.run(
        [*base, "classify", str(red), "--model", "colors", "--top-k", "2", "--json",
         "--gateway", gateway.target],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    response = json.loads(out)
    assert [c["label"] for c in response["classifications"]] == ["red", "black"]
    assert response["classifications"][0]["class_id"] == "0"  # int64 in proto3 JSON
    out = subprocess.run(
        [*base, "detect", str(scene), "--model", "shapes", "--gateway", gateway.target],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "red (class 1)  x 40-140  y 30-130" in out
    assert "blue (class 3)  x 200-350  y 150-260" in out
    health = subprocess.run(
        [*base, "health", "--gateway", gateway.target], capture_output=True, text=True
    )
    assert (health.returncode, health.stdout.strip()) == (0, "SERVING")


def test_cli_reports_errors_with_their_status(gateway: GatewayProcess, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "classify", str(bad), "--model", "colors",
         "--gateway", gateway.target],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("tfs-gateway: INVALID_ARGUMENT: the data is not an image")


def test_example_python_client(gateway: GatewayProcess, tmp_path: Path) -> None:
    image = tmp_path / "blue.png"
    image.write_bytes(images.solid("blue", fmt="PNG"))
    out = subprocess.run(
        [sys.executable, "examples/classify_client.py", str(image), "--gateway", gateway.target],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.splitlines()[1].split()[0] == "blue"
