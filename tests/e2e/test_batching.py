"""Micro-batching: concurrent single-image requests merged into one Predict, results identical
to unbatched ones; never for batch-1 models."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway._proto.tfserving import predict_pb2
from tests import images
from tests.conftest import GatewayProcess, ModelServerProcess, start_gateway
from tests.wiretap import Wiretap

COLOURS = ["red", "green", "blue", "yellow"]


@pytest.fixture(scope="module")
def batched(
    models_dir: Path, tfserving: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, Wiretap]]:
    tap = Wiretap(tfserving.target)
    config = tmp_path_factory.mktemp("batched") / "gateway.toml"
    config.write_text(
        f'upstream = "{tap.target}"\n'
        f'[models.colors]\nlabels = "{models_dir}/colors/labels.txt"\ntop_k = 8\n'
        "batch_max_size = 8\nbatch_max_wait_ms = 50\n"
        f'[models.shapes]\nlabels = "{models_dir}/shapes/label_map.pbtxt"\n'
        "batch_max_size = 8\nbatch_max_wait_ms = 50\n"
    )
    gateway = start_gateway(config)
    yield gateway, tap
    gateway.stop()
    tap.stop()


def _batch_sizes(tap: Wiretap, since: int, model: str) -> list[int]:
    sizes = []
    for call in tap.predict_requests()[since:]:
        request = predict_pb2.PredictRequest.FromString(call.request)
        if request.model_spec.name == model:
            [tensor] = request.inputs.values()
            sizes.append(tensor.tensor_shape.dim[0].size)
    return sizes


def test_concurrent_requests_share_predicts_and_get_their_own_results(batched, stub) -> None:
    gateway, tap = batched
    before = len(tap.predict_requests())
    pictures = [images.solid(COLOURS[i % 4], (64 + i, 48)) for i in range(16)]
    with grpc.insecure_channel(gateway.target) as channel:
        batched_stub = classify_pb2_grpc.ImageGatewayStub(channel)

        def classify(image: bytes) -> classify_pb2.ClassifyResponse:
            request = classify_pb2.ClassifyRequest(model={"name": "colors"}, image=image, top_k=8)
            return batched_stub.Classify(request, timeout=30)

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(classify, pictures))
    sizes = _batch_sizes(tap, before, "colors")
    assert sum(sizes) == 16
    assert max(sizes) > 1 and len(sizes) < 16  # requests really were merged
    assert all(size <= 8 for size in sizes)
    for picture, result in zip(pictures, results, strict=True):
        alone = stub.Classify(
            classify_pb2.ClassifyRequest(model={"name": "colors"}, image=picture, top_k=8)
        )
        assert [(c.label, c.score) for c in result.classifications] == [
            (c.label, pytest.approx(c.score, rel=1e-6)) for c in alone.classifications
        ]
    metrics = (
        urllib.request.urlopen(f"http://localhost:{gateway.metrics_port}/metrics", timeout=10)
        .read()
        .decode()
    )
    count = re.search(r'tfs_gateway_batch_size_count\{model="colors"\} (\d+)', metrics)
    assert count is not None and int(count[1]) == len(sizes)


def test_batch_one_models_are_never_batched(batched) -> None:
    gateway, tap = batched
    before = len(tap.predict_requests())
    scene = images.encode(images.scene(), "PNG")
    with grpc.insecure_channel(gateway.target) as channel:
        batched_stub = classify_pb2_grpc.ImageGatewayStub(channel)
        request = classify_pb2.DetectRequest(model={"name": "shapes"}, image=scene)
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: batched_stub.Detect(request, timeout=30), range(6)))
    assert all([d.label for d in r.detections] == ["red", "blue"] for r in results)
    assert _batch_sizes(tap, before, "shapes") == [1] * 6
