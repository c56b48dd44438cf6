"""The client commands: call a running gateway (``classify``, ``detect``, ``models``,
``health``) or ask TF Serving itself about a model (``describe``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto import classify_pb2, classify_pb2_grpc
from gateway.tfserving.client import UpstreamClient
from gateway.tfserving.options import UpstreamOptions
from gateway.tfserving.signatures import ModelRef
from gateway.tfserving.tensors import dtype_name

GATEWAY_DEFAULT = "localhost:9000"


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


def _as_json(message: Message) -> str:
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


def classify(args: argparse.Namespace) -> int:
    stub = _stub(args)

    def call(path: Path) -> Message:
        request = classify_pb2.ClassifyRequest(
            model=_model(args), image=path.read_bytes(), top_k=args.top_k,
            min_score=args.min_score, request_id=str(path),
        )  # fmt: skip
        response: classify_pb2.ClassifyResponse = stub.Classify(request, timeout=args.timeout)
        return response

    def show(response: Message) -> list[str]:
        return [
            f"{c.score:8.4f}  {c.label or '-'} (class {c.class_id})"
            for c in response.classifications  # type: ignore[attr-defined]
        ]

    return _each_image(args, call, show)


def detect(args: argparse.Namespace) -> int:
    stub = _stub(args)

    def call(path: Path) -> Message:
        request = classify_pb2.DetectRequest(
            model=_model(args), image=path.read_bytes(), min_score=args.min_score,
            max_detections=args.max_detections, request_id=str(path),
        )  # fmt: skip
        response: classify_pb2.DetectResponse = stub.Detect(request, timeout=args.timeout)
        return response

    def show(response: Message) -> list[str]:
        return [
            f"{d.score:8.4f}  {d.label or '-'} (class {d.class_id})  "
            f"x {d.pixel_box.xmin:.0f}-{d.pixel_box.xmax:.0f}  "
            f"y {d.pixel_box.ymin:.0f}-{d.pixel_box.ymax:.0f}"
            for d in response.detections  # type: ignore[attr-defined]
        ]

    return _each_image(args, call, show)


def models(args: argparse.Namespace) -> int:
    response = _stub(args).ListModels(classify_pb2.ListModelsRequest(), timeout=args.timeout)
    if args.json:
        print(_as_json(response))
        return 0
    for m in response.models:
        kind = classify_pb2.ModelKind.Name(m.kind).removeprefix("MODEL_KIND_").lower()
        state = "ready" if m.ready else f"NOT READY: {m.status_message}"
        print(f"{m.name}: {kind}, version {m.version}, {m.label_count} labels, {state}")
    return 0


def health(args: argparse.Namespace) -> int:
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


async def describe(args: argparse.Namespace) -> int:
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
