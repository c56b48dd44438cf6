"""The REST fallback: a gateway that reaches TF Serving only through its REST port returns what
the gRPC-connected gateway returns, for every demo model, and maps REST errors to statuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway._proto import classify_pb2, classify_pb2_grpc
from tests import images
from tests.conftest import GatewayProcess, ModelServerProcess, free_port, start_gateway


@pytest.fixture(scope="module")
def rest_stub(
    models_dir: Path, tfserving: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[classify_pb2_grpc.ImageGatewayStub]:
    config = tmp_path_factory.mktemp("rest") / "gateway.toml"
    config.write_text(
        f'upstream = "http://localhost:{tfserving.rest_port}"\n'
        f'[models.colors]\nlabels = "{models_dir}/colors/labels.txt"\ntop_k = 8\n'
        f'[models.colors_bytes]\nlabels = "{models_dir}/colors_bytes/labels.txt"\n'
        f'[models.shapes]\nlabels = "{models_dir}/shapes/label_map.pbtxt"\nmin_score = 0.5\n'
        "[models.shapes.preprocess]\nwidth = 320\nheight = 320\n"
        'resize_mode = "letterbox"\nresize_filter = "nearest"\n'
    )
    gateway: GatewayProcess = start_gateway(config)
    with grpc.insecure_channel(gateway.target) as channel:
        yield classify_pb2_grpc.ImageGatewayStub(channel)
    gateway.stop()


def _classify(stub, model: str, image: bytes, **ref) -> classify_pb2.ClassifyResponse:
    request = classify_pb2.ClassifyRequest(
        model=classify_pb2.ModelRef(name=model, **ref), image=image, top_k=8
    )
    return stub.Classify(request, timeout=30)


@pytest.mark.parametrize("model", ["colors", "colors_bytes"])
@pytest.mark.parametrize("colour", ["red", "blue", "yellow"])
def test_rest_and_grpc_upstreams_give_the_same_classifications(
    rest_stub, stub, model, colour
) -> None:
    image = images.solid(colour)
    over_rest, over_grpc = _classify(rest_stub, model, image), _classify(stub, model, image)
    assert [c.label for c in over_rest.classifications] == [
        c.label for c in over_grpc.classifications
    ]
    assert over_rest.classifications[0].label == colour
    for a, b in zip(over_rest.classifications, over_grpc.classifications, strict=True):
        assert a.score == pytest.approx(b.score, rel=1e-6, abs=1e-9)
    assert over_rest.model.version == over_grpc.model.version


def test_rest_and_grpc_upstreams_give_the_same_detections(rest_stub, stub) -> None:
    scene = images.encode(images.scene(), "PNG")
    request = classify_pb2.DetectRequest(model={"name": "shapes"}, image=scene)
    over_rest, over_grpc = rest_stub.Detect(request, timeout=30), stub.Detect(request, timeout=30)
    assert over_rest.detections == over_grpc.detections
    assert [d.label for d in over_rest.detections] == ["red", "blue"]


def test_version_and_label_over_rest(rest_stub) -> None:
    image = images.framed("red", "blue")
    assert _classify(rest_stub, "colors", image, version=1).classifications[0].label == "red"
    v2 = _classify(rest_stub, "colors", image, version_label="canary")
    assert v2.classifications[0].label == "blue"


@pytest.mark.parametrize(
    ("ref", "code", "message"),
    [
        ({"version": 9}, grpc.StatusCode.NOT_FOUND,
         "upstream: Servable not found for request: Specific(colors, 9)"),
        ({"version_label": "beta"}, grpc.StatusCode.NOT_FOUND,
         "upstream: Unrecognized servable version label: beta"),
    ],
)  # fmt: skip
def test_rest_errors_map_to_the_same_statuses(rest_stub, ref, code, message) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _classify(rest_stub, "colors", images.solid("red"), **ref)
    assert (caught.value.code(), caught.value.details()) == (code, message)


def test_unreachable_rest_upstream_is_unavailable(tmp_path: Path, models_dir: Path) -> None:
    config = tmp_path / "gateway.toml"
    port = free_port()
    config.write_text(f'upstream = "http://localhost:{port}"\n[models.colors]\n')
    gateway = start_gateway(config)
    try:
        with (
            grpc.insecure_channel(gateway.target) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            _classify(classify_pb2_grpc.ImageGatewayStub(channel), "colors", images.solid("red"))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == (
            "model 'colors' is not ready: upstream: cannot connect to TF Serving"
        )  # where TF Serving lives is not the caller's business (the log has it)
        assert any(str(port) in line for line in gateway.log)
    finally:
        gateway.stop()
