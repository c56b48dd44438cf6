"""Call the gateway from Python with stubs generated from protos/classify.proto.

    python examples/classify_client.py IMAGE [MODEL] [--gateway localhost:9000]

In your own project, generate the stubs yourself:
    python -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. classify.proto
and import ``classify_pb2`` / ``classify_pb2_grpc`` instead of the gateway's copies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc

from gateway._proto import classify_pb2, classify_pb2_grpc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image", type=Path)
    parser.add_argument("model", nargs="?", default="colors")
    parser.add_argument("--gateway", default="localhost:9000")
    args = parser.parse_args()

    with grpc.insecure_channel(args.gateway) as channel:
        stub = classify_pb2_grpc.ImageGatewayStub(channel)
        request = classify_pb2.ClassifyRequest(
            model=classify_pb2.ModelRef(name=args.model),
            image=args.image.read_bytes(),
            top_k=3,
        )
        response = stub.Classify(request, timeout=10)
    print(f"{response.model.name} v{response.model.version}, {response.timings.total_ms:.1f} ms:")
    for c in response.classifications:
        print(f"  {c.label:10} {c.score:.4f}")


if __name__ == "__main__":
    main()
