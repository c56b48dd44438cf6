"""protos/classify.proto is the product's contract: it compiles for other languages with plain
protoc (Debian's, independent of grpcio-tools; no Python-only options), and every service, rpc,
message, field, enum and enum value in it carries a comment, checked from the descriptor's
source info."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
PROTO = "classify.proto"

# FileDescriptorProto / DescriptorProto / ... field numbers used in source-info paths.
MESSAGE_TYPE, ENUM_TYPE, SERVICE = 4, 5, 6
FIELD, NESTED_TYPE, NESTED_ENUM = 2, 3, 4
ENUM_VALUE, METHOD = 2, 2


def _protoc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "protos"), *args, PROTO],
        capture_output=True,
        text=True,
    )


def _descriptor(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / "classify.pb"
    result = _protoc("--include_source_info", f"--descriptor_set_out={out}")
    assert result.returncode == 0, result.stderr
    [file] = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return file


def _elements(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Every commentable element: its source-info path → a readable name."""
    found: dict[tuple[int, ...], str] = {}

    def enum(path: tuple[int, ...], e: descriptor_pb2.EnumDescriptorProto, prefix: str) -> None:
        found[path] = f"enum {prefix}{e.name}"
        for i, value in enumerate(e.value):
            found[(*path, ENUM_VALUE, i)] = f"enum value {prefix}{e.name}.{value.name}"

    def message(path: tuple[int, ...], m: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        found[path] = f"message {prefix}{m.name}"
        for i, f in enumerate(m.field):
            found[(*path, FIELD, i)] = f"field {prefix}{m.name}.{f.name}"
        for i, nested in enumerate(m.nested_type):
            if not nested.options.map_entry:
                message((*path, NESTED_TYPE, i), nested, f"{prefix}{m.name}.")
        for i, e in enumerate(m.enum_type):
            enum((*path, NESTED_ENUM, i), e, f"{prefix}{m.name}.")

    for i, m in enumerate(file.message_type):
        message((MESSAGE_TYPE, i), m, "")
    for i, e in enumerate(file.enum_type):
        enum((ENUM_TYPE, i), e, "")
    for i, s in enumerate(file.service):
        found[(SERVICE, i)] = f"service {s.name}"
        for j, method in enumerate(s.method):
            found[(SERVICE, i, METHOD, j)] = f"rpc {s.name}.{method.name}"
    return found


def test_every_element_of_the_api_has_a_comment(tmp_path: Path) -> None:
    file = _descriptor(tmp_path)
    commented = {
        tuple(loc.path)
        for loc in file.source_code_info.location
        if loc.leading_comments.strip() or loc.trailing_comments.strip()
    }
    elements = _elements(file)
    assert len(elements) > 100  # the walk really covers the file
    missing = sorted(name for path, name in elements.items() if path not in commented)
    assert missing == []


def test_api_has_the_rpcs_and_reserved_room_for_what_comes_next(tmp_path: Path) -> None:
    file = _descriptor(tmp_path)
    assert file.package == "tfsgateway.v1"
    [service] = file.service
    assert [m.name for m in service.method] == [
        "Classify", "Detect", "ListModels", "DescribeModel", "Analyze", "Stream",
    ]  # fmt: skip
    stream = service.method[-1]
    assert stream.client_streaming and stream.server_streaming
    messages = {m.name: m for m in file.message_type}
    for name in ("ClassifyRequest", "ClassifyResponse", "DetectRequest", "DetectResponse"):
        assert [(r.start, r.end) for r in messages[name].reserved_range] == [(7, 16)], name


@pytest.mark.parametrize(
    "language", ["cpp", "java", "csharp", "python", "ruby", "php", "objc", "descriptor_set"]
)
def test_api_compiles_with_plain_protoc_without_warnings(tmp_path: Path, language: str) -> None:
    protoc = require_tool("protoc")
    out = (
        f"--descriptor_set_out={tmp_path / 'classify.pb'}"
        if language == "descriptor_set"
        else f"--{language}_out={tmp_path}"
    )
    result = subprocess.run(
        [protoc, "-I", str(ROOT / "protos"), out, PROTO],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert any(tmp_path.rglob("*")), "protoc wrote nothing"
