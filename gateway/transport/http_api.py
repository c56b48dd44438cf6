"""The HTTP/JSON front and the web page, served by the gateway process on its own port.

It runs on the gateway's event loop and calls the same data plane as gRPC: no second
implementation. Responses are the gRPC response messages in protobuf's JSON mapping, so the two
APIs cannot drift; errors are ``{"error": {"code", "message"}}`` with the HTTP status from
``gateway/errors.py``'s table.

    GET  /, /page.js, /page.css         the upload page, its script and style
    GET  /openapi.json                  this API, described
    GET  /healthz, /readyz              liveness, readiness
    GET  /v1/models, /v1/models/NAME    ListModels, DescribeModel
    POST /v1/models/NAME:classify       Classify   (image as the raw body, or multipart "image")
    POST /v1/models/NAME:detect         Detect
    POST /v1/models/NAME:annotate       the annotated image itself (JPEG or PNG)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway._proto import classify_pb2
from gateway.calls import Call, Calls
from gateway.choices import ModelKind
from gateway.config import GatewayConfig
from gateway.dataplane import DataPlane
from gateway.errors import (
    BodyTimeoutError,
    DeadlineExceededError,
    GatewayError,
    MethodNotAllowedError,
    RouteNotFoundError,
    WrongModelKindError,
)
from gateway.inference import ImageRequest
from gateway.memory_budget import Reservation
from gateway.transport import convert
from gateway.transport.http_headers import add_security_headers
from gateway.transport.http_request import body_bytes, caller_timeout, image_request, read_image
from gateway.transport.listener import retry_after_s

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CallHandler = Callable[[web.Request, Call], Awaitable[web.StreamResponse]]
ImageHandler = Callable[[ImageRequest, Call], Awaitable[web.StreamResponse]]
_NAME = "{name:[^/:]+}"
_SHED = (429, 503)  # statuses that tell the caller to come back later
# The page and its files (no inline script or style: the Content-Security-Policy forbids it).
_PAGE_FILES = {
    "/": ("index.html", "text/html"),
    "/page.js": ("page.js", "text/javascript"),
    "/page.css": ("page.css", "text/css"),
}


def _json(message: Message, status: int = 200) -> web.Response:
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return web.json_response(body, status=status)


def _error(error: GatewayError, retry_after_ms: int = 1000) -> web.Response:
    body = {"error": {"code": error.code.name, "message": error.message}}
    response = web.json_response(body, status=error.http)
    if error.http in _SHED:  # a shed call's own pushback (gRPC sends the same), else the config's
        pushback = retry_after_ms if error.retry_after_ms is None else error.retry_after_ms
        response.headers["Retry-After"] = str(retry_after_s(pushback))
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods answered in the API's error format, like every other error."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(RouteNotFoundError(f"no such path: {request.path}"))
    except web.HTTPMethodNotAllowed as refused:
        allowed = ", ".join(sorted(refused.allowed_methods))
        error = MethodNotAllowedError(f"{request.path} takes {allowed}, not {request.method}")
        response = _error(error)
        response.headers["Allow"] = allowed
        return response


@contextlib.asynccontextmanager
async def _until(when: float | None, error: Callable[[], GatewayError]) -> AsyncIterator[None]:
    """Run the body until the loop time ``when`` (None: no limit); past it, raise ``error()``."""
    scope = asyncio.timeout_at(when)
    try:
        async with scope:
            yield
    except TimeoutError:
        if scope.expired():
            raise error() from None
        raise


class HttpFront:
    def __init__(
        self,
        dataplane: DataPlane,
        calls: Calls,
        ready: Callable[[], bool],
        settings: Callable[[], GatewayConfig],
    ) -> None:
        self.dataplane = dataplane
        self.calls = calls
        self.ready = ready
        self.settings = settings  # the config in force (a reload replaces it)

    def _answer(self, error: GatewayError) -> web.Response:
        return _error(error, self.settings().retry_after_ms)

    def observed(self, method: str, handler: CallHandler) -> Handler:
        """A handler that holds no in-flight place, as one observed call (method label
        ``http.<RPC>``); its error, if any, answered as ``{"error": {"code", "message"}}``
        with the table's HTTP status."""

        async def run(request: web.Request) -> web.StreamResponse:
            model, request_id = (
                request.match_info.get("name", ""),
                request.query.get("request_id", ""),
            )
            with self.calls.observe(f"http.{method}", model, request_id) as call:
                return await handler(request, call)
            assert call.error is not None  # the body returned, or its error was kept
            return self._answer(call.error)

        return run

    def observed_image(self, method: str, handler: ImageHandler, **extra: str) -> Handler:
        """An inference route as one observed call. The body is read first, bounded in bytes
        and time, and only then is an in-flight place taken: a slow sender holds a
        connection, never a place another caller needs. Before it is read, the bytes it may
        take are held against the gateway-wide receive budget until the call ends (shed at
        once if they do not fit). The caller's timeout, if any, bounds both and is passed on
        to the data plane like a gRPC deadline."""

        async def run(request: web.Request) -> web.StreamResponse:
            loop = asyncio.get_running_loop()
            model, request_id = request.match_info["name"], request.query.get("request_id", "")
            with self.calls.observe(f"http.{method}", model, request_id) as call:
                timeout = caller_timeout(request)
                deadline = None if timeout is None else loop.time() + timeout
                with self._hold_body(request) as held:
                    image, options = await self._read_body(request, timeout, deadline)
                    held.keep(len(image) + sum(len(value) for value in options.values()))
                    call.request_id = options.get("request_id", "")
                    remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
                    request_ = image_request(model, image, {**options, **extra}, remaining)
                    with self.calls.admitted():
                        async with _until(deadline, lambda: _deadline_passed(timeout)):
                            return await handler(request_, call)
            assert call.error is not None
            return self._answer(call.error)

        return run

    def _hold_body(self, request: web.Request) -> Reservation:
        """The bytes this body may take (see ``body_bytes``), held against
        ``max_receive_bytes_in_flight``; or ReceiveBudgetError, before any of it is read."""
        return self.calls.receiving_request(body_bytes(request, self.settings().max_message_bytes))

    async def _read_body(
        self, request: web.Request, timeout: float | None, deadline: float | None
    ) -> tuple[bytes, dict[str, str]]:
        settings = self.settings()
        body_timeout = settings.http_body_timeout_s
        body_deadline = asyncio.get_running_loop().time() + body_timeout

        def error() -> GatewayError:
            if deadline is not None and deadline <= body_deadline:
                return _deadline_passed(timeout)
            return BodyTimeoutError(f"the request body did not arrive within {body_timeout:g} s")

        when = body_deadline if deadline is None else min(deadline, body_deadline)
        async with _until(when, error):
            return await read_image(
                request, settings.max_message_bytes, settings.max_multipart_fields
            )
        raise AssertionError("unreachable: the body returns or raises")

    async def classify(self, image_request: ImageRequest, call: Call) -> web.Response:
        result = await self.dataplane.classify(image_request)
        return _json(convert.classify_response(call.request_id, result))

    async def detect(self, image_request: ImageRequest, call: Call) -> web.Response:
        result = await self.dataplane.detect(image_request)
        return _json(convert.detect_response(call.request_id, result))

    async def annotate(self, image_request: ImageRequest, call: Call) -> web.Response:
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
        name, content_type = _PAGE_FILES[request.path]
        text = resources.files("gateway").joinpath(f"static/{name}").read_text()
        return web.Response(text=text, content_type=content_type)

    async def openapi(self, request: web.Request) -> web.Response:
        doc = json.loads(resources.files("gateway").joinpath("static/openapi.json").read_text())
        return web.json_response(doc)


