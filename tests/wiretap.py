"""A byte-for-byte gRPC proxy between the gateway and the test server that records what the
gateway sends (request bytes, method, the deadline it carried). It changes nothing: the real
test server answers every call."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class Call:
    method: str
    request: bytes
    time_remaining: float | None


class Wiretap(grpc.GenericRpcHandler):
    def __init__(self, upstream: str) -> None:
        self._channel = grpc.insecure_channel(
            upstream,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0  # calls the gateway gave up on while TF Serving was working
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16),
            handlers=[self],
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        forward = self._channel.unary_unary(details.method)

        def behaviour(request: bytes, context: grpc.ServicerContext) -> bytes | None:
            remaining = context.time_remaining()
            with self._lock:
                self.calls.append(Call(details.method, request, remaining))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                future = forward.future(request, timeout=remaining)
                while True:
                    try:
                        return future.result(timeout=0.02)
                    except grpc.FutureTimeoutError:
                        if not context.is_active():  # the caller cancelled: pass it on
                            future.cancel()
                            with self._lock:
                                self.cancelled += 1
                            return None
            except grpc.RpcError as error:
                context.abort(error.code(), error.details())
                raise
            finally:
                with self._lock:
                    self.in_flight -= 1

        return grpc.unary_unary_rpc_method_handler(behaviour)

    def predict_requests(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method.endswith("/Predict")]

    def reset_counts(self) -> None:
        with self._lock:
            self.max_in_flight = self.in_flight
            self.cancelled = 0

    def stop(self) -> None:
        self._server.stop(grace=1).wait()
        self._channel.close()
