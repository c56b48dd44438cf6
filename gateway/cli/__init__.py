"""``tfs-gateway``: run the gateway (``serve``), check its config (``check-config``), call it
(``classify``, ``detect``, ``models``, ``health``), or inspect a model in TF Serving directly
(``describe``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import grpc

from gateway import __version__
from gateway.cli import check, commands, serve, video
from gateway.cli.commands import GATEWAY_DEFAULT
from gateway.errors import GatewayError


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model name")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--version", type=int, help="a specific version (default: latest)")
    choice.add_argument("--label", default="", help="a version label, e.g. stable")
    parser.add_argument("--signature", default="", help="signature (default: serving_default)")


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", default=GATEWAY_DEFAULT, help="gateway address (host:port)")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per call, seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfs-gateway", description="An image gateway in front of TensorFlow Serving."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True)

    serving = subcommands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. Settings come from --config (TOML), then TFS_GATEWAY_* "
        "environment variables, then these flags.",
    )
    serving.add_argument("--config", type=Path, help="TOML config file (models, profiles, limits)")
    serving.add_argument("--upstream", help="TF Serving gRPC target (default localhost:8500)")
    serving.add_argument("--host", help="address to listen on (default [::])")
    serving.add_argument("--port", type=int, help="gRPC port (default 9000; 0: any free port)")
    serving.add_argument("--metrics-port", type=int, help="Prometheus port (default 9100; -1: off)")
    serving.add_argument(
        "--http-port", type=int, help="HTTP API and web page (default 8080; -1: off)"
    )
    serving.add_argument("--max-in-flight", type=int, help="requests in flight before shedding")
    serving.add_argument(
        "--model",
        action="append",
        metavar="NAME[=LABELS]",
        help="serve this model (repeatable), optionally with a label file",
    )
    serving.set_defaults(run=serve.serve)
    check.add_parser(subcommands)

    classify = subcommands.add_parser("classify", help="classify images through the gateway")
    classify.add_argument("images", type=Path, nargs="+")
    _model_options(classify)
    classify.add_argument(
        "--top-k", type=int, default=0, help="labels per image (0: model default)"
    )
    classify.add_argument("--min-score", type=float, default=0.0)
    classify.add_argument("--json", action="store_true", help="one JSON response per line")
    _client_options(classify)
    classify.set_defaults(run=commands.classify)

    detect = subcommands.add_parser("detect", help="detect objects in images through the gateway")
    detect.add_argument("images", type=Path, nargs="+")
    _model_options(detect)
    detect.add_argument("--min-score", type=float, default=0.0)
    detect.add_argument("--max-detections", type=int, default=0)
    detect.add_argument("--json", action="store_true", help="one JSON response per line")
    _client_options(detect)
    detect.set_defaults(run=commands.detect)

    video.add_parser(subcommands)

    models = subcommands.add_parser("models", help="list the models the gateway serves")
    models.add_argument("--json", action="store_true")
    _client_options(models)
    models.set_defaults(run=commands.models)

    health = subcommands.add_parser("health", help="grpc.health.v1 check; exit 0 when SERVING")
    health.add_argument("--service", default="", help='"" (readiness), "liveness", "model/NAME"')
    _client_options(health)
    # In a container the check runs beside the server: default to its own port.
    health.set_defaults(
        run=commands.health,
        timeout=5.0,
        gateway=f"localhost:{os.environ.get('TFS_GATEWAY_PORT', 9000)}",
    )

    describe = subcommands.add_parser(
        "describe", help="ask TF Serving itself about a model (versions and signatures)"
    )
    describe.add_argument("model", help="model name in TF Serving")
    describe.add_argument("--upstream", default="localhost:8500", help="TF Serving gRPC target")
    version = describe.add_mutually_exclusive_group()
    version.add_argument("--version", type=int, help="a specific version (default: latest)")
    version.add_argument("--label", default="", help="a version label")
    describe.add_argument("--signature", default="")
    describe.add_argument("--timeout", type=float, default=10.0)
    describe.set_defaults(run=lambda a: asyncio.run(commands.describe(a)))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except GatewayError as error:
        print(f"tfs-gateway: {error.code.name}: {error.message}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        status, details = error.code(), error.details()
        print(f"tfs-gateway: {status.name}: {details}", file=sys.stderr)
        return 1
