"""compose.yaml, run with podman-compose: the gateway service (the image the container test
builds) reaches "tfserving" by its service name and Prometheus scrapes it by its own, with the
shipped config; the override (tests/compose/override.yaml) stands in for the public images
that cannot be pulled here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest

from gateway._proto import classify_pb2, classify_pb2_grpc
from tests import images
from tests.conftest import ROOT, ModelServerProcess, free_port, require_tool
from tests.e2e.test_container import image  # noqa: F401 - the built image, a fixture
from tests.waiting import wait_until

pytestmark = pytest.mark.usefixtures("image")


def test_compose_runs_gateway_and_prometheus_by_service_name(
    models_dir: Path, tfserving: ModelServerProcess, tmp_path: Path
) -> None:
    require_tool("podman")
    names = ("GATEWAY_PORT", "GATEWAY_HTTP_PORT", "GATEWAY_METRICS_PORT", "PROMETHEUS_PORT")
    ports = {name: free_port() for name in names}
    shared = tmp_path / "models"  # readable by the containers' users
    shared.mkdir(mode=0o755)
    for name in ("colors", "shapes"):
        (shared / name).mkdir(mode=0o755)
    (shared / "colors" / "labels.txt").write_text(
        (models_dir / "colors" / "labels.txt").read_text()
    )
    (shared / "shapes" / "label_map.pbtxt").write_text(
        (models_dir / "shapes" / "label_map.pbtxt").read_text()
    )
    (shared / "gateway.container.toml").write_text(
        'status_poll_s = 1\n[models.colors]\nlabels = "/models/colors/labels.txt"\n'
        '[models.shapes]\nlabels = "/models/shapes/label_map.pbtxt"\n'
    )
    for path in shared.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "MODELS_DIR": str(shared),
        "RELAY_TO_PORT": str(tfserving.grpc_port),
        "CONTAINERS_CONF": str(ROOT / "deploy" / "podman" / "containers.conf"),
    }
    project = f"tfsgw{ports['GATEWAY_PORT']}"
    files = [
        "-f",
        str(ROOT / "compose.yaml"),
        "-f",
        str(ROOT / "tests" / "compose" / "override.yaml"),
    ]
    compose = [sys.executable, "-m", "podman_compose", "-p", project, *files]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )

    up = run("up", "-d")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        channel = grpc.insecure_channel(f"localhost:{ports['GATEWAY_PORT']}")
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        request = classify_pb2.ClassifyRequest(
            model={"name": "colors"}, image=images.solid("yellow"), top_k=1
        )
        response = wait_until(
            lambda: stub.Classify(request, timeout=5),
            90,
            0.5,
            lambda: f"gateway never answered\n{run('logs').stdout[-3000:]}",
            ignoring=grpc.RpcError,
        )
        channel.close()
        assert [c.label for c in response.classifications] == ["yellow"]

        query = urllib.parse.urlencode({"query": 'up{job="tfs-gateway"}'})
        url = f"http://localhost:{ports['PROMETHEUS_PORT']}/api/v1/query?{query}"

        def gateway_up() -> list[dict]:
            with urllib.request.urlopen(url, timeout=5) as reply:
                result = json.load(reply)["data"]["result"]
            return result if result and result[0]["value"][1] == "1" else []

        result = wait_until(
            gateway_up,
            90,
            0.5,
            lambda: f"prometheus never scraped tfs-gateway:9100\n{run('logs').stdout[-3000:]}",
            ignoring=OSError,
        )
        assert result[0]["metric"]["instance"] == "tfs-gateway:9100"  # found by service name
    finally:
        down = run("down", "-t", "5")
        assert down.returncode == 0, down.stdout + down.stderr
