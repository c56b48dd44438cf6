"""The server in process: create_server's bound ports, readiness published from the catalogue,
and a reload that is all or nothing — in front of an in-memory TF Serving."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from gateway.config import GatewayConfig, ModelSettings
from gateway.server import GatewayServer, create_server
from tests.fakes import FakeUpstream, classifier

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def config_with(labels: Path, **settings: object) -> GatewayConfig:
    return GatewayConfig(
        host="127.0.0.1", port=0, http_port=0, metrics_port=0, status_poll_s=3600,
        models=(ModelSettings("colors", labels=labels),), **settings,  # type: ignore[arg-type]
    )  # fmt: skip


def run(config: GatewayConfig, test: Callable[[GatewayServer], Awaitable[None]]) -> None:
    async def main() -> None:
        server = create_server(config, CollectorRegistry(), upstream=FakeUpstream(classifier()))
        await server.start()
        try:
            await test(server)
        finally:
            await server.stop(grace=0)

    asyncio.run(main())


async def health(server: GatewayServer, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        response = await health_pb2_grpc.HealthStub(channel).Check(request)
        return int(response.status)


def test_start_binds_every_listener_on_a_free_port_and_names_it(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")

    async def test(server: GatewayServer) -> None:
        assert server.port > 0 and server.http_port and server.metrics_port
        assert len({server.port, server.http_port, server.metrics_port}) == 3
        loop = asyncio.get_running_loop()
        for port, path in ((server.http_port, "/readyz"), (server.metrics_port, "/metrics")):
            url = f"http://127.0.0.1:{port}{path}"
            status = await loop.run_in_executor(
                None, lambda u=url: urllib.request.urlopen(u).status
            )
            assert status == 200, path
        assert await health(server, "") == SERVING
        assert await health(server, "model/colors") == SERVING
        assert await health(server, "liveness") == SERVING
        assert server.ready

    run(config_with(labels), test)


def test_a_reload_with_an_unreadable_label_file_changes_nothing(tmp_path: Path, caplog) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"\xff\xfe not utf-8")
    caplog.set_level(logging.ERROR, logger="gateway.server")

    async def test(server: GatewayServer) -> None:
        before = server.config
        new = dataclasses.replace(
            before, max_in_flight=7, models=(ModelSettings("colors", labels=broken),)
        )
        assert await server.reload(new) is False
        assert server.config is before
        assert server.dataplane.model("colors").labels == {0: "red", 1: "green", 2: "blue"}
        assert server.calls.admission.limit == before.max_in_flight
        assert await health(server, "") == SERVING

    run(config_with(labels), test)
    [record] = caplog.records
    assert record.getMessage().startswith(
        "config reload refused, keeping the old config: "
        f"models.colors.labels: {broken} is not a label file: "
    )


def test_a_reload_that_the_profile_cannot_fit_changes_nothing(tmp_path: Path, caplog) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    caplog.set_level(logging.ERROR, logger="gateway.server")

    async def test(server: GatewayServer) -> None:
        before = server.config
        # The model is known (its signature loaded): the new settings are tried on it first.
        settings = dataclasses.replace(before.models[0], scores_output="nope")
        assert await server.reload(dataclasses.replace(before, models=(settings,))) is False
        assert server.config is before
        assert server.dataplane.model("colors").settings is before.models[0]

    run(config_with(labels), test)
    [record] = caplog.records
    assert record.getMessage() == (
        "config reload refused, keeping the old config: model 'colors', signature "
        "'serving_default': scores_output 'nope' is not an output"
    )


def test_a_good_reload_applies_limits_labels_and_readiness_at_once(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    renamed = tmp_path / "renamed.txt"
    renamed.write_text("rouge\nvert\nbleu\n")

    async def test(server: GatewayServer) -> None:
        new = dataclasses.replace(
            server.config, max_in_flight=7, models=(ModelSettings("colors", labels=renamed),)
        )
        assert await server.reload(new) is True
        assert server.calls.admission.limit == 7
        assert server.registry.get_sample_value("tfs_gateway_in_flight_limit") == 7
        assert server.dataplane.model("colors").labels == {0: "rouge", 1: "vert", 2: "bleu"}
        assert await health(server, "model/colors") == SERVING

    run(config_with(labels), test)


def test_sighup_rereads_the_config_through_the_servers_own_handler(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    reread = config_with(labels, max_in_flight=3)

    async def main() -> None:
        server = create_server(
            config_with(labels), CollectorRegistry(), upstream=FakeUpstream(classifier()),
            reload_config=lambda: reread,
        )  # fmt: skip
        await server.start()
        loop = asyncio.get_running_loop()
        try:
            server.install_signal_handlers()
            os.kill(os.getpid(), signal.SIGHUP)
            async with asyncio.timeout(5):
                while server.calls.admission.limit != 3:
                    await asyncio.sleep(0.01)
        finally:
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await server.stop(grace=0)

    asyncio.run(main())


def test_stop_reports_not_serving_before_refusing_calls(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")

    async def main() -> None:
        config = config_with(labels, shutdown_delay_s=0.3)
        server = create_server(config, CollectorRegistry(), upstream=FakeUpstream(classifier()))
        await server.start()
        stopping = asyncio.ensure_future(server.stop(grace=0))
        await asyncio.sleep(0)  # stop() has published NOT_SERVING and now waits the delay
        assert await health(server, "") == NOT_SERVING
        assert not server.ready
        await stopping
        try:
            await health(server, "")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        else:
            raise AssertionError("the gRPC server still answers after stop()")

    asyncio.run(main())
