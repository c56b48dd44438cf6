"""Clients in other languages, built from plain protoc output (Go) or loading the .proto at run
time (Node.js, as Debian's protoc has no JavaScript generator), run as separate processes
against the real gateway and test server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import images
from tests.conftest import ROOT, GatewayProcess, require_tool

NODE = ROOT / "examples" / "node"
GO = ROOT / "examples" / "go"


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    files = {
        "red": ("red.jpg", images.solid("red")),
        "green": ("green.png", images.solid("green", fmt="PNG")),
        "blue": ("blue.webp", images.solid("blue", fmt="WEBP")),
        "scene": ("scene.png", images.encode(images.scene(), "PNG")),
    }
    for name, data in files.values():
        (folder / name).write_bytes(data)
    return {key: folder / name for key, (name, _) in files.items()}


@pytest.fixture(scope="module")
def node_client() -> list[str]:
    node, npm = require_tool("node"), require_tool("npm")
    if not (NODE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE, check=True, capture_output=True
        )
    return [node, str(NODE / "client.js")]


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> str:
    for tool in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("go")
    result = subprocess.run(
        ["bash", str(GO / "build.sh"), str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return str(out / "tfsclient")


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_node_unary_classify_and_detect(node_client, gateway: GatewayProcess, pictures) -> None:
    at = ["--gateway", gateway.target]
    out = _run([*node_client, "classify", *at, "--model", "colors", "--top-k", "2",
                str(pictures["red"]), str(pictures["blue"])])  # fmt: skip
    responses = [json.loads(line) for line in out.splitlines()]
    assert [r["classifications"][0]["label"] for r in responses] == ["red", "blue"]
    assert responses[0]["image_size"] == {"width": 640, "height": 480}
    assert responses[0]["request_id"] == str(pictures["red"])
    out = _run(
        [
            *node_client,
            "detect",
            "--gateway",
            gateway.target,
            "--model",
            "shapes",
            str(pictures["scene"]),
        ]
    )
    [detected] = [json.loads(line) for line in out.splitlines()]
    assert [(d["label"], d["class_id"]) for d in detected["detections"]] == [
        ("red", "1"),
        ("blue", "3"),
    ]
    box = detected["detections"][0]["pixel_box"]
    assert [round(box[k]) for k in ("xmin", "ymin", "xmax", "ymax")] == [40, 30, 140, 130]


def test_node_bidirectional_stream(node_client, gateway: GatewayProcess, pictures) -> None:
    frames = [str(pictures[c]) for c in ("red", "green", "blue", "red")]
    at = ["--gateway", gateway.target]
    out = _run([*node_client, "stream", *at, "--model", "colors", "--top-k", "1",
                "--window", "2", *frames])  # fmt: skip
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [
        {"status": "result", "frame_id": str(i), "labels": [[label]]}
        for i, label in enumerate(["red", "green", "blue", "red"])
    ]


def test_node_client_reports_a_status(node_client, gateway: GatewayProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    result = subprocess.run([*node_client, "classify", "--gateway", gateway.target, str(bad)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("INVALID_ARGUMENT: the data is not an image")


def test_go_unary_classify_and_detect(go_client, gateway: GatewayProcess, pictures) -> None:
    out = _run([go_client, "-gateway", gateway.target, "-model", "colors", "-top-k", "1",
                str(pictures["red"]), str(pictures["green"])])  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(r[1], r[2]) for r in rows] == [("red", "0"), ("green", "1")]
    assert float(rows[0][3]) > 0.99
    out = _run(
        [
            go_client,
            "-gateway",
            gateway.target,
            "-model",
            "shapes",
            "-detect",
            str(pictures["scene"]),
        ]
    )
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(r[1], r[2], r[4]) for r in rows] == [
        ("red", "1", "40,30,140,130"),
        ("blue", "3", "200,150,350,260"),
    ]
