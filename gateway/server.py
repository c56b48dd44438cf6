"""The running gateway: the gRPC server with the ImageGateway servicer, health and reflection,
the HTTP front, the metrics endpoint, the model status poller, reload and graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from PIL import Image
from prometheus_client import CollectorRegistry, start_http_server

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.config import GatewayConfig
from gateway.dataplane import DataPlane
from gateway.memory import keep_heap_top_pad
from gateway.metrics import Metrics
from gateway.tfserving.client import Upstream, UpstreamClient, UpstreamOptions
from gateway.tfserving.rest import RestUpstream, RetryPolicy
from gateway.transport.grpc_service import ImageGatewayServicer

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_NAME = classify_pb2.DESCRIPTOR.services_by_name["ImageGateway"].full_name
LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def build_upstream(
    config: GatewayConfig, credentials: grpc.ChannelCredentials | None = None
) -> Upstream:
    """The TF Serving client the config names: REST for an http(s) URL, else gRPC, with the
    config's deadline, keepalive and UNAVAILABLE retry policy (the same numbers for both)."""
    if config.upstream.startswith(("http://", "https://")):  # TF Serving's REST port
        retry = RetryPolicy(
            attempts=config.upstream_retry_attempts,
            initial_backoff_s=config.upstream_retry_initial_backoff_ms / 1000,
            max_backoff_s=config.upstream_retry_max_backoff_ms / 1000,
        )
        return RestUpstream(config.upstream, timeout_s=config.upstream_timeout_s, retry=retry)
    options = UpstreamOptions(
        config.upstream,
        timeout_s=config.upstream_timeout_s,
        keepalive_time_ms=config.upstream_keepalive_time_ms,
        keepalive_timeout_ms=config.upstream_keepalive_timeout_ms,
        retry_attempts=config.upstream_retry_attempts,
        retry_initial_backoff_ms=config.upstream_retry_initial_backoff_ms,
        retry_max_backoff_ms=config.upstream_retry_max_backoff_ms,
    )
    return UpstreamClient(options, credentials)


def model_service_name(model: str) -> str:
    """The grpc.health.v1 service name that reports one model's readiness."""
    return f"model/{model}"


class GatewayServer:
    """A running gateway: ``await GatewayServer.start(config)``, then ``await stop()``."""

    def __init__(
        self,
        config: GatewayConfig,
        server: grpc.aio.Server,
        port: int,
        dataplane: DataPlane,
        health_servicer: health.aio.HealthServicer,
        metrics_port: int | None,
        metrics_server: Any,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.ready = False
        self._stopping = False
        self.http_port: int | None = None
        self._http_runner: Any = None
        self.config = config
        self.server = server
        self.port = port
        self.dataplane = dataplane
        self.health = health_servicer
        self.metrics_port = metrics_port
        self._metrics_server = metrics_server
        self._executor = executor
        self._poller: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        config: GatewayConfig,
        registry: CollectorRegistry | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        upstream_credentials: grpc.ChannelCredentials | None = None,
    ) -> GatewayServer:
        # The gateway enforces its own pixel limit from the header (DecodeLimits); Pillow's
        # global decompression-bomb check would refuse images before the gateway could say why.
        Image.MAX_IMAGE_PIXELS = None
        keep_heap_top_pad(config.heap_top_pad_bytes)
        registry = registry if registry is not None else CollectorRegistry()
        metrics = Metrics(registry, tuple(m.name for m in config.models))
        upstream = build_upstream(config, upstream_credentials)
        executor = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="decode")
        dataplane = DataPlane(config, upstream, metrics, executor)

        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.max_connection_age_ms", 5 * 60 * 1000),
                ("grpc.max_connection_age_grace_ms", int(config.shutdown_grace_s * 1000)),
            ],
        )
        classify_pb2_grpc.add_ImageGatewayServicer_to_server(
            ImageGatewayServicer(dataplane), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        port = server.add_insecure_port(f"{config.host}:{config.port}")

        metrics_server, metrics_port = None, None
        if config.metrics_port >= 0:
            metrics_server, _thread = start_http_server(
                config.metrics_port, addr="0.0.0.0", registry=registry
            )
            metrics_port = metrics_server.server_port

        gateway = cls(
            config, server, port, dataplane, health_servicer, metrics_port, metrics_server, executor
        )
        await health_servicer.set("", NOT_SERVING)
        await health_servicer.set(SERVICE_NAME, NOT_SERVING)
        await health_servicer.set(LIVENESS, SERVING)
        await server.start()
        if config.http_port >= 0:
            from gateway.transport.http_api import create_app, start_http

            app = create_app(dataplane, lambda: gateway.ready, config.max_message_bytes)
            gateway._http_runner, gateway.http_port = await start_http(
                app, config.host, config.http_port
            )
        await gateway.poll_once()
        gateway._poller = asyncio.create_task(gateway._poll_forever())
        log.info("tfs-gateway serving on port %d (upstream %s)", port, config.upstream)
        return gateway

    async def reload(self, config: GatewayConfig) -> None:
        """Take a re-read config (SIGHUP): models, profiles, labels and limits change at once;
        listening addresses, the upstream target and pools need a restart."""
        fixed = ("upstream", "host", "port", "metrics_port", "decode_threads", "max_message_bytes")
        for name in fixed:
            if getattr(config, name) != getattr(self.config, name):
                log.warning("config reload: %s changed; it takes effect at the next restart", name)
        self.dataplane.reconfigure(config)
        self.config = dataclasses.replace(config, **{n: getattr(self.config, n) for n in fixed})
        await self.poll_once()
        log.info("config reloaded: models %s", ", ".join(m.name for m in config.models))

    async def poll_once(self) -> None:
        """Refresh every model from TF Serving and publish readiness."""
        await self.dataplane.refresh()
        everything = bool(self.dataplane.models) and all(
            m.ready for m in self.dataplane.models.values()
        )
        for served in self.dataplane.models.values():
            await self.health.set(
                model_service_name(served.name), SERVING if served.ready else NOT_SERVING
            )
        for service in ("", SERVICE_NAME):
            await self.health.set(service, SERVING if everything else NOT_SERVING)
        self.ready = everything and not self._stopping

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_poll_s)
            try:
                await self.poll_once()
            except Exception:
                log.exception("polling TF Serving for model status failed")

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new calls, let calls in flight finish within ``grace``."""
        self._stopping, self.ready = True, False
        await self.health.enter_graceful_shutdown()
        if self._poller is not None:
            self._poller.cancel()
        # Health-checking balancers see NOT_SERVING and move traffic before calls are refused.
        await asyncio.sleep(self.config.shutdown_delay_s)
        grace = self.config.shutdown_grace_s if grace is None else grace
        if self._http_runner is not None:
            await self._http_runner.shutdown()  # stop accepting; calls in flight go on
        await self.server.stop(grace)
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        await self.dataplane.upstream.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()

    async def wait(self) -> None:
        await self.server.wait_for_termination()
