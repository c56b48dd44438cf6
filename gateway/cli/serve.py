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
        http = f"http://localhost:{gateway.http_port}/" if gateway.http_port else "off"
        print(
            f"tfs-gateway serving on {config.host}:{gateway.port}, metrics on "
            f":{gateway.metrics_port}, web page and HTTP API on {http}, upstream {config.upstream}",
            flush=True,
        )

    async def run() -> None:
        gateway = create_server(config, reload_config=lambda: read_config(args))
        await gateway.serve(announce)

    asyncio.run(run())
    return 0
