"""The HTTP/JSON front and the web page, served by the gateway process on its own port.

It runs on the gateway's event loop and calls the same data plane as gRPC: no second
implementation. Responses are the gRPC response messages in protobuf's JSON mapping, so the two
APIs cannot drift; errors are ``{"error": {"code", "message"}}`` with the HTTP status from
``gateway/errors.py``'s table.

    GET  /                              the upload page
    GET  /openapi.json                  this API, described
    GET  /healthz, /readyz              liveness, readiness
    GET  /v1/models, /v1/models/NAME    ListModels, DescribeModel
    POST /v1/models/NAME:classify       Classify   (image as the raw body, or multipart "image")
    POST /v1/models/NAME:detect         Detect
    POST /v1/models/NAME:annotate       the annotated image itself (JPEG or PNG)
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway._proto import classify_pb2
from gateway.calls import Call, Calls
from gateway.choices import ModelKind
from gateway.dataplane import DataPlane
from gateway.drawing import AnnotateSpec
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    RequestTooLargeError,
    WrongModelKindError,
)
from gateway.inference import ImageRequest, Task
from gateway.tfserving.signatures import ModelRef
from gateway.transport import convert

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CallHandler = Callable[[web.Request, Call], Awaitable[web.StreamResponse]]
_NAME = "{name:[^/:]+}"


def _json(message: Message, status: int = 200) -> web.Response:
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return web.json_response(body, status=status)


def _error(error: GatewayError) -> web.Response:
    body = {"error": {"code": error.code.name, "message": error.message}}
    return web.json_response(body, status=error.http)


def _number(options: dict[str, str], name: str, kind: type, default: Any) -> Any:
    if name not in options or options[name] == "":
        return default
    try:
        return kind(options[name])
    except ValueError:
        raise InvalidRequestError(
            f"{name} must be a {kind.__name__}, got {options[name]!r}"
        ) from None


async def _read_image(request: web.Request, limit: int) -> tuple[bytes, dict[str, str]]:
    """The image and the options, from a raw body or a multipart form (options may be in the
    query string either way)."""
    options = dict(request.query)
    try:
        if request.content_type == "multipart/form-data":
            image = b""
            form = await request.post()
            for key, value in form.items():
                if key == "image":
                    image = value.file.read() if hasattr(value, "file") else str(value).encode()
                else:
                    options[key] = str(value)
            return image, options
        return await request.read(), options
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLargeError(
            f"the request body is over the gateway's limit of {limit} bytes"
        ) from None


def _image_request(
    name: str, image: bytes, options: dict[str, str], timeout: float | None
) -> ImageRequest:
    version = _number(options, "version", int, None)
    label = options.get("label") or None
    annotate = options.get("annotate", "").lower() in ("1", "true", "yes")
    task = Task(
        model=ModelRef(name, version, label, options.get("signature", "")),
        top_k=_number(options, "top_k", int, 0),
        min_score=_number(options, "min_score", float, 0.0),
        max_detections=_number(options, "max_detections", int, 0),
        annotate=AnnotateSpec(
            png=options.get("format", "").lower() == "png",
            jpeg_quality=_number(options, "quality", int, 0),
        )
        if annotate
        else None,
    )
    return ImageRequest(task, image, timeout)


class HttpFront:
    def __init__(
        self, dataplane: DataPlane, calls: Calls, ready: Callable[[], bool], max_body_bytes: int
    ) -> None:
        self.dataplane = dataplane
        self.calls = calls
        self.max_body_bytes = max_body_bytes
        self.ready = ready

    def observed(self, method: str, handler: CallHandler, admit: bool = True) -> Handler:
        """The handler as one observed call (method label ``http.<RPC>``); its error, if any,
        answered as ``{"error": {"code", "message"}}`` with the table's HTTP status."""

        async def run(request: web.Request) -> web.StreamResponse:
            model = request.match_info.get("name", "")
            request_id = request.query.get("request_id", "")
            admission = self.calls.admitted() if admit else contextlib.nullcontext()
            with self.calls.observe(f"http.{method}", model, request_id) as call, admission:
                return await handler(request, call)
            assert call.error is not None  # the body returned, or its error was kept
            return _error(call.error)

        return run

    async def _read_request(self, request: web.Request, call: Call, **extra: str) -> ImageRequest:
        image, options = await _read_image(request, self.max_body_bytes)
        call.request_id = options.get("request_id", "")
        return _image_request(request.match_info["name"], image, {**options, **extra}, None)

    async def classify(self, request: web.Request, call: Call) -> web.Response:
        result = await self.dataplane.classify(await self._read_request(request, call))
        return _json(convert.classify_response(call.request_id, result))

    async def detect(self, request: web.Request, call: Call) -> web.Response:
        result = await self.dataplane.detect(await self._read_request(request, call))
        return _json(convert.detect_response(call.request_id, result))

    async def annotate(self, request: web.Request, call: Call) -> web.Response:
        image_request = await self._read_request(request, call, annotate="true")
        name = image_request.task.model.name
        binding = self.dataplane.model(name).binding(image_request.task.model.signature_name)
        if binding.outputs.kind == ModelKind.DETECTION:
            result = await self.dataplane.detect(image_request)
        else:
            result = await self.dataplane.classify(image_request)
        if result.annotated is None:  # pragma: no cover - annotate was requested
            raise WrongModelKindError(f"model {name!r} returned no annotated image")
        return web.Response(body=result.annotated.data, content_type=result.annotated.mime_type)

    async def list_models(self, request: web.Request, call: Call) -> web.Response:
        models = [convert.model_info(m) for m in self.dataplane.models.values()]
        return _json(classify_pb2.ListModelsResponse(models=models))

    async def describe_model(self, request: web.Request, call: Call) -> web.Response:
        return _json(convert.model_info(self.dataplane.model(request.match_info["name"])))

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = self.ready()
        return web.json_response(
            {"status": "SERVING" if ready else "NOT_SERVING"}, status=200 if ready else 503
        )

    async def page(self, request: web.Request) -> web.Response:
        html = resources.files("gateway").joinpath("static/index.html").read_text()
        return web.Response(text=html, content_type="text/html")

    async def openapi(self, request: web.Request) -> web.Response:
        doc = json.loads(resources.files("gateway").joinpath("static/openapi.json").read_text())
        return web.json_response(doc)


