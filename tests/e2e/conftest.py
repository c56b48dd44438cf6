"""Fixtures shared by the end-to-end tests: one gateway (behind a wiretap, in front of the test
server) for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway._proto import classify_pb2_grpc
from tests.conftest import GatewayProcess, ModelServerProcess, start_gateway
from tests.wiretap import Wiretap

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@pytest.fixture(scope="session")
def wiretap(tfserving: ModelServerProcess) -> Iterator[Wiretap]:
    tap = Wiretap(tfserving.target)
    yield tap
    tap.stop()


@pytest.fixture(scope="session")
def gateway(
    models_dir: Path, wiretap: Wiretap, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    config = tmp_path_factory.mktemp("gateway") / "gateway.toml"
    config.write_text(
        f"""
upstream = "{wiretap.target}"
max_message_bytes = {MAX_MESSAGE_BYTES}
max_image_pixels = 4_000_000
status_poll_s = 0.5

[models.colors]
labels = "{models_dir}/colors/labels.txt"
top_k = 3

[models.colors_bytes]
labels = "{models_dir}/colors_bytes/labels.txt"

[models.shapes]
labels = "{models_dir}/shapes/label_map.pbtxt"
min_score = 0.5

[models.shapes.preprocess]
width = 320
height = 320
resize_mode = "letterbox"
resize_filter = "nearest"
"""
    )
    process = start_gateway(config)
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="session")
def stub(gateway: GatewayProcess) -> Iterator[classify_pb2_grpc.ImageGatewayStub]:
    with grpc.insecure_channel(
        gateway.target, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        yield classify_pb2_grpc.ImageGatewayStub(channel)
