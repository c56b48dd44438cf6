"""TF Serving as the gateway sees it: the client its config names (gRPC or REST, with the
config's deadlines, keepalive, retries and reconnect backoff), and the watch that keeps every
model's readiness in step with TF Serving (DECISIONS 26): version polling every
``status_poll_s``, the gRPC channel's connectivity or a REST probe every ``upstream_probe_s``,
and failed calls (reported by the data plane to the catalogue)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from gateway.config import GatewayConfig
from gateway.dataplane import DataPlane
from gateway.errors import UpstreamError
from gateway.health import Readiness
from gateway.tfserving.client import Upstream, UpstreamClient
from gateway.tfserving.options import UpstreamOptions
from gateway.tfserving.rest import RestUpstream, RetryPolicy

log = logging.getLogger(__name__)


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


class UpstreamWatch:
    """Publishes readiness whenever TF Serving's state changes; ``start`` after the first poll,
    ``stop`` at shutdown. ``config`` is read anew each time (a reload changes the intervals)."""

    def __init__(
        self,
        dataplane: DataPlane,
        readiness: Readiness,
        config: Callable[[], GatewayConfig],
    ) -> None:
        self.dataplane = dataplane
        self.readiness = readiness
        self.config = config
        self._tasks: list[asyncio.Task[None]] = []

    async def poll_once(self) -> None:
        """Refresh every model from TF Serving and publish readiness."""
        await self.dataplane.refresh()
        await self.readiness.publish(self.dataplane.models.values())

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._poll_forever()),
            asyncio.create_task(self._watch_upstream()),
            asyncio.create_task(self._publish_changes()),
        ]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config().status_poll_s)
            await _guarded(self.poll_once(), "polling TF Serving for model status failed")

    async def _watch_upstream(self) -> None:
        """Readiness between polls: the gRPC channel's connectivity, or for any other upstream
        a light status probe every ``upstream_probe_s``."""
        catalog, upstream = self.dataplane.catalog, self.dataplane.upstream
        failed = "checking TF Serving for readiness failed"
        if isinstance(upstream, UpstreamClient):
            async for reachable in upstream.connectivity():
                if reachable:
                    await _guarded(self.dataplane.refresh(), failed)
                else:  # the caller's message says what, the log's also where
                    target = self.config().upstream
                    details = f"cannot connect to {target}: the channel is not connected"
                    catalog.unreachable(UpstreamError(grpc.StatusCode.UNAVAILABLE, details, ""))
            return
        while True:
            probe_s = self.config().upstream_probe_s
            await asyncio.sleep(probe_s)
            await _guarded(catalog.probe(timeout=max(1.0, probe_s)), failed)

    async def _publish_changes(self) -> None:
        changed = self.dataplane.catalog.changed
        while True:
            await changed.wait()
            changed.clear()
            await self.readiness.publish(self.dataplane.models.values())


async def _guarded(check: Awaitable[None], failure: str) -> None:
    try:
        await check
    except Exception:
        log.exception(failure)
