"""``tfs-gateway``: run the gateway (``serve``), call it (``classify``, ``detect``, ``models``,
``health``), or inspect a model in TF Serving directly (``describe``)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import __version__, video_client
from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.config import ConfigError, GatewayConfig, ModelSettings, load_config
from gateway.errors import GatewayError
from gateway.signatures import ModelRef
from gateway.tensors import dtype_name
from gateway.upstream import UpstreamClient, UpstreamOptions

GATEWAY_DEFAULT = "localhost:9000"


# --- serve ---------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import GatewayServer  # the server's imports only where it runs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    def read_config() -> GatewayConfig:
        config = load_config(
            args.config,
            overrides={
                "upstream": args.upstream,
                "host": args.host,
                "port": args.port,
                "metrics_port": args.metrics_port,
                "http_port": args.http_port,
                "max_in_flight": args.max_in_flight,
            },
        )
        extra = []
        for spec in args.model or ():
            name, _, labels = spec.partition("=")
            extra.append(ModelSettings(name=name, labels=Path(labels) if labels else None))
        return dataclasses.replace(config, models=(*config.models, *extra))

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


# --- client commands -----------------------------------------------------------------------


def _stub(args: argparse.Namespace) -> classify_pb2_grpc.ImageGatewayStub:
    channel = grpc.insecure_channel(
        args.gateway, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    return classify_pb2_grpc.ImageGatewayStub(channel)


def _model(args: argparse.Namespace) -> classify_pb2.ModelRef:
    ref = classify_pb2.ModelRef(name=args.model, signature_name=args.signature)
    if args.version is not None:
        ref.version = args.version
    elif args.label:
        ref.version_label = args.label
    return ref


def _as_json(message: object) -> str:
    return json.dumps(
        json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )


def _each_image(
    args: argparse.Namespace,
    call: Callable[[Path], Message],
    show: Callable[[Message], list[str]],
) -> int:
    """Call the gateway once per image; print JSON, or a header line and ``show``'s lines."""
    for path in args.images:
        response = call(path)
        if args.json:
            print(_as_json(response))
            continue
        size, model = response.image_size, response.model  # type: ignore[attr-defined]
        print(f"{path} ({size.width}x{size.height}) {model.name} v{model.version}:")
        for line in show(response):
            print(f"  {line}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    stub = _stub(args)

    def call(path: Path) -> Message:
        request = classify_pb2.ClassifyRequest(
            model=_model(args), image=path.read_bytes(), top_k=args.top_k,
            min_score=args.min_score, request_id=str(path),
        )  # fmt: skip
        return stub.Classify(request, timeout=args.timeout)

    def show(response: Message) -> list[str]:
        return [
            f"{c.score:8.4f}  {c.label or '-'} (class {c.class_id})"
            for c in response.classifications  # type: ignore[attr-defined]
        ]

    return _each_image(args, call, show)


def _detect(args: argparse.Namespace) -> int:
    stub = _stub(args)

    def call(path: Path) -> Message:
        request = classify_pb2.DetectRequest(
            model=_model(args), image=path.read_bytes(), min_score=args.min_score,
            max_detections=args.max_detections, request_id=str(path),
        )  # fmt: skip
        return stub.Detect(request, timeout=args.timeout)

    def show(response: Message) -> list[str]:
        return [
            f"{d.score:8.4f}  {d.label or '-'} (class {d.class_id})  "
            f"x {d.pixel_box.xmin:.0f}-{d.pixel_box.xmax:.0f}  "
            f"y {d.pixel_box.ymin:.0f}-{d.pixel_box.ymax:.0f}"
            for d in response.detections  # type: ignore[attr-defined]
        ]

    return _each_image(args, call, show)


def _models(args: argparse.Namespace) -> int:
    response = _stub(args).ListModels(classify_pb2.ListModelsRequest(), timeout=args.timeout)
    if args.json:
        print(_as_json(response))
        return 0
    for m in response.models:
        kind = classify_pb2.ModelKind.Name(m.kind).removeprefix("MODEL_KIND_").lower()
        state = "ready" if m.ready else f"NOT READY: {m.status_message}"
        print(f"{m.name}: {kind}, version {m.version}, {m.label_count} labels, {state}")
    return 0


def _health(args: argparse.Namespace) -> int:
    """grpc.health.v1 Check; exit 0 only when SERVING (for container health checks)."""
    channel = grpc.insecure_channel(args.gateway)
    try:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
        )
    except grpc.RpcError as error:
        print(f"{error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(status)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


async def _describe(args: argparse.Namespace) -> int:
    ref = ModelRef(args.model, args.version, args.label or None, args.signature)
    async with UpstreamClient(UpstreamOptions(args.upstream, timeout_s=args.timeout)) as client:
        metadata = await client.metadata(ref)
        statuses = await client.status(ref)
    states = ", ".join(f"v{s.version} {s.state.name}" for s in statuses)
    print(f"model {metadata.name} version {metadata.version} ({states})")
    for name, sig in metadata.signatures.items():
        if name.startswith("__"):
            continue
        print(f"  signature {name} ({sig.method_name})")
        for kind, specs in (("input", sig.inputs), ("output", sig.outputs)):
            for alias, spec in specs.items():
                shape = "unknown rank" if spec.shape is None else list(spec.shape)
                print(f"    {kind:6} {alias}: {dtype_name(spec.dtype)} {shape}")
    return 0


# --- parser --------------------------------------------------------------------------------


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
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. Settings come from --config (TOML), then TFS_GATEWAY_* "
        "environment variables, then these flags.",
    )
    serve.add_argument("--config", type=Path, help="TOML config file (models, profiles, limits)")
    serve.add_argument("--upstream", help="TF Serving gRPC target (default localhost:8500)")
    serve.add_argument("--host", help="address to listen on (default [::])")
    serve.add_argument("--port", type=int, help="gRPC port (default 9000; 0: any free port)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus port (default 9100; -1: off)")
    serve.add_argument(
        "--http-port", type=int, help="HTTP API and web page (default 8080; -1: off)"
    )
    serve.add_argument("--max-in-flight", type=int, help="requests in flight before shedding")
    serve.add_argument(
        "--model",
        action="append",
        metavar="NAME[=LABELS]",
        help="serve this model (repeatable), optionally with a label file",
    )
    serve.set_defaults(run=_serve)

    classify = commands.add_parser("classify", help="classify images through the gateway")
    classify.add_argument("images", type=Path, nargs="+")
    _model_options(classify)
    classify.add_argument(
        "--top-k", type=int, default=0, help="labels per image (0: model default)"
    )
    classify.add_argument("--min-score", type=float, default=0.0)
    classify.add_argument("--json", action="store_true", help="one JSON response per line")
    _client_options(classify)
    classify.set_defaults(run=_classify)

    detect = commands.add_parser("detect", help="detect objects in images through the gateway")
    detect.add_argument("images", type=Path, nargs="+")
    _model_options(detect)
    detect.add_argument("--min-score", type=float, default=0.0)
    detect.add_argument("--max-detections", type=int, default=0)
    detect.add_argument("--json", action="store_true", help="one JSON response per line")
    _client_options(detect)
    detect.set_defaults(run=_detect)

    video_client.add_parser(commands)

    models = commands.add_parser("models", help="list the models the gateway serves")
    models.add_argument("--json", action="store_true")
    _client_options(models)
    models.set_defaults(run=_models)

    check = commands.add_parser("health", help="grpc.health.v1 check; exit 0 when SERVING")
    check.add_argument("--service", default="", help='"" (readiness), "liveness", "model/NAME"')
    _client_options(check)
    # In a container the check runs beside the server: default to its own port.
    check.set_defaults(
        run=_health, timeout=5.0, gateway=f"localhost:{os.environ.get('TFS_GATEWAY_PORT', 9000)}"
    )

    describe = commands.add_parser(
        "describe", help="ask TF Serving itself about a model (versions and signatures)"
    )
    describe.add_argument("model", help="model name in TF Serving")
    describe.add_argument("--upstream", default="localhost:8500", help="TF Serving gRPC target")
    version = describe.add_mutually_exclusive_group()
    version.add_argument("--version", type=int, help="a specific version (default: latest)")
    version.add_argument("--label", default="", help="a version label")
    describe.add_argument("--signature", default="")
    describe.add_argument("--timeout", type=float, default=10.0)
    describe.set_defaults(run=lambda a: asyncio.run(_describe(a)))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except GatewayError as error:
        print(f"tfs-gateway: {error.code.name}: {error.message}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        code, details = error.code(), error.details()  # type: ignore[attr-defined]
        print(f"tfs-gateway: {code.name}: {details}", file=sys.stderr)
        return 1