def create_app(
    dataplane: DataPlane, calls: Calls, ready: Callable[[], bool], max_body_bytes: int
) -> web.Application:
    front = HttpFront(dataplane, calls, ready, max_body_bytes)
    app = web.Application(client_max_size=max_body_bytes)
    observed = front.observed
    model = f"/v1/models/{_NAME}"
    app.add_routes(
        [
            web.get("/", front.page),
            web.get("/openapi.json", front.openapi),
            web.get("/healthz", front.healthz),
            web.get("/readyz", front.readyz),
            web.get("/v1/models", observed("ListModels", front.list_models, admit=False)),
            web.get(model, observed("DescribeModel", front.describe_model, admit=False)),
            web.post(f"{model}:classify", observed("Classify", front.classify)),
            web.post(f"{model}:detect", observed("Detect", front.detect)),
            web.post(f"{model}:annotate", observed("Annotate", front.annotate)),
        ]
    )
    return app


def _dual_stack_socket(port: int) -> socket.socket:
    """One socket for IPv4 and IPv6 on every interface. (asyncio would make "::" IPv6-only,
    and with port 0 bind the two families to two different ports.)"""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[str, int] = ("::", port)
    except OSError:  # no IPv6 on this host
        sock, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    return sock


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    # A caller that hangs up cancels its work (decode, the Predict), as a gRPC cancel does.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    bare = host.strip("[]")
    if bare in ("", "::", "0.0.0.0"):
        sock = _dual_stack_socket(port)
        site: web.BaseSite = web.SockSite(runner, sock)
        port = sock.getsockname()[1]
    else:
        site = web.TCPSite(runner, bare, port)
    await site.start()
    if port == 0:  # a named host with port 0: ask the listening socket
        port = runner.addresses[0][1]
    return runner, port
