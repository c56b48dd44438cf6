"""The HTTP/JSON front against the gRPC API for the same image, in one run.

    .venv/bin/python bench/http_vs_grpc.py [--requests 300]

One gateway, one test server; a 640x480 JPEG classified by ``colors`` over gRPC (reused
channel) and over HTTP (reused keep-alive connection), alternating, one request at a time.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_bench import photo  # noqa: E402
from gateway._proto import classify_pb2, classify_pb2_grpc  # noqa: E402
from tests.conftest import start_gateway, start_test_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-http.md")
    args = parser.parse_args()
    data = photo(640, 480)
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        subprocess.run([sys.executable, "-m", "testserver.demo_models", str(models)],
                       cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        tfserving = start_test_server(models / "models.config")
        config = Path(tmp) / "gateway.toml"
        config.write_text(f'upstream = "{tfserving.target}"\n[models.colors]\n')
        gateway = start_gateway(config)
        try:
            stub = classify_pb2_grpc.ImageGatewayStub(grpc.insecure_channel(gateway.target))
            request = classify_pb2.ClassifyRequest(model={"name": "colors"}, image=data)
            conn = http.client.HTTPConnection("localhost", gateway.http_port, timeout=30)

            def over_grpc() -> None:
                stub.Classify(request, timeout=30)

            def over_http() -> None:
                conn.request("POST", "/v1/models/colors:classify", body=data,
                             headers={"Content-Type": "image/jpeg"})  # fmt: skip
                response = conn.getresponse()
                response.read()
                assert response.status == 200

            times: dict[str, list[float]] = {"gRPC": [], "HTTP": []}
            for _ in range(10):
                over_grpc()
                over_http()
            for _ in range(args.requests):
                for name, call in (("gRPC", over_grpc), ("HTTP", over_http)):
                    start = time.perf_counter()
                    call()
                    times[name].append((time.perf_counter() - start) * 1e3)
        finally:
            gateway.stop()
            tfserving.stop()
    lines = ["# HTTP/JSON front vs gRPC", "",
             f"`bench/http_vs_grpc.py`: {args.requests} alternating requests each, one at a time, "
             "640x480 JPEG, model `colors`, same gateway and test server.", "",
             "| API | p50 ms | p99 ms |", "|---|---|---|"]  # fmt: skip
    p50 = {}
    for name, ms in times.items():
        ms.sort()
        p50[name] = statistics.median(ms)
        lines.append(f"| {name} | {p50[name]:.2f} | {ms[int(len(ms) * 0.99) - 1]:.2f} |")
    lines += ["", f"HTTP p50 - gRPC p50: {p50['HTTP'] - p50['gRPC']:+.2f} ms "
              f"({p50['HTTP'] / p50['gRPC']:.2f}x).", ""]  # fmt: skip
    report = "\n".join(lines)
    print(report)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
