"""The Prometheus endpoint, served from the event loop by a bounded listener (prometheus_client's
own server spends a thread on every connection, with no timeout). ``GET /metrics`` answers in
the format the scraper's ``Accept`` asks for: OpenMetrics (which carries exemplars) or the
classic text format."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from gateway.transport.http_headers import add_security_headers


def create_metrics_app(registry: CollectorRegistry) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(registry), headers={"Content-Type": content_type})

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/", metrics)])
    return add_security_headers(app)
