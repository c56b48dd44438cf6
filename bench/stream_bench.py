"""Streams, micro-batching and the REST fallback, each measured side by side in one run.

    .venv/bin/python bench/stream_bench.py [--seconds 5] [--out bench/results-streaming.md]

1. Stream frames/s through the gateway (window W) against the upstream's own capacity: a
   direct client that decodes the same frames itself and keeps W Predicts in flight
   (DECISIONS.md 15). 640x480 JPEG frames, model ``colors``.
2. Micro-batched against unbatched gateway throughput, small frames, batches of up to 16:
   (a) 16 callers against the plain test server (the 2 shared cores are the limit);
   (b) 64 callers against a test server whose every call takes 50 ms more (an upstream whose
   per-call cost dominates, as a busy accelerator's does), where batching is meant to pay.
3. The REST upstream against the gRPC one: one caller, ``colors`` (a float tensor, sent as
   JSON numbers over REST) and ``colors_bytes`` (the encoded image, base64 over REST).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_bench import floor_client, photo, run  # noqa: E402
from gateway._proto import classify_pb2, classify_pb2_grpc  # noqa: E402
from tests.conftest import start_gateway, start_test_server  # noqa: E402

WINDOW = 4


def closed_loop(call: Callable[[], None], threads: int, seconds: float) -> tuple[float, float]:
    """(requests/s, p50 ms) of ``threads`` callers calling in a loop."""
    result = run(lambda _: call(), b"", threads, seconds)
    return result["rps"], result["p50"]


def stream_fps(target: str, frames: list[bytes], window: int) -> float:
    stub = classify_pb2_grpc.ImageGatewayStub(grpc.insecure_channel(target))

    def requests() -> Iterator[classify_pb2.StreamRequest]:
        task = classify_pb2.ModelTask(model=classify_pb2.ModelRef(name="colors"), top_k=1)
        yield classify_pb2.StreamRequest(
            options=classify_pb2.StreamOptions(tasks=[task], window=window)
        )
        for i, image in enumerate(frames):
            yield classify_pb2.StreamRequest(frame=classify_pb2.Frame(frame_id=i, image=image))

    began = time.perf_counter()
    count = sum(1 for r in stub.Stream(requests(), timeout=600) if r.HasField("result"))
    assert count == len(frames)
    return count / (time.perf_counter() - began)


def classify_call(target: str, model: str, image: bytes) -> Callable[[], None]:
    stub = classify_pb2_grpc.ImageGatewayStub(grpc.insecure_channel(target))
    request = classify_pb2.ClassifyRequest(model=classify_pb2.ModelRef(name=model), image=image)
    return lambda: stub.Classify(request, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-streaming.md")
    args = parser.parse_args()
    lines = [
        "# Streams, micro-batching, REST upstream",
        "",
        f"`bench/stream_bench.py`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{args.seconds:g} s per measurement; clients, gateways and the test server share the machine.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        subprocess.run([sys.executable, "-m", "testserver.demo_models", str(models)],
                       cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        tfserving = start_test_server(models / "models.config", rest=True)
        slow = start_test_server(models / "models.config", "--test_latency_ms", "50")
        slow_plain = Path(tmp) / "slow-plain.toml"
        slow_plain.write_text(f'upstream = "{slow.target}"\nmax_in_flight = 256\n[models.colors]\n')
        slow_batched = Path(tmp) / "slow-batched.toml"
        slow_batched.write_text(
            f'upstream = "{slow.target}"\nmax_in_flight = 256\n[models.colors]\n'
            "batch_max_size = 16\nbatch_max_wait_ms = 5\n"
        )
        plain = Path(tmp) / "plain.toml"
        plain.write_text(
            f'upstream = "{tfserving.target}"\n[models.colors]\n[models.colors_bytes]\n'
        )
        batched = Path(tmp) / "batched.toml"
        batched.write_text(
            f'upstream = "{tfserving.target}"\n[models.colors]\nbatch_max_size = 16\nbatch_max_wait_ms = 2\n'
        )
        rest = Path(tmp) / "rest.toml"
        rest.write_text(
            f'upstream = "http://localhost:{tfserving.rest_port}"\n[models.colors]\n[models.colors_bytes]\n'
        )
        configs = {
            "plain": plain, "batched": batched, "rest": rest,
            "slow-plain": slow_plain, "slow-batched": slow_batched,
        }  # fmt: skip
        gateways = {name: start_gateway(path) for name, path in configs.items()}
        try:
            # 1. streams
            frames = [photo(640, 480)] * 200
            floor = floor_client(tfserving.target)
            direct_fps, _ = closed_loop(lambda: floor(frames[0]), WINDOW, args.seconds)
            gateway_fps = stream_fps(gateways["plain"].target, frames, WINDOW)
            lines += [
                "## 1. Stream throughput (640x480 JPEG frames, window 4)", "",
                "| path | frames/s |", "|---|---|",
                f"| direct client, 4 Predicts in flight (upstream capacity) | {direct_fps:.1f} |",
                f"| gateway stream, window 4 | {gateway_fps:.1f} |", "",
                f"Ratio gateway / direct: **{gateway_fps / direct_fps:.2f}** (target 0.9).", "",
            ]  # fmt: skip
            print("\n".join(lines), flush=True)
            # 2. micro-batching
            small = photo(224, 224)
            unbatched_rps, unbatched_p50 = closed_loop(
                classify_call(gateways["plain"].target, "colors", small), 16, args.seconds
            )
            batched_rps, batched_p50 = closed_loop(
                classify_call(gateways["batched"].target, "colors", small), 16, args.seconds
            )
            slow_unbatched_rps, slow_unbatched_p50 = closed_loop(
                classify_call(gateways["slow-plain"].target, "colors", small), 64, args.seconds
            )
            slow_batched_rps, slow_batched_p50 = closed_loop(
                classify_call(gateways["slow-batched"].target, "colors", small), 64, args.seconds
            )
            lines += [
                "## 2. Micro-batching (224x224 JPEG, model colors, batches up to 16)", "",
                "| upstream | callers | unbatched req/s (p50 ms) | batched req/s (p50 ms) | batched / unbatched |",
                "|---|---|---|---|---|",
                f"| test server | 16 | {unbatched_rps:.1f} ({unbatched_p50:.1f}) | {batched_rps:.1f} ({batched_p50:.1f}) "
                f"| **{batched_rps / unbatched_rps:.2f}** |",
                f"| test server, +50 ms per call | 64 | {slow_unbatched_rps:.1f} ({slow_unbatched_p50:.1f}) "
                f"| {slow_batched_rps:.1f} ({slow_batched_p50:.1f}) | **{slow_batched_rps / slow_unbatched_rps:.2f}** |",
                "",
                "Target 2x. On the plain test server the model call is cheap and the shared cores are the "
                "limit, so batching has little to save; where the call itself dominates, it pays.", "",
            ]  # fmt: skip
            print("\n".join(lines[-10:]), flush=True)
            # 3. REST vs gRPC upstream
            image = photo(640, 480)
            rows = []
            for model in ("colors", "colors_bytes"):
                _, grpc_p50 = closed_loop(
                    classify_call(gateways["plain"].target, model, image), 1, args.seconds
                )
                _, rest_p50 = closed_loop(
                    classify_call(gateways["rest"].target, model, image), 1, args.seconds
                )
                rows.append(
                    f"| {model} | {grpc_p50:.2f} | {rest_p50:.2f} | {rest_p50 / grpc_p50:.2f} |"
                )
            lines += [
                "## 3. Upstream over REST vs gRPC (one caller, 640x480 JPEG)", "",
                "| model | gRPC upstream p50 ms | REST upstream p50 ms | REST / gRPC |", "|---|---|---|---|",
                *rows, "",
                "`colors` sends a 224x224x3 float tensor: 602 KB raw over gRPC, ~1.7 MB of JSON "
                "numbers over REST. `colors_bytes` sends the JPEG (base64 over REST).", "",
            ]  # fmt: skip
        finally:
            for gateway in gateways.values():
                gateway.stop()
            tfserving.stop()
            slow.stop()
    report = "\n".join(lines)
    print(report)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
