"""The gateway against the alternatives, side by side in one run, on the same test server:

  (a) floor   a direct client that preprocesses itself the way the gateway does (scaled JPEG
              decode, tensor_content) and calls Predict over one reused channel;
  (b) gateway tfs-gateway's Classify with the image bytes;
  (c) naive   what tutorials teach: tensorflow-serving-api's stub, PIL open → convert → resize,
              tf.make_tensor_proto, one reused channel.

    .venv/bin/python bench/gateway_bench.py [--seconds 5] [--out bench/results.md]

Each client runs closed-loop at concurrency 1 and 8 (DECISIONS.md 13) on a 1920x1080 and a
640x480 JPEG, against the ``colors`` model (float32 224x224). Prints throughput, p50 and p99,
the ratios (b)/(a) and (b)/(c), and the gateway's RSS and import time; writes a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway._proto import classify_pb2, classify_pb2_grpc  # noqa: E402
from gateway._proto.tfserving import predict_pb2  # noqa: E402
from gateway.tfserving.client import PREDICT  # noqa: E402
from gateway.tfserving.tensors import make_tensor_proto  # noqa: E402
from tests.conftest import start_gateway, start_test_server  # noqa: E402

SIZE = 224


def photo(width: int, height: int) -> bytes:
    """A smooth, photo-like JPEG (noise blown up), so JPEG work is realistic."""
    rng = np.random.default_rng(width)
    small = Image.fromarray(rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    small.resize((width, height), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def floor_client(target: str) -> Callable[[bytes], None]:
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
    predict = channel.unary_unary(
        PREDICT,
        request_serializer=predict_pb2.PredictRequest.SerializeToString,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )

    def call(data: bytes) -> None:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (SIZE, SIZE))
        image = image.convert("RGB") if image.mode != "RGB" else image
        pixels = np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)
        pixels *= 1 / 255
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "colors"
        request.inputs["images"].CopyFrom(make_tensor_proto(pixels[None]))
        predict(request, timeout=30)

    return call


def gateway_client(target: str) -> Callable[[bytes], None]:
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = classify_pb2_grpc.ImageGatewayStub(channel)

    def call(data: bytes) -> None:
        stub.Classify(
            classify_pb2.ClassifyRequest(model=classify_pb2.ModelRef(name="colors"), image=data),
            timeout=30,
        )

    return call


def naive_client(target: str) -> Callable[[bytes], None]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2 as tf_predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def call(data: bytes) -> None:
        image = Image.open(io.BytesIO(data)).convert("RGB").resize((SIZE, SIZE))
        pixels = np.asarray(image, np.float32) / 255.0
        request = tf_predict_pb2.PredictRequest()
        request.model_spec.name = "colors"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(pixels[None]))
        stub.Predict(request, timeout=30)

    return call


def run(call: Callable[[bytes], None], data: bytes, concurrency: int, seconds: float) -> dict:
    for _ in range(3):
        call(data)  # warm up
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        mine = []
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            call(data)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = sorted(x * 1e3 for x in latencies)
    return {
        "rps": len(ms) / elapsed,
        "p50": statistics.median(ms),
        "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "n": len(ms),
    }


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def import_seconds() -> float:
    probe = (
        "import time; t = time.perf_counter(); import gateway.server; "
        "print(time.perf_counter() - t)"
    )
    runs = [
        float(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout)
        for _ in range(5)
    ]  # fmt: skip
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per client and setting")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        subprocess.run(
            [sys.executable, "-m", "testserver.demo_models", str(models)],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        tfserving = start_test_server(models / "models.config")
        config = Path(tmp) / "gateway.toml"
        config.write_text(f'upstream = "{tfserving.target}"\n[models.colors]\n')
        gateway = start_gateway(config)
        try:
            time.sleep(1)
            rss_idle_start = rss_mib(gateway.process.pid)
            clients = {
                "floor": floor_client(tfserving.target),
                "gateway": gateway_client(gateway.target),
                "naive": naive_client(tfserving.target),
            }
            gateway_client(gateway.target)(photo(640, 480))
            rss_warm = rss_mib(gateway.process.pid)
            rows = []
            for width, height in ((1920, 1080), (640, 480)):
                data = photo(width, height)
                for concurrency in (1, 8):
                    result = {
                        name: run(c, data, concurrency, args.seconds) for name, c in clients.items()
                    }
                    rows.append((f"{width}x{height}", concurrency, result))
                    print(_row(rows[-1]), flush=True)
            rss_peak = rss_mib(gateway.process.pid, "VmHWM")
        finally:
            gateway.stop()
            tfserving.stop()
    imported = import_seconds()
    report = _report(rows, rss_idle_start, rss_warm, rss_peak, imported, args.seconds)
    print(report)
    args.out.write_text(report)


def _row(row: tuple) -> str:
    size, c, r = row
    a, b, n = r["floor"], r["gateway"], r["naive"]
    return (
        f"| {size} | {c} | {a['rps']:.1f} | {b['rps']:.1f} | {n['rps']:.1f} "
        f"| {a['p50']:.2f} / {a['p99']:.2f} | {b['p50']:.2f} / {b['p99']:.2f} "
        f"| {n['p50']:.2f} / {n['p99']:.2f} | {b['rps'] / a['rps']:.2f} "
        f"| {b['p50'] - a['p50']:+.2f} | {b['rps'] / n['rps']:.2f} |"
    )


def _report(
    rows: list, rss_start: float, rss_warm: float, rss_peak: float, imported: float, seconds: float
) -> str:
    lines = [
        "# Gateway benchmark",
        "",
        f"`bench/gateway_bench.py`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {seconds:g} s per client and setting, closed loop. "
        "Model `colors` (float32 224x224x3) on the TF-Serving-compatible test server; clients, "
        "gateway and server share the machine.",
        "",
        "(a) floor: direct Predict, client preprocesses with scaled decode and tensor_content. "
        "(b) gateway: Classify with the JPEG bytes. (c) naive: tensorflow-serving-api, "
        "PIL open/convert/resize, tf.make_tensor_proto.",
        "",
        "| image | c | (a) req/s | (b) req/s | (c) req/s | (a) p50/p99 ms | (b) p50/p99 ms "
        "| (c) p50/p99 ms | (b)/(a) | (b)-(a) p50 ms | (b)/(c) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(row) for row in rows),
        "",
        f"Gateway RSS: {rss_start:.0f} MiB after start, {rss_warm:.0f} MiB after warm-up (idle), "
        f"peak {rss_peak:.0f} MiB under load. `import gateway.server`: {imported:.2f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
