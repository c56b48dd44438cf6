"""``tfs-gateway``: the command line. For now it inspects a model through TF Serving's API;
the gateway server and its client commands join it here."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from gateway import __version__
from gateway.errors import GatewayError
from gateway.tensors import dtype_name
from gateway.upstream import ModelRef, Signature, UpstreamClient, UpstreamOptions


def _model_ref(args: argparse.Namespace) -> ModelRef:
    return ModelRef(
        args.model, version=args.version, version_label=args.label, signature_name=args.signature
    )


def _shape(shape: tuple[int, ...] | None) -> str:
    return "unknown rank" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def _signature_dict(signature: Signature) -> dict[str, object]:
    def side(specs: object) -> dict[str, object]:
        return {
            alias: {"dtype": dtype_name(spec.dtype), "shape": spec.shape}
            for alias, spec in specs.items()  # type: ignore[attr-defined]
        }

    return {
        "method_name": signature.method_name,
        "inputs": side(signature.inputs),
        "outputs": side(signature.outputs),
    }


async def _describe(args: argparse.Namespace) -> int:
    ref = _model_ref(args)
    async with UpstreamClient(UpstreamOptions(args.upstream, timeout_s=args.timeout)) as client:
        metadata = await client.metadata(ref)
        statuses = await client.status(ref)
    signatures = {
        name: _signature_dict(sig)
        for name, sig in metadata.signatures.items()
        if not name.startswith("__")
    }
    if args.json:
        report = {
            "model": metadata.name,
            "version": metadata.version,
            "versions": {s.version: s.state.name for s in statuses},
            "signatures": signatures,
        }
        print(json.dumps(report, indent=2))
        return 0
    states = ", ".join(f"v{s.version} {s.state.name}" for s in statuses)
    print(f"model {metadata.name} version {metadata.version} ({states})")
    for name, sig in signatures.items():
        print(f"  signature {name} ({sig['method_name']})")
        for kind in ("inputs", "outputs"):
            for alias, spec in sig[kind].items():  # type: ignore[attr-defined]
                print(f"    {kind[:-1]:6} {alias}: {spec['dtype']} {_shape(spec['shape'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfs-gateway",
        description="An image gateway in front of TensorFlow Serving.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    describe = commands.add_parser(
        "describe",
        help="show a model's versions and signatures as TF Serving reports them",
        description="Ask TF Serving (GetModelMetadata, GetModelStatus) about one model.",
    )
    describe.add_argument("model", help="model name in TF Serving")
    describe.add_argument(
        "--upstream", default="localhost:8500", help="TF Serving gRPC target (host:port)"
    )
    choice = describe.add_mutually_exclusive_group()
    choice.add_argument("--version", type=int, help="a specific version (default: latest)")
    choice.add_argument("--label", help="a version label, e.g. stable")
    describe.add_argument("--signature", default="", help="signature (default: serving_default)")
    describe.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")
    describe.add_argument("--json", action="store_true", help="print JSON")
    describe.set_defaults(run=_describe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(args.run(args))
    except GatewayError as error:
        print(f"tfs-gateway: {error.code.name}: {error.message}", file=sys.stderr)
        return 1
