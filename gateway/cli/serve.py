"""``tfs-gateway serve``: read the settings and run the gateway until SIGTERM (SIGHUP re-reads
them)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from gateway.config import ConfigError, GatewayConfig, ModelSettings, load_config


def read_config(args: argparse.Namespace) -> GatewayConfig:
    """The config file, environment and flags, as ``serve``'s arguments name them."""
    extra = []
    for spec in args.model or ():
        name, _, labels = spec.partition("=")
        extra.append(ModelSettings(name=name, labels=Path(labels) if labels else None))
    return load_config(
        args.config,
        overrides={
            "upstream": args.upstream,
            "host": args.host,
            "port": args.port,
            "metrics_port": args.metrics_port,
            "http_port": args.http_port,
            "max_in_flight": args.max_in_flight,
        },
        extra_models=extra,
    )


def serve(args: argparse.Namespace) -> int:
    from gateway.server import GatewayServer, create_server  # the server's imports only here

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = read_config(args)
    except ConfigError as error:
        print(f"tfs-gateway: config: {error}", file=sys.stderr)
        return 2

    def announce(gateway: GatewayServer) -> None:
        at = gateway.addresses
        http = "off" if gateway.http_port is None else at["HTTP"]
        if gateway.http_port is not None:  # a URL a browser on this machine can open
            host = "localhost" if at["HTTP"].startswith(("127.", "[::", "0.0.0.0")) else None
            http = f"http://{host or at['HTTP'].rsplit(':', 1)[0]}:{gateway.http_port}/"
        metrics = "metrics off" if gateway.metrics_port is None else f"metrics on {at['metrics']}"
        print(
            f"tfs-gateway serving on {at['gRPC']}, {metrics}, "
            f"web page and HTTP API on {http}, upstream {config.upstream}",
            flush=True,
        )

    async def run() -> None:
        gateway = create_server(config, reload_config=lambda: read_config(args))
        await gateway.serve(announce)

    asyncio.run(run())
    return 0
