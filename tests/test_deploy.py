"""The Kubernetes manifests: valid against Kubernetes' own schemas (offline, strict), wired
together (probes, the headless Service the gateway balances over, the drain budget), and the
ConfigMap's gateway config loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _docs() -> dict[tuple[str, str], dict]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for path in MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
    }


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schemas(manifest: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.30.0", str(manifest)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout + result.stderr


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFESTS]


def test_gateway_probes_drain_and_upstream_fit_together() -> None:
    docs = _docs()
    pod = docs[("Deployment", "tfs-gateway")]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["grpc"] == {"port": 9000, "service": ""}
    assert container["livenessProbe"]["grpc"] == {"port": 9000, "service": "liveness"}
    env = {e["name"]: e["value"] for e in container["env"]}
    headless = docs[("Service", "tfserving-headless")]
    assert headless["spec"]["clusterIP"] == "None"
    assert env["TFS_GATEWAY_UPSTREAM"] == "dns:///tfserving-headless:8500"
    config = yaml.safe_load((K8S / "config.yaml").read_text())["data"]["gateway.toml"]
    settings = dict(
        line.split(" = ") for line in config.splitlines() if line.startswith("shutdown_")
    )
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = pre_stop + float(settings["shutdown_delay_s"]) + float(settings["shutdown_grace_s"])
    assert drain < pod["terminationGracePeriodSeconds"]
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    annotations = docs[("Deployment", "tfs-gateway")]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9100"


def test_configmap_gateway_config_loads(tmp_path: Path) -> None:
    data = yaml.safe_load((K8S / "config.yaml").read_text())["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text.replace("/etc/tfs-gateway", str(tmp_path)))
    config = load_config(tmp_path / "gateway.toml", env={})
    assert [m.name for m in config.models] == ["colors", "shapes"]


def test_kubernetes_serves_all_interfaces_explicitly_without_reflection() -> None:
    pod = _docs()[("Deployment", "tfs-gateway")]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    config = load_config(env={k: v for k, v in env.items() if k.startswith("TFS_GATEWAY_")})
    assert (config.host, config.reflection) == ("[::]", False)


def test_the_container_image_and_compose_serve_all_interfaces_explicitly() -> None:
    assert 'TFS_GATEWAY_HOST="[::]"' in (ROOT / "Dockerfile").read_text()
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert compose["services"]["tfs-gateway"]["environment"]["TFS_GATEWAY_HOST"] == "[::]"


def test_compose_keeps_tf_serving_on_its_internal_network() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert "ports" not in compose["services"]["tfserving"]  # only the gateway reaches it
