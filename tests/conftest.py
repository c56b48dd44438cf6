"""Shared fixtures: the demo models built once per session, and TF-Serving-compatible test
servers started as real processes on free ports (always stopped)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


@dataclass
class ModelServerProcess:
    process: subprocess.Popen[str]
    grpc_port: int
    rest_port: int | None
    log: list[str]
    drain: threading.Thread

    @property
    def target(self) -> str:
        return f"localhost:{self.grpc_port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.drain.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def start_test_server(config: Path | None, *flags: str, rest: bool = False) -> ModelServerProcess:
    """Start ``python -m testserver`` on port 0 (unless flags say otherwise) and wait for its
    start-up lines. Without ``config``, flags name the model (--model_name ...)."""
    args = [sys.executable, "-m", "testserver", "--port", "0"]
    if config is not None:
        args += ["--model_config_file", str(config)]
    if rest:
        args += ["--rest_api_port", str(free_port())]
    process = subprocess.Popen(
        [*args, *flags],
        cwd=ROOT,
        env={**os.environ, **_QUIET_TF},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log: list[str] = []
    grpc_port = rest_port = None
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line)
        if match := re.match(r"Running gRPC ModelServer at [^:]+:(\d+)", line):
            grpc_port = int(match[1])
        if match := re.match(r"Exporting HTTP/REST API at:[^:]+:(\d+)", line):
            rest_port = int(match[1])
        if grpc_port and (rest_port or not rest):
            break
    if grpc_port is None:
        process.wait(timeout=10)
        process.stdout.close()
        raise RuntimeError("test server did not start:\n" + "".join(log[-30:]))
    # Keep draining its output so a chatty server never blocks on a full pipe.
    drain = threading.Thread(target=lambda: log.extend(process.stdout), daemon=True)
    drain.start()
    return ModelServerProcess(process, grpc_port, rest_port, log, drain)


@dataclass
class GatewayProcess:
    process: subprocess.Popen[str]
    port: int
    metrics_port: int
    http_port: int | None
    log: list[str]
    drain: threading.Thread

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    @property
    def http(self) -> str:
        return f"http://localhost:{self.http_port}"

    def stop(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.drain.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


def start_gateway(config: Path, *flags: str) -> GatewayProcess:
    """Start ``python -m gateway serve`` on free ports and wait for its serving line."""
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gateway", "serve", "--config", str(config),
            "--port", "0", "--metrics-port", "0", "--http-port", "0", *flags,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    log: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line)
        pattern = (
            r"tfs-gateway serving on .*:(\d+), metrics on \S*:(\d+), .*?(?:localhost:(\d+)/)?,"
        )
        if match := re.match(pattern, line):
            drain = threading.Thread(target=lambda: log.extend(process.stdout), daemon=True)
            drain.start()
            http_port = int(match[3]) if match[3] else None
            return GatewayProcess(process, int(match[1]), int(match[2]), http_port, log, drain)
    process.wait(timeout=10)
    process.stdout.close()
    raise RuntimeError("gateway did not start:\n" + "".join(log[-30:]))


def gateway_metric(metrics_port: int, name: str) -> float:
    """The value of an unlabelled metric (e.g. ``tfs_gateway_in_flight_requests``) on a
    gateway's /metrics endpoint, as a scrape sees it now."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    raise AssertionError(f"{name} is not exported on {url}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models, built by the same script the README's main command uses."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run(
        [sys.executable, "-m", "testserver.demo_models", str(out)],
        cwd=ROOT,
        env={**os.environ, **_QUIET_TF},
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="session")
def tfserving(models_dir: Path) -> Iterator[ModelServerProcess]:
    """A test server answering in TF Serving's default encoding (typed *_val fields)."""
    server = start_test_server(models_dir / "models.config", rest=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tfserving_tensor_content(models_dir: Path) -> Iterator[ModelServerProcess]:
    """A test server run with --enable_serialization_as_tensor_content."""
    server = start_test_server(
        models_dir / "models.config", "--enable_serialization_as_tensor_content=true"
    )
    yield server
    server.stop()


def require_tool(name: str) -> str:
    """The path of a command-line tool; under CI=true its absence fails the test, else skips."""
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (scripts/test.sh installs it under CI=true)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
