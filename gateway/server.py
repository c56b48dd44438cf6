"""The running gateway, in named phases (uvicorn's ``Server`` is the model): ``start`` builds the
upstream and the data plane, then opens the gRPC server, the HTTP front and the metrics
endpoint and starts the status poller; ``serve`` runs until SIGTERM/SIGINT and reloads on
SIGHUP; ``stop`` drains. Tests start it with ports 0 and read the bound ports back."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from PIL import Image
from prometheus_client import CollectorRegistry

from gateway.calls import Calls
from gateway.config import ConfigError, GatewayConfig
from gateway.dataplane import DataPlane
from gateway.exposure import announce
from gateway.health import SERVICE_NAME, Readiness
from gateway.memory import keep_heap_top_pad
from gateway.metrics import Metrics
from gateway.tfserving.client import Upstream
from gateway.transport.grpc_registration import add_image_gateway
from gateway.transport.grpc_service import ImageGatewayServicer
from gateway.transport.listener import (
    Listener,
    ListenerLimits,
    quiet_accept_errors,
    raise_open_files_limit,
    retry_after_s,
)
from gateway.transport.metrics_http import create_metrics_app
from gateway.upstreams import UpstreamWatch, build_upstream

log = logging.getLogger(__name__)

# Settings a reload cannot change: they shape listeners, pools and the upstream channel.
FIXED_AT_START = (
    "upstream", "host", "port", "metrics_port", "http_port", "decode_threads",
    "max_message_bytes", "upstream_timeout_s", "upstream_keepalive_time_ms",
    "upstream_keepalive_timeout_ms", "upstream_retry_attempts",
    "upstream_retry_initial_backoff_ms", "upstream_retry_max_backoff_ms",
    "max_connection_age_s", "max_streams_per_connection",
    "upstream_reconnect_initial_backoff_ms", "upstream_reconnect_max_backoff_ms",
    "metrics_host", "max_http_connections", "http_idle_timeout_s", "reflection",
)  # fmt: skip
# What a stream's final status needs to reach its caller before gRPC cuts calls at shutdown.
STATUS_MARGIN_S = 0.25
# gRPC reads INT_MAX as "no limit" for its millisecond settings.
GRPC_UNLIMITED_MS = 2**31 - 1


class GatewayServer:
    """``server = create_server(config)``; ``await server.start()`` … ``await server.stop()``,
    or ``await server.serve()`` to run until a signal. Bound ports: ``port`` (gRPC),
    ``http_port`` and ``metrics_port`` (None when off); ``addresses``, each as text."""

    def __init__(
        self,
        config: GatewayConfig,
        registry: CollectorRegistry | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        upstream_credentials: grpc.ChannelCredentials | None = None,
        reload_config: Callable[[], GatewayConfig] | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry, tuple(m.name for m in config.models))
        self.readiness = Readiness()
        self.port = 0
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self.addresses: dict[str, str] = {}  # listener → bound address or "off", once started
        self._interceptors = interceptors
        self._upstream_credentials = upstream_credentials
        self._reload_config = reload_config
        self._upstream = upstream
        self._executor = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="decode")
        self._grpc: grpc.aio.Server | None = None
        self._http: Listener | None = None
        self._metrics_listener: Listener | None = None
        self._background: set[asyncio.Task[bool]] = set()
        self._stop_requested = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.readiness.ready

    # --- start-up, phase by phase ----------------------------------------------------------

    async def start(self) -> None:
        self._prepare_process()
        self.upstream = self._upstream or build_upstream(self.config, self._upstream_credentials)
        self.dataplane = DataPlane(self.config, self.upstream, self.metrics, self._executor)
        self.watch = UpstreamWatch(self.dataplane, self.readiness, lambda: self.config)
        self.calls = Calls.for_config(self.metrics, self.config)
        await self.readiness.starting()
        await self._start_grpc()
        await self._start_http()
        await self._start_metrics()
        await self._start_poller()
        self.addresses = announce(
            {
                "gRPC": (self.config.host, self.port),
                "HTTP": (self.config.host, self.http_port),
                "metrics": (self.metrics_host, self.metrics_port),
            }
        )

    @property
    def metrics_host(self) -> str:
        return self.config.metrics_host or self.config.host

    def _prepare_process(self) -> None:
        # The gateway enforces its own pixel limit from the header (DecodeLimits); Pillow's
        # global decompression-bomb check would refuse images before the gateway could say why.
        Image.MAX_IMAGE_PIXELS = None
        keep_heap_top_pad(self.config.heap_top_pad_bytes)
        raise_open_files_limit()
        quiet_accept_errors()

    async def _start_grpc(self) -> None:
        config = self.config
        server = grpc.aio.server(
            interceptors=self._interceptors,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                # After its age a connection gets a GOAWAY, so the caller's next calls open a
                # new one (and rebalance); the calls and streams it carries go on, without a
                # limit (DECISIONS 25): only stop()'s own grace bounds them at shutdown.
                ("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)),
                ("grpc.max_connection_age_grace_ms", GRPC_UNLIMITED_MS),
                ("grpc.max_concurrent_streams", config.max_streams_per_connection),
                # A connection that never sends its HTTP/2 preface holds a descriptor: close it
                # after the idle timeout HTTP connections get (gRPC's default is 120 s).
                ("grpc.server_handshake_timeout_ms", int(config.http_idle_timeout_s * 1000)),
            ],
        )
        servicer = ImageGatewayServicer(self.dataplane, self.calls)
        add_image_gateway(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.readiness.servicer, server)
        if config.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
            )
        self.port = server.add_insecure_port(f"{config.host}:{config.port}")
        await server.start()
        self._grpc = server

    async def _start_http(self) -> None:
        if self.config.http_port < 0:
            return
        from gateway.transport.http_api import create_app

        app = create_app(self.dataplane, self.calls, lambda: self.ready, lambda: self.config)
        config = self.config
        self._http = await Listener.start(app, config.host, config.http_port, self._limits())
        self.http_port = self._http.port

    async def _start_metrics(self) -> None:
        config = self.config
        if config.metrics_port < 0:
            return
        app = create_metrics_app(self.registry)
        self._metrics_listener = await Listener.start(
            app, self.metrics_host, config.metrics_port, self._limits()
        )
        self.metrics_port = self._metrics_listener.port

    def _limits(self) -> ListenerLimits:
        config = self.config
        return ListenerLimits(
            max_connections=config.max_http_connections,
            idle_timeout_s=config.http_idle_timeout_s,
            retry_after_s=retry_after_s(config.retry_after_ms),
        )

    async def _start_poller(self) -> None:
        await self.watch.poll_once()
        self.watch.start()

    # --- running -----------------------------------------------------------------------------

    async def serve(self, announce: Callable[[GatewayServer], None] | None = None) -> None:
        """Start, run until SIGTERM or SIGINT (SIGHUP reloads), then drain and stop."""
        await self.start()
        self.install_signal_handlers()
        if announce is not None:
            announce(self)
        await self._stop_requested.wait()
        log.info("draining calls in flight and stopping")
        await self.stop()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)

    def _reload_in_background(self) -> None:
        task = asyncio.ensure_future(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self, config: GatewayConfig | None = None) -> bool:
        """Take a new config (SIGHUP re-reads it): models, profiles, labels and limits change
        at once, or, if anything in it is wrong, nothing changes. Listening addresses, the
        upstream target and pools need a restart. True when the new config was applied."""
        try:
            if config is None:
                if self._reload_config is None:
                    raise ConfigError("this gateway was started without a config to re-read")
                config = self._reload_config()
            self.dataplane.reconfigure(config)
        except ConfigError as error:
            log.error("config reload refused, keeping the old config: %s", error)
            return False
        for name in FIXED_AT_START:
            if getattr(config, name) != getattr(self.config, name):
                log.warning("config reload: %s changed; it takes effect at the next restart", name)
        fixed = {name: getattr(self.config, name) for name in FIXED_AT_START}
        self.config = dataclasses.replace(config, **fixed)
        self.calls.reconfigure(config, self.config.max_message_bytes)
        await self.watch.poll_once()
        log.info("config reloaded: models %s", ", ".join(m.name for m in config.models))
        return True

    # --- shutdown ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new calls, let calls in flight finish within ``grace``
        (streams: the frames they accepted)."""
        await self.readiness.stopping()
        self.watch.stop()
        # Health-checking balancers see NOT_SERVING and move traffic before calls are refused.
        await asyncio.sleep(self.config.shutdown_delay_s)
        grace = self.config.shutdown_grace_s if grace is None else grace
        # Open streams read no more frames and answer those they accepted, ending themselves
        # (with a status naming what is left) just before gRPC cancels them at the grace's end.
        self.calls.draining.begin(time.monotonic() + grace - min(STATUS_MARGIN_S, grace / 4))
        # Both fronts refuse new work now; calls in flight on either finish within the grace.
        draining = [] if self._http is None else [self._http.stop(grace)]
        if self._grpc is not None:
            draining.append(self._grpc.stop(grace))
        await asyncio.gather(*draining)
        await self.upstream.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._metrics_listener is not None:
            await self._metrics_listener.stop(0)


def create_server(
    config: GatewayConfig,
    registry: CollectorRegistry | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    upstream_credentials: grpc.ChannelCredentials | None = None,
    reload_config: Callable[[], GatewayConfig] | None = None,
    upstream: Upstream | None = None,
) -> GatewayServer:
    """A gateway for ``config``, not yet started (``await server.start()`` or ``serve()``).
    ``upstream``: talk to this instead of ``config.upstream`` (tests use an in-memory one)."""
    return GatewayServer(
        config, registry, interceptors, upstream_credentials, reload_config, upstream
    )
