"""ImageGateway's methods registered with their requests left as bytes.

protoc's ``add_ImageGatewayServicer_to_server`` parses each request before the servicer runs, so
a malformed message fails inside grpc: UNKNOWN, a traceback in the log, no metric. Registered
this way the servicer parses it inside its observed call (``parsing.parse``), and the caller gets
INVALID_ARGUMENT, counted under the method like any other bad request. Parsing moves; it does not
happen twice.

The methods that run a model (Classify, Detect, Analyze) are registered as client-streaming on
the server side — identical on the wire to unary — so the servicer takes its in-flight place
*before* it reads the message: a call that is shed never has its (up to ``max_message_bytes``)
message read, and the bytes being received are bounded by ``max_in_flight`` times that limit
(DECISIONS 24). A message not yet read waits in HTTP/2 flow control, not in the gateway's memory.
"""

from __future__ import annotations

import grpc
import grpc.aio
from google.protobuf.message import Message

from gateway._proto import classify_pb2
from gateway.transport.grpc_service import ImageGatewayServicer

SERVICE = classify_pb2.DESCRIPTOR.services_by_name["ImageGateway"]
ADMITTED_BEFORE_READING = frozenset({"Classify", "Detect", "Analyze"})


def _serialize(response: Message) -> bytes:
    return response.SerializeToString()


def add_image_gateway(servicer: ImageGatewayServicer, server: grpc.aio.Server) -> None:
    """Serve every ImageGateway method of the .proto; no request deserializer, so each method
    of the servicer receives its request (or each message of a stream) as bytes."""
    handlers: dict[str, grpc.RpcMethodHandler[bytes, Message]] = {}
    for method in SERVICE.methods:
        behaviour = getattr(servicer, method.name)
        if method.client_streaming:  # Stream, the one bidirectional method
            handler = grpc.stream_stream_rpc_method_handler(behaviour, None, _serialize)
        elif method.name in ADMITTED_BEFORE_READING:
            handler = grpc.stream_unary_rpc_method_handler(behaviour, None, _serialize)
        else:
            handler = grpc.unary_unary_rpc_method_handler(behaviour, None, _serialize)
        handlers[method.name] = handler
    generic = grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)
    server.add_generic_rpc_handlers((generic,))
    # As protoc's helper does: registered methods take grpc's faster path to their handler.
    server.add_registered_method_handlers(SERVICE.full_name, handlers)  # type: ignore[attr-defined]
