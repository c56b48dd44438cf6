"""Fan-out across TF Serving replicas: round robin over both, a replica killed mid-run costs
the callers nothing (UNAVAILABLE is retried on the other), and it gets traffic again once it
is back."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc

from gateway._proto import classify_pb2, classify_pb2_grpc
from tests import images
from tests.conftest import ModelServerProcess, free_port, start_gateway, start_test_server


def _served(server: ModelServerProcess) -> int:
    return sum(1 for line in list(server.log) if line.startswith("Predict colors"))


def _replica(models_dir: Path, port: int) -> ModelServerProcess:
    return start_test_server(
        models_dir / "models.config", "--port", str(port), "--test_log_requests"
    )


def test_round_robin_failover_and_recovery(tmp_path: Path, models_dir: Path) -> None:
    port_a, port_b = free_port(), free_port()
    a, b = _replica(models_dir, port_a), _replica(models_dir, port_b)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'upstream = "localhost:{port_a},localhost:{port_b}"\nstatus_poll_s = 0.5\n'
        f'[models.colors]\nlabels = "{models_dir}/colors/labels.txt"\n'
    )
    gateway = start_gateway(config)
    channel = grpc.insecure_channel(gateway.target)
    stub = classify_pb2_grpc.ImageGatewayStub(channel)
    request = classify_pb2.ClassifyRequest(model={"name": "colors"}, image=images.solid("green"))

    def classify_many(count: int) -> list[str]:
        return [stub.Classify(request, timeout=10).classifications[0].label for _ in range(count)]

    try:
        assert classify_many(20) == ["green"] * 20
        assert _served(a) >= 5 and _served(b) >= 5  # both replicas take traffic

        a.process.send_signal(signal.SIGKILL)
        a.stop()
        served_b = _served(b)
        assert classify_many(30) == ["green"] * 30  # no caller sees the dead replica
        assert _served(b) - served_b == 30

        a = _replica(models_dir, port_a)  # back on the same port
        deadline = time.monotonic() + 30
        while _served(a) == 0:
            assert time.monotonic() < deadline, "the recovered replica never got traffic again"
            assert classify_many(5) == ["green"] * 5
        assert _served(a) > 0
    finally:
        channel.close()
        gateway.stop()
        a.stop()
        b.stop()
