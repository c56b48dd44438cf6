"""Memory abuse against a real gateway process at its DEFAULT limits (issue 15, items 6-7):
decompression bombs that are tiny on the wire — lossless WebPs of flat RGBA, ~2-30 KB each —
sent six at a time beside ordinary Classifies. The ordinary calls all succeed, quickly; every
bomb is refused from its header or shed; the gateway's peak RSS stays under 1 GiB."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from PIL import Image

from gateway._proto import classify_pb2, classify_pb2_grpc
from tests import images
from tests.conftest import GatewayProcess, ModelServerProcess, start_gateway

GIB = 1024**3
PEAK_RSS_BOUND = GIB  # DECISIONS 24
ORDINARY_WITHIN_S = 5.0  # each ordinary Classify, while the bombs are in flight
BOMBS_AT_ONCE = 6


def webp_bomb(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (size, size), (10, 20, 30, 40)).save(buffer, "WEBP", lossless=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def gateway(
    models_dir: Path, tfserving: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """Every limit at its default: only the upstream and one model are configured."""
    config = tmp_path_factory.mktemp("gateway") / "gateway.toml"
    config.write_text(
        f'upstream = "{tfserving.target}"\n\n'
        f'[models.colors]\nlabels = "{models_dir}/colors/labels.txt"\n'
    )
    process = start_gateway(config)
    yield process
    assert process.stop() == 0


def peak_rss(process: GatewayProcess) -> int:
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024


def test_webp_bombs_neither_starve_ordinary_calls_nor_take_a_gib(gateway) -> None:
    over_pixels = webp_bomb(7000)  # 49 Mpx: 1.1 GiB to decode, over the pixel limit
    over_memory = webp_bomb(3000)  # 9 Mpx: 206 MiB to decode, over the per-image share
    largest = webp_bomb(2800)  # 7.8 Mpx: 180 MiB, admitted one at a time
    assert len(over_pixels) < 4000
    ordinary = images.solid("red")
    began = time.monotonic()

    with grpc.insecure_channel(gateway.target) as channel:
        stub = classify_pb2_grpc.ImageGatewayStub(channel)

        def classify(image: bytes) -> tuple[grpc.StatusCode, float]:
            request = classify_pb2.ClassifyRequest(model={"name": "colors"}, image=image)
            start = time.monotonic()
            try:
                stub.Classify(request, timeout=30)
            except grpc.RpcError as error:
                return error.code(), time.monotonic() - start
            return grpc.StatusCode.OK, time.monotonic() - start

        with ThreadPoolExecutor(3 * BOMBS_AT_ONCE + 4) as pool:
            bombs = [
                pool.submit(classify, bomb)
                for bomb in (over_pixels, over_memory, largest)
                for _ in range(BOMBS_AT_ONCE)
            ]
            calls = [pool.submit(classify, ordinary) for _ in range(20)]
            answers = [call.result() for call in calls]
            bombed = [bomb.result()[0] for bomb in bombs]

    assert [code for code, _ in answers] == [grpc.StatusCode.OK] * 20
    assert max(took for _, took in answers) < ORDINARY_WITHIN_S
    invalid, exhausted = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
    assert bombed[: 2 * BOMBS_AT_ONCE] == [invalid] * (2 * BOMBS_AT_ONCE)
    assert set(bombed[2 * BOMBS_AT_ONCE :]) <= {grpc.StatusCode.OK, exhausted}
    assert grpc.StatusCode.OK in bombed  # the largest admitted image is served, in turn
    assert peak_rss(gateway) < PEAK_RSS_BOUND
    assert time.monotonic() - began < 30
