"""Nothing exposed by accident (DECISIONS 23): loopback unless told otherwise, every listener
where the config says (read back from the kernel's socket table, as ``ss -ltn`` does), the
bound addresses logged, one warning when a non-loopback address is served, reflection optional."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.config import GatewayConfig, load_config
from gateway.exposure import address, is_loopback
from gateway.server import GatewayServer
from tests.test_server import config_with, run

WARNING = "without TLS or authentication: anyone who can reach it can call it"


def listening(port: int) -> set[str]:
    """The local addresses listening on ``port``, from the kernel's socket tables (IPv4-mapped
    IPv6 addresses as IPv4, "::" for a dual-stack wildcard)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            hex_host, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(hex_host)  # 32-bit words in host (little-endian) order
                ip = ipaddress.ip_address(
                    b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                )
                mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
                found.add(str(mapped or ip))
    return found


def config(labels: Path, **settings: object) -> GatewayConfig:
    return dataclasses.replace(config_with(labels), **settings)  # type: ignore[arg-type]


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("red\ngreen\nblue\n")
    return path


def test_a_bare_config_binds_loopback_and_serves_reflection() -> None:
    config = load_config(env={})
    assert (config.host, config.metrics_host, config.reflection) == ("127.0.0.1", None, True)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("[::1]", True), ("localhost", True),
     ("[::]", False), ("0.0.0.0", False), ("", False), ("10.0.0.7", False), ("gw.example", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_addresses_are_written_as_callers_write_them() -> None:
    assert (address("[::]", 9000), address("::1", 80), address("", 1)) == (
        "[::]:9000", "[::1]:80", "0.0.0.0:1",
    )  # fmt: skip
    assert address("127.0.0.1", None) == "off"


def test_every_listener_binds_loopback_by_default(labels: Path) -> None:
    settings = config(labels, host=GatewayConfig().host)

    async def test(server: GatewayServer) -> None:
        for port in (server.port, server.http_port, server.metrics_port):
            assert port is not None
            assert listening(port) == {"127.0.0.1"}, port

    run(settings, test)


def test_metrics_host_overrides_host_for_the_metrics_listener_only(labels: Path) -> None:
    settings = config(labels, host="127.0.0.1", metrics_host="127.0.0.2")

    async def test(server: GatewayServer) -> None:
        assert server.metrics_port is not None and server.http_port is not None
        assert listening(server.metrics_port) == {"127.0.0.2"}
        assert listening(server.http_port) == {"127.0.0.1"}

    run(settings, test)


def test_start_logs_the_bound_addresses_and_off_without_a_warning_on_loopback(
    labels: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.exposure")
    settings = config(labels, metrics_port=-1)

    async def test(server: GatewayServer) -> None:
        line = f"listening: gRPC 127.0.0.1:{server.port}, HTTP 127.0.0.1:{server.http_port}, "
        assert caplog.messages == [line + "metrics off"]
        assert server.addresses["metrics"] == "off"

    run(settings, test)


def test_a_non_loopback_address_is_warned_about_once(
    labels: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.exposure")
    settings = config(labels, host="0.0.0.0", metrics_host="127.0.0.1")

    async def test(server: GatewayServer) -> None:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            f"serving on 0.0.0.0:{server.port}, 0.0.0.0:{server.http_port} {WARNING}"
        ]
        assert listening(server.port) in ({"0.0.0.0"}, {"::"})  # gRPC: maybe dual-stack

    run(settings, test)


async def _reflect(server: GatewayServer) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        try:
            async for _ in stub.ServerReflectionInfo(iter([request])):
                return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            return error.code()
    raise AssertionError("reflection answered nothing")


def test_reflection_is_served_by_default(labels: Path) -> None:
    async def test(server: GatewayServer) -> None:
        assert await _reflect(server) == grpc.StatusCode.OK

    run(config_with(labels), test)


def test_reflection_off_is_absent_and_the_gateway_still_answers(labels: Path) -> None:
    async def test(server: GatewayServer) -> None:
        assert await _reflect(server) == grpc.StatusCode.UNIMPLEMENTED
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = classify_pb2_grpc.ImageGatewayStub(channel)
            models = await stub.ListModels(classify_pb2.ListModelsRequest())
        assert [m.name for m in models.models] == ["colors"]

    run(config(labels, reflection=False), test)


def test_reflection_is_read_from_the_environment() -> None:
    config = load_config(env={"TFS_GATEWAY_REFLECTION": "false"})
    assert config.reflection is False
