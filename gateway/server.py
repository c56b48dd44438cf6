"""The running gateway, in named phases (uvicorn's ``Server`` is the model): ``start`` builds the
upstream and the data plane, then opens the gRPC server, the HTTP front and the metrics
endpoint and starts the status poller; ``serve`` runs until SIGTERM/SIGINT and reloads on
SIGHUP; ``stop`` drains. Tests start it with ports 0 and read the bound ports back."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
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
from gateway.health import SERVICE_NAME, Readiness
from gateway.memory import keep_heap_top_pad
from gateway.metrics import Metrics
from gateway.tfserving.client import Upstream, UpstreamClient, UpstreamOptions
from gateway.tfserving.rest import RestUpstream, RetryPolicy
from gateway.transport.grpc_registration import add_image_gateway
from gateway.transport.grpc_service import ImageGatewayServicer
from gateway.transport.listener import (
    Listener,
    ListenerLimits,
    quiet_accept_errors,
    retry_after_s,
)
from gateway.transport.metrics_http import create_metrics_app

log = logging.getLogger(__name__)

# Settings a reload cannot change: they shape listeners, pools and the upstream channel.
FIXED_AT_START = (
    "upstream", "host", "port", "metrics_port", "http_port", "decode_threads",
    "max_message_bytes", "upstream_timeout_s", "upstream_keepalive_time_ms",
    "upstream_keepalive_timeout_ms", "upstream_retry_attempts",
    "upstream_retry_initial_backoff_ms", "upstream_retry_max_backoff_ms",
    "max_connection_age_s", "max_streams_per_connection",
    "upstream_reconnect_initial_backoff_ms", "upstream_reconnect_max_backoff_ms",
    "metrics_host", "max_http_connections", "http_idle_timeout_s",
)  # fmt: skip
# What a stream's final status needs to reach its caller before gRPC cuts calls at shutdown.
STATUS_MARGIN_S = 0.25
# gRPC reads INT_MAX as "no limit" for its millisecond settings.
GRPC_UNLIMITED_MS = 2**31 - 1


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
        reconnect_initial_backoff_ms=config.upstream_reconnect_initial_backoff_ms,
        reconnect_max_backoff_ms=config.upstream_reconnect_max_backoff_ms,
    )
    return UpstreamClient(options, credentials)


class GatewayServer:
    """``server = create_server(config)``; ``await server.start()`` … ``await server.stop()``,
    or ``await server.serve()`` to run until a signal. Bound ports: ``port`` (gRPC),
    ``http_port`` and ``metrics_port`` (None when off)."""

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
        self._interceptors = interceptors
        self._upstream_credentials = upstream_credentials
        self._reload_config = reload_config
        self._upstream = upstream
        self._executor = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="decode")
        self._grpc: grpc.aio.Server | None = None
        self._http: Listener | None = None
        self._metrics_listener: Listener | None = None
        self._poller: asyncio.Task[None] | None = None
        self._watchers: list[asyncio.Task[None]] = []
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
        self.calls = Calls(
            self.metrics,
            self.config.max_in_flight,
            retry_after_ms=self.config.retry_after_ms,
            max_streams=self.config.max_streams,
        )
        await self.readiness.starting()
        await self._start_grpc()
        await self._start_http()
        await self._start_metrics()
        await self._start_poller()
        log.info("tfs-gateway serving on port %d (upstream %s)", self.port, self.config.upstream)

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
            ],
        )
        servicer = ImageGatewayServicer(self.dataplane, self.calls)
        add_image_gateway(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.readiness.servicer, server)
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
        host = config.host if config.metrics_host is None else config.metrics_host
        app = create_metrics_app(self.registry)
        self._metrics_listener = await Listener.start(
            app, host, config.metrics_port, self._limits()
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
        await self.poll_once()
        self._poller = asyncio.create_task(self._poll_forever())
        self._watchers = [
            asyncio.create_task(self._watch_upstream()),
            asyncio.create_task(self._publish_changes()),
        ]

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
        self.calls.admission.limit = config.max_in_flight
        self.calls.admission.retry_after_ms = config.retry_after_ms
        self.calls.max_streams = config.max_streams
        self.metrics.in_flight_limit.set(config.max_in_flight)
        await self.poll_once()
        log.info("config reloaded: models %s", ", ".join(m.name for m in config.models))
        return True

    async def poll_once(self) -> None:
        """Refresh every model from TF Serving and publish readiness."""
        await self.dataplane.refresh()
        await self.readiness.publish(self.dataplane.models.values())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_poll_s)
            try:
                await self.poll_once()
            except Exception:
                log.exception("polling TF Serving for model status failed")

    async def _watch_upstream(self) -> None:
        """Readiness between polls (DECISIONS 26): the gRPC channel's connectivity, or for
        any other upstream a light status probe every ``upstream_probe_s``. Failed calls are
        the other signal (the data plane reports them to the catalogue)."""
        catalog = self.dataplane.catalog
        if isinstance(self.upstream, UpstreamClient):
            async for reachable in self.upstream.connectivity():
                if reachable:
                    await self._guarded(self.dataplane.refresh())
                else:
                    catalog.unreachable(f"upstream: cannot connect to {self.config.upstream}")
            return
        while True:
            await asyncio.sleep(self.config.upstream_probe_s)
            await self._guarded(catalog.probe(timeout=max(1.0, self.config.upstream_probe_s)))

    async def _publish_changes(self) -> None:
        changed = self.dataplane.catalog.changed
        while True:
            await changed.wait()
            changed.clear()
            await self.readiness.publish(self.dataplane.models.values())

    @staticmethod
    async def _guarded(check: Awaitable[None]) -> None:
        try:
            await check
        except Exception:
            log.exception("checking TF Serving for readiness failed")

    # --- shutdown ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new calls, let calls in flight finish within ``grace``
        (streams: the frames they accepted)."""
        await self.readiness.stopping()
        if self._poller is not None:
            self._poller.cancel()
        for task in self._watchers:
            task.cancel()
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


def raise_open_files_limit() -> None:
    """Every connection is a file descriptor: take the hard ``nofile`` limit, not the (often
    1024) soft one, so that idle connections are timed out before descriptors run out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:  # e.g. an unlimited hard limit on macOS
            log.warning("could not raise the open files limit from %d to %d: %s", soft, hard, error)


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
