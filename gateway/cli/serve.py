"""``tfs-gateway serve``: read the settings and run the gateway until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from gateway.config import ConfigError, GatewayConfig, ModelSettings, load_config


def serve(args: argparse.Namespace) -> int:
    from gateway.server import GatewayServer  # the server's imports only where it runs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    def read_config() -> GatewayConfig:
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

    try:
        config = read_config()
    except ConfigError as error:
        print(f"tfs-gateway: config: {error}", file=sys.stderr)
        return 2

    async def run() -> None:
        gateway = await GatewayServer.start(config)
        http = f"http://localhost:{gateway.http_port}/" if gateway.http_port else "off"
        print(
            f"tfs-gateway serving on {config.host}:{gateway.port}, metrics on "
            f":{gateway.metrics_port}, web page and HTTP API on {http}, upstream {config.upstream}",
            flush=True,
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        reloads: set[asyncio.Task[None]] = set()

        async def reload() -> None:
            try:
                await gateway.reload(read_config())
            except ConfigError as error:
                logging.getLogger("gateway").error(
                    "config reload refused, keeping the old: %s", error
                )

        def on_sighup() -> None:
            task = asyncio.ensure_future(reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        await stopping.wait()
        print("tfs-gateway: draining calls in flight and stopping", flush=True)
        await gateway.stop()

    asyncio.run(run())
    return 0