def _deadline_passed(timeout: float | None) -> DeadlineExceededError:
    return DeadlineExceededError(f"the caller's timeout of {timeout:g} s passed")


def create_app(
    dataplane: DataPlane,
    calls: Calls,
    ready: Callable[[], bool],
    settings: Callable[[], GatewayConfig],
) -> web.Application:
    front = HttpFront(dataplane, calls, ready, settings)
    # The body limit is enforced by the routes (raw bodies and multipart forms alike).
    app = web.Application(client_max_size=settings().max_message_bytes, middlewares=[json_errors])
    observed, image = front.observed, front.observed_image
    model = f"/v1/models/{_NAME}"
    app.add_routes(
        [
            *(web.get(path, front.page) for path in _PAGE_FILES),
            web.get("/openapi.json", front.openapi),
            web.get("/healthz", front.healthz),
            web.get("/readyz", front.readyz),
            web.get("/v1/models", observed("ListModels", front.list_models)),
            web.get(model, observed("DescribeModel", front.describe_model)),
            web.post(f"{model}:classify", image("Classify", front.classify)),
            web.post(f"{model}:detect", image("Detect", front.detect)),
            web.post(f"{model}:annotate", image("Annotate", front.annotate, annotate="true")),
        ]
    )
    return add_security_headers(app)
