"""TF Serving's REST API over the same registry and Predict path as the gRPC services:

    GET  /v1/models/NAME[/versions/N | /labels/L]            model status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signatures
    POST /v1/models/NAME[/versions/N | /labels/L]:predict    {"instances": …} or {"inputs": …}

Binary values travel as ``{"b64": "…"}``; errors as ``{"error": "…"}`` with TF Serving's HTTP
status for the gRPC code.
"""

from __future__ import annotations

import base64
import json
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from testserver import predict
from testserver.registry import ModelRegistry, ServingError

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:predict)?$"
)
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.OUT_OF_RANGE: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: HTTPStatus.CONFLICT,
    grpc.StatusCode.ABORTED: HTTPStatus.CONFLICT,
    grpc.StatusCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    grpc.StatusCode.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
}
MAX_BODY_BYTES = 256 * 1024 * 1024


def _bad(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _decode_value(value: Any) -> Any:
    """Replace every {"b64": …} with its bytes, recursively."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        raise _bad('JSON object in a tensor value must be {"b64": ...}')
    if isinstance(value, list):
        return [_decode_value(item) for item in value]
    return value


def _to_tensor(value: Any, info: Any) -> Any:
    dtype = tf.as_dtype(info.dtype)
    array = np.asarray(
        _decode_value(value), dtype=object if dtype == tf.string else dtype.as_numpy_dtype
    )
    return tf.make_tensor_proto(array, dtype=dtype)


def _encode_value(alias: str, array: np.ndarray) -> Any:
    if array.dtype.kind in "OS":
        if alias.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(
                array
            ).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()


class _Handler(BaseHTTPRequestHandler):
    registry: ModelRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _spec(self) -> tuple[model_pb2.ModelSpec, str]:
        match = _PATH.match(self.path)
        if match is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {self.path}")
        spec = model_pb2.ModelSpec(name=match["name"])
        if match["version"]:
            spec.version.value = int(match["version"])
        elif match["label"]:
            spec.version_label = match["label"]
        return spec, match["verb"] or ""

    def _handle(self, method: str) -> None:
        try:
            spec, verb = self._spec()
            self._reply(HTTPStatus.OK, self._dispatch(method, spec, verb))
        except ServingError as error:
            status = _HTTP_STATUS.get(error.code, HTTPStatus.INTERNAL_SERVER_ERROR)
            self._reply(status, {"error": error.message})
        except (ValueError, TypeError) as error:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"Malformed request: {error}"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _dispatch(self, method: str, spec: model_pb2.ModelSpec, verb: str) -> dict[str, Any]:
        if method == "GET" and verb == "":
            response = get_model_status_pb2.GetModelStatusResponse()
            for version in self.registry.versions_for_status(spec):
                item = response.model_version_status.add(version=version.version)
                item.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return json_format.MessageToDict(response, preserving_proto_field_name=True)
        if method == "GET" and verb == "/metadata":
            _, version = self.registry.resolve(spec)
            signatures = {
                name: json_format.MessageToDict(sig, preserving_proto_field_name=True)
                for name, sig in version.signature_defs.items()
            }
            return {
                "model_spec": {
                    "name": spec.name,
                    "signature_name": "",
                    "version": str(version.version),
                },
                "metadata": {"signature_def": {"signature_def": signatures}},
            }
        if method == "POST" and verb == ":predict":
            return self._predict(spec)
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {self.path}")

    def _predict(self, spec: model_pb2.ModelSpec) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, "request body too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as error:
            raise _bad(f"JSON Parse error: {error}") from None
        if not isinstance(body, dict):
            raise _bad("JSON Value: not an object")
        _, version = self.registry.resolve(spec)
        signature_name = body.get("signature_name") or predict.DEFAULT_SIGNATURE
        signature = version.signature_defs.get(signature_name)
        if signature is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{signature_name}" not found.',
            )
        row_format = "instances" in body
        if row_format == ("inputs" in body):
            raise _bad("Missing 'inputs' or 'instances' key")
        raw = body["instances"] if row_format else body["inputs"]
        if row_format and raw and isinstance(raw[0], dict) and set(raw[0]) != {"b64"}:
            raw = {name: [row[name] for row in raw] for name in raw[0]}
        if not isinstance(raw, dict) or set(raw) == {"b64"}:
            if len(signature.inputs) != 1:
                raise _bad("one unnamed input given, the signature has several")
            raw = {next(iter(signature.inputs)): raw}
        unknown = sorted(set(raw) - set(signature.inputs))
        if unknown:
            raise _bad(
                f"input tensor alias not found in signature: {unknown[0]}. "
                f"Inputs expected to be in the set {{{','.join(sorted(signature.inputs))}}}."
            )
        tensors = {name: _to_tensor(value, signature.inputs[name]) for name, value in raw.items()}
        outputs = predict.run(version, signature_name, tensors, [])
        encoded = {alias: _encode_value(alias, array) for alias, array in outputs.items()}
        if row_format:
            batch = len(next(iter(encoded.values())))
            if len(encoded) == 1:
                return {"predictions": next(iter(encoded.values()))}
            return {"predictions": [{a: v[i] for a, v in encoded.items()} for i in range(batch)]}
        return {"outputs": next(iter(encoded.values())) if len(encoded) == 1 else encoded}


def create_rest_server(registry: ModelRegistry, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"registry": registry})
    return ThreadingHTTPServer((host, port), handler)
