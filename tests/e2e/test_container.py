"""The container image, built and run for real with podman: on a base image made with
debootstrap (no image registry is reachable here), against the test server on the host.
Build time and image size are written to var/artifacts/container.txt."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway._proto import classify_pb2, classify_pb2_grpc
from tests import images
from tests.conftest import (
    ROOT,
    ModelServerProcess,
    free_port,
    gateway_metric,
    require_tool,
    start_test_server,
)
from tests.waiting import wait_until

BASE = "localhost/tfs-base:bookworm"
IMAGE = "localhost/tfs-gateway:test"
MIRROR = "http://deb.debian.org/debian"
SLOW_MS = 1500


def podman(
    *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "podman" / "containers.conf")}
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_tool("podman")
    if podman("image", "exists", BASE, check=False).returncode != 0:
        debootstrap = require_tool("debootstrap")
        root = tmp_path_factory.mktemp("base") / "rootfs"
        subprocess.run(
            [debootstrap, "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(root), MIRROR],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "podman" / "containers.conf")}
        with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
            subprocess.run(["podman", "import", "-", BASE], stdin=tar.stdout, check=True,
                           capture_output=True, env=env)  # fmt: skip
        assert tar.returncode == 0
        shutil.rmtree(root, ignore_errors=True)
    started = time.monotonic()
    podman(
        "build", "--format", "docker", "--network", "host",
        "-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
        "--build-arg", f"BASE={BASE}", "-t", IMAGE, str(ROOT),
    )  # fmt: skip
    build_s = time.monotonic() - started
    size = podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout.strip()
    artifacts = ROOT / "var" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "container.txt").write_text(
        f"build {build_s:.1f} s, image {int(size) / 1e6:.0f} MB\n"
    )
    return IMAGE


@pytest.fixture(scope="module")
def slow_tfserving(models_dir: Path) -> Iterator[ModelServerProcess]:
    server = start_test_server(models_dir / "models.config", "--test_latency_ms", str(SLOW_MS))
    yield server
    server.stop()


def test_image_is_slim_non_root_and_declares_its_ports_and_health_check(image: str) -> None:
    [inspected] = json.loads(podman("image", "inspect", image).stdout)
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert set(config["ExposedPorts"]) == {"9000/tcp", "8080/tcp", "9100/tcp"}
    assert inspected["Healthcheck"]["Test"] == ["CMD", "tfs-gateway", "health"]
    probe = (
        "import importlib.util, shutil; "
        "print(importlib.util.find_spec('tensorflow'), importlib.util.find_spec('pytest'), "
        "shutil.which('gcc'), shutil.which('cc'))"
    )
    out = podman("run", "--rm", "--entrypoint", "python3", image, "-c", probe).stdout.strip()
    assert out == "None None None None"


def test_container_classifies_reports_healthy_and_drains_on_stop(
    image: str, models_dir: Path, slow_tfserving: ModelServerProcess, tmp_path: Path
) -> None:
    mounted = tmp_path / "mounted"  # readable by the image's non-root user
    mounted.mkdir(mode=0o755)
    shutil.copy(models_dir / "colors" / "labels.txt", mounted / "labels.txt")
    config = mounted / "gateway.toml"
    config.write_text('shutdown_grace_s = 8\n[models.colors]\nlabels = "/config/labels.txt"\n')
    for path in (mounted, mounted / "labels.txt", config):
        path.chmod(0o755 if path.is_dir() else 0o644)
    port, http_port, metrics_port = free_port(), free_port(), free_port()
    name = f"tfs-gateway-test-{port}"
    podman(
        "run", "-d", "--name", name, "--network", "host",
        "-e", f"TFS_GATEWAY_UPSTREAM={slow_tfserving.target}", "-e", f"TFS_GATEWAY_PORT={port}",
        "-e", f"TFS_GATEWAY_HTTP_PORT={http_port}",
        "-e", f"TFS_GATEWAY_METRICS_PORT={metrics_port}",
        "-v", f"{config}:/etc/tfs-gateway/gateway.toml:ro", "-v", f"{mounted}:/config:ro", image,
    )  # fmt: skip
    try:
        wait_until(
            lambda: "tfs-gateway serving on" in podman("logs", name).stdout,
            60,
            0.3,
            lambda: podman("logs", name, check=False).stderr,
        )
        channel = grpc.insecure_channel(f"localhost:{port}")
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        request = classify_pb2.ClassifyRequest(
            model={"name": "colors"}, image=images.solid("blue"), top_k=1
        )
        assert [c.label for c in stub.Classify(request, timeout=30).classifications] == ["blue"]

        assert podman("healthcheck", "run", name, check=False).returncode == 0
        health = podman("inspect", name, "--format", "{{.State.Health.Status}}").stdout.strip()
        assert health == "healthy"

        in_flight: dict[str, object] = {}
        caller = threading.Thread(
            target=lambda: in_flight.update(r=stub.Classify(request, timeout=30))
        )
        caller.start()
        wait_until(  # the call now waits on the slow model
            lambda: gateway_metric(metrics_port, "tfs_gateway_in_flight_requests") == 1,
            10,
            message="the call never reached the gateway in the container",
        )
        started = time.monotonic()
        podman("stop", "-t", "20", name)
        stop_s = time.monotonic() - started
        caller.join()
        channel.close()
        assert [c.label for c in in_flight["r"].classifications] == ["blue"]  # answered, not cut
        assert stop_s < 10  # drained and exited on SIGTERM, not killed after the timeout
        exit_code = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        assert exit_code == "0"
    finally:
        podman("rm", "-f", name, check=False)
