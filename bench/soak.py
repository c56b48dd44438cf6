"""Soak: ordinary callers and hostile ones at once, against a gateway at its default limits.

    .venv/bin/python bench/soak.py [--seconds 600] [--out bench/soak-results.md]

Ordinary traffic (what must keep working): a gRPC Classify loop, an HTTP classify loop and a
stream loop (50 frames a stream, every frame checked to be answered exactly once). Hostile
traffic beside it: garbage bytes and malformed protobuf, decompression bombs (a ~2 KB lossless
WebP of 7000x7000 RGBA), Analyze with 200 tasks, slow HTTP uploads (a byte every 5 s), and
streams that send nothing. Every second the gateway's RSS, peak RSS, threads and file
descriptors are sampled from /proc. The report: ordinary calls and their p50/p99 during the
abuse, what each hostile caller saw (status codes), nothing lost (frames sent = answered,
the gateway's request counters = what ordinary callers saw), and the resource peaks.

Not a CI test (it runs for minutes); its committed results are in bench/soak-results.md.
"""

from __future__ import annotations

import argparse
import collections
import io
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway._proto import classify_pb2, classify_pb2_grpc  # noqa: E402
from tests.conftest import GatewayProcess, start_gateway, start_test_server  # noqa: E402

CLASSIFY = "/tfsgateway.v1.ImageGateway/Classify"


def png(colour: tuple[int, int, int], size: tuple[int, int] = (640, 480)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def webp_bomb() -> bytes:
    """7000x7000 RGBA, lossless: about 2 KB on the wire, 196 MB of pixels once decoded."""
    buffer = io.BytesIO()
    Image.new("RGBA", (7000, 7000), (10, 200, 30, 255)).save(buffer, "WEBP", lossless=True)
    return buffer.getvalue()


class Tally:
    """Outcomes and latencies of one kind of caller, thread-safe."""

    def __init__(self) -> None:
        self.codes: collections.Counter[str] = collections.Counter()
        self.latencies_ms: list[float] = []
        self.lock = threading.Lock()

    def add(self, code: str, seconds: float | None = None) -> None:
        with self.lock:
            self.codes[code] += 1
            if seconds is not None:
                self.latencies_ms.append(seconds * 1e3)

    def timed(self, call: Callable[[], object]) -> None:
        start = time.perf_counter()
        try:
            call()
            self.add("OK", time.perf_counter() - start)
        except grpc.RpcError as error:
            self.add(error.code().name, time.perf_counter() - start)  # type: ignore[attr-defined]
        except urllib.error.HTTPError as error:
            self.add(f"HTTP {error.code}", time.perf_counter() - start)
        except OSError as error:
            self.add(type(error).__name__, time.perf_counter() - start)

    def summary(self) -> str:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(self.codes.items()))
        if not self.latencies_ms:
            return codes
        ms = sorted(self.latencies_ms)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return f"{codes}; p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.0f} ms"


def sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(re.findall(r"^(\w+):\s+(\d+)", status, re.MULTILINE))
    return {
        "rss": int(fields["VmRSS"]) / 1024,
        "hwm": int(fields["VmHWM"]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
    }


def loop(until: float, body: Callable[[], None], pause_s: float = 0.0) -> None:
    while time.monotonic() < until:
        body()
        if pause_s:
            time.sleep(pause_s)


def run(seconds: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        subprocess.run(
            [sys.executable, "-m", "testserver.demo_models", str(models)],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        tfserving = start_test_server(models / "models.config")
        config = Path(tmp) / "gateway.toml"
        config.write_text(
            f'upstream = "{tfserving.target}"\n'
            f'[models.colors]\nlabels = "{models}/colors/labels.txt"\n'
        )
        gateway = start_gateway(config)
        try:
            return soak(gateway, seconds)
        finally:
            gateway.stop()
            tfserving.stop()


def soak(gateway: GatewayProcess, seconds: float) -> str:
    channel = grpc.insecure_channel(
        gateway.target, options=[("grpc.max_send_message_length", 64 << 20)]
    )
    stub = classify_pb2_grpc.ImageGatewayStub(channel)
    model = classify_pb2.ModelRef(name="colors")
    red, bomb = png((255, 0, 0)), webp_bomb()
    until = time.monotonic() + seconds
    tallies = {name: Tally() for name in (
        "gRPC Classify", "HTTP classify", "stream frames", "garbage image", "malformed protobuf",
        "WebP bomb", "Analyze x200", "slow HTTP upload", "silent stream",
    )}  # fmt: skip
    frames = {"sent": 0, "answered": 0, "twice": 0}
    samples: list[dict[str, float]] = []

    def grpc_classify() -> None:
        request = classify_pb2.ClassifyRequest(model=model, image=red)
        tallies["gRPC Classify"].timed(lambda: stub.Classify(request, timeout=30))

    def http_classify() -> None:
        url = f"{gateway.http}/v1/models/colors:classify"
        request = urllib.request.Request(url, data=red, method="POST")
        tallies["HTTP classify"].timed(lambda: urllib.request.urlopen(request, timeout=30).read())

    def one_stream() -> None:
        def messages() -> Iterator[classify_pb2.StreamRequest]:
            yield classify_pb2.StreamRequest(
                options=classify_pb2.StreamOptions(tasks=[classify_pb2.ModelTask(model=model)])
            )
            for frame_id in range(50):
                frames["sent"] += 1
                yield classify_pb2.StreamRequest(
                    frame=classify_pb2.Frame(frame_id=frame_id, image=red)
                )

        seen: collections.Counter[int] = collections.Counter()
        start = time.perf_counter()
        try:
            for response in stub.Stream(messages(), timeout=120):
                kind = response.WhichOneof("message")
                seen[getattr(response, kind).frame_id] += 1
            tallies["stream frames"].add("OK", time.perf_counter() - start)
        except grpc.RpcError as error:
            tallies["stream frames"].add(error.code().name)  # type: ignore[attr-defined]
        frames["answered"] += len(seen)
        frames["twice"] += sum(1 for n in seen.values() if n > 1)

    def garbage() -> None:
        request = classify_pb2.ClassifyRequest(model=model, image=b"\x00not an image" * 100)
        tallies["garbage image"].timed(lambda: stub.Classify(request, timeout=30))
        raw = channel.unary_unary(CLASSIFY, request_serializer=None, response_deserializer=None)
        tallies["malformed protobuf"].timed(lambda: raw(b"\xff\xff\xff\xff\x0f", timeout=30))

    def bombs() -> None:
        request = classify_pb2.ClassifyRequest(model=model, image=bomb)
        tallies["WebP bomb"].timed(lambda: stub.Classify(request, timeout=60))

    def analyze() -> None:
        tasks = [classify_pb2.ModelTask(model=model)] * 200
        request = classify_pb2.AnalyzeRequest(image=red, tasks=tasks)
        tallies["Analyze x200"].timed(lambda: stub.Analyze(request, timeout=60))

    def slow_uploads() -> None:
        """16 connections announcing 1 MB bodies and sending a byte every 5 s."""
        host, port = "127.0.0.1", int(gateway.http.rsplit(":", 1)[1])
        sockets = []
        for _ in range(16):
            sock = socket.create_connection((host, port), timeout=10)
            sock.sendall(
                b"POST /v1/models/colors:classify HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 1000000\r\n\r\n"
            )
            sockets.append(sock)
        while time.monotonic() < until:
            time.sleep(5)
            for sock in list(sockets):
                try:
                    sock.sendall(b"x")
                    tallies["slow HTTP upload"].add("still open")
                except OSError:
                    tallies["slow HTTP upload"].add("closed by the gateway")
                    sockets.remove(sock)
        for sock in sockets:
            sock.close()

    def silent_streams() -> None:
        """50 streams that never send anything, held until the end (or until the gateway ends
        them)."""
        gate = threading.Event()

        def nothing() -> Iterator[classify_pb2.StreamRequest]:
            gate.wait(max(until - time.monotonic(), 0))
            return
            yield  # an empty generator that waits first

        def hold() -> None:
            try:
                for _ in stub.Stream(nothing(), timeout=seconds + 30):
                    pass
                tallies["silent stream"].add("OK")
            except grpc.RpcError as error:
                tallies["silent stream"].add(error.code().name)  # type: ignore[attr-defined]

        holders = [threading.Thread(target=hold, daemon=True) for _ in range(50)]
        for holder in holders:
            holder.start()
        for holder in holders:
            holder.join(timeout=seconds + 60)

    def sampler() -> None:
        while time.monotonic() < until:
            samples.append(sample(gateway.process.pid))
            time.sleep(1)

    workers = [
        lambda: loop(until, grpc_classify), lambda: loop(until, http_classify),
        lambda: loop(until, one_stream), lambda: loop(until, garbage, 0.05),
        lambda: loop(until, bombs, 2.0), lambda: loop(until, analyze, 1.0),
        slow_uploads, silent_streams, sampler,
    ]  # fmt: skip
    threads = [threading.Thread(target=w, daemon=True) for w in workers]
    started = datetime.now(UTC)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    time.sleep(2)
    final = sample(gateway.process.pid)
    metrics = urllib.request.urlopen(f"http://localhost:{gateway.metrics_port}/metrics").read()
    counted = _counted_ok(metrics.decode())
    channel.close()

    peak = max(s["hwm"] for s in [*samples, final])
    lines = [
        "# Soak",
        "",
        f"`bench/soak.py`, {started:%Y-%m-%d %H:%M} UTC, {seconds:g} s, 2 cores, "
        f"Python {platform.python_version()}; gateway at its default limits in front of the "
        "TF-Serving-compatible test server (model `colors`), all on one machine.",
        "",
        "| caller | what it saw |",
        "|---|---|",
        *(f"| {name} | {tally.summary()} |" for name, tally in tallies.items()),
        "",
        f"Stream frames: {frames['sent']} sent, {frames['answered']} answered, "
        f"{frames['twice']} answered twice.",
        f"Gateway counters, OK: Classify {counted.get('Classify', 0):.0f} (callers saw "
        f"{tallies['gRPC Classify'].codes['OK']}), http.Classify "
        f"{counted.get('http.Classify', 0):.0f} (callers saw "
        f"{tallies['HTTP classify'].codes['OK']}).",
        "",
        f"Gateway RSS: peak {peak:.0f} MiB, final {final['rss']:.0f} MiB; threads: peak "
        f"{max(s['threads'] for s in samples):.0f}, final {final['threads']:.0f}; file "
        f"descriptors: peak {max(s['fds'] for s in samples):.0f}, final {final['fds']:.0f}.",
        "",
    ]
    return "\n".join(lines)


def _counted_ok(metrics: str) -> dict[str, float]:
    counted = {}
    for method, value in re.findall(
        r'tfs_gateway_requests_total\{code="OK",method="([^"]+)",model="colors"\} ([0-9.e+]+)',
        metrics,
    ):
        counted[method] = float(value)
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "soak-results.md")
    args = parser.parse_args()
    report = run(args.seconds)
    print(report)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
