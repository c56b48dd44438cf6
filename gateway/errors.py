"""The gateway's exceptions and the one table that maps them to gRPC and HTTP statuses.

Each exception is raised where the failure happens, with a message a caller can act on; every
transport reads its status from here and invents no mapping of its own.
"""

from __future__ import annotations

import re
from http import HTTPStatus

import grpc

# HTTP status for each gRPC code a caller can see (DECISIONS.md, "Errors").
HTTP_STATUS: dict[grpc.StatusCode, HTTPStatus] = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.OUT_OF_RANGE: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
    grpc.StatusCode.CANCELLED: HTTPStatus.GATEWAY_TIMEOUT,
    grpc.StatusCode.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
    grpc.StatusCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}


class GatewayError(Exception):
    """Base of every error the gateway reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: HTTPStatus | None = None  # None: HTTP_STATUS[code]
    # When the caller may try again, in ms (gRPC's grpc-retry-pushback-ms trailer, HTTP's
    # Retry-After); None: the gateway does not say.
    retry_after_ms: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def http(self) -> HTTPStatus:
        return self.http_status or HTTP_STATUS.get(self.code, HTTPStatus.BAD_GATEWAY)

    @property
    def logged(self) -> str:
        """The message for the log (a subclass may tell the log more than the caller)."""
        return self.message


class InternalError(GatewayError):
    """A bug in the gateway: the caller gets an incident id, never a traceback."""

    code = grpc.StatusCode.INTERNAL


class InvalidImageError(GatewayError):
    """Not an image, a disallowed format, or truncated / corrupt data."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ImageTooLargeError(InvalidImageError):
    """The image's header declares more pixels than the gateway's limit."""


class InvalidRequestError(GatewayError):
    """A request field the gateway cannot use (no model name, no image ...)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class RequestTooLargeError(GatewayError):
    """A request or body over the gateway's byte limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class OverloadedError(GatewayError):
    """The gateway is at its in-flight limit and sheds the request; the caller may come back
    after ``retry_after_ms``."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class TooManyStreamsError(GatewayError):
    """The gateway is at its limit of open streams (``max_streams``)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class StreamIdleError(GatewayError):
    """A stream sent nothing (no options, or no frame while none was in flight) for
    ``stream_idle_timeout_s``."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ShuttingDownError(GatewayError):
    """The gateway's shutdown grace ran out before a stream had answered every frame it
    accepted; the message says how many it did not."""

    code = grpc.StatusCode.UNAVAILABLE


class MemoryBudgetError(OverloadedError):
    """The gateway's budget of decode memory in flight has no room for this image now."""


class ReceiveBudgetError(OverloadedError):
    """The gateway's budget of HTTP request bodies being received (and handled) has no room
    for this body now: shed before any of it is read."""


class DeadlineExceededError(GatewayError):
    """The caller's deadline passed before the gateway had an answer."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class BodyTimeoutError(GatewayError):
    """An HTTP body that did not arrive within the gateway's body timeout (a slow sender)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = HTTPStatus.REQUEST_TIMEOUT


class RouteNotFoundError(GatewayError):
    """An HTTP path the gateway does not serve."""

    code = grpc.StatusCode.NOT_FOUND


class MethodNotAllowedError(GatewayError):
    """An HTTP method a served path does not take."""

    code = grpc.StatusCode.UNIMPLEMENTED
    http_status = HTTPStatus.METHOD_NOT_ALLOWED


class ConnectionLimitError(GatewayError):
    """An HTTP listener at its limit of open connections: the new one is answered and closed."""

    code = grpc.StatusCode.UNAVAILABLE


class ModelNotFoundError(GatewayError):
    """An unknown model, version or version label."""

    code = grpc.StatusCode.NOT_FOUND


class ModelNotReadyError(GatewayError):
    """A configured model whose signature the gateway could not get from TF Serving yet."""

    code = grpc.StatusCode.UNAVAILABLE


class WrongModelKindError(GatewayError):
    """Classify on a detection model, or the reverse."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ProfileError(GatewayError):
    """A model whose signature the gateway cannot build a preprocessing profile for."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class MalformedTensorError(GatewayError):
    """A TensorProto that cannot be turned into an array (bad shape, wrong byte count)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class UnsupportedDtypeError(GatewayError):
    """A tensor dtype the gateway does not convert (complex, quantised, resource, variant)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class SignatureNotFoundError(GatewayError):
    """The model has no signature of the requested name."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UpstreamProtocolError(GatewayError):
    """TF Serving answered with something the gateway cannot interpret."""

    code = grpc.StatusCode.INTERNAL
    http_status = HTTPStatus.BAD_GATEWAY


# Where TF Serving lives is not the caller's business (issue 14): gRPC names the addresses it
# tried ("ipv4:10.0.0.5:8500"), aiohttp the host it could not reach. The caller is told what
# happened; the log keeps the address, with the call's request id.
_UNREACHABLE = (
    "failed to connect to all addresses", "dns resolution failed", "connection refused",
    "cannot connect to", "connect call failed", "connections to all backends failing",
)  # fmt: skip
_ADDRESS = re.compile(
    r"\b(?:ipv4|ipv6|unix|unix-abstract|dns|https?):[^\s,;)]+"  # gRPC's and URLs
    r"|\[[0-9a-fA-F.]*:[0-9a-fA-F:.]*\](?::\d+)?"  # [v6]:port (a colon inside, not arg[0])
    r"|\b(?:localhost|[\w-]+(?:\.[\w-]+)+):\d{1,5}\b"  # host.name:port, 10.0.0.5:8500
)


def without_addresses(details: str) -> str:
    """TF Serving's error text as a caller may see it: no host, address or port in it."""
    if any(sign in details.lower() for sign in _UNREACHABLE):
        return "cannot connect to TF Serving"
    return _ADDRESS.sub("<address>", details)


class UpstreamError(GatewayError):
    """An error status from TF Serving; it keeps the upstream's own code, and its message
    without addresses (``details`` keeps them, for the log)."""

    def __init__(self, code: grpc.StatusCode, details: str, method: str) -> None:
        super().__init__(f"upstream: {without_addresses(details)}")
        self.code = code
        self.details = details
        self.method = method

    @property
    def logged(self) -> str:
        """The whole story, addresses included: for the log, never for a caller."""
        return f"upstream: {self.details}"

    def with_request_id(self, request_id: str) -> UpstreamError:
        """The same error, its message naming the request id its log line carries."""
        error = UpstreamError(self.code, self.details, self.method)
        error.message = f"{self.message} (request id {request_id})"
        error.args = (error.message,)
        return error

    @property
    def http(self) -> HTTPStatus:
        return HTTP_STATUS.get(self.code, HTTPStatus.BAD_GATEWAY)


def for_caller(error: UpstreamError, model: str) -> GatewayError:
    """What a caller sees of a TF Serving error on a Predict for ``model``.

    TF Serving answers an unknown version label with INVALID_ARGUMENT; callers get NOT_FOUND
    like for any unknown version. Any other INVALID_ARGUMENT means the tensor the gateway built
    does not fit the model (it checks the signature first), so the message says so.
    """
    if error.details.startswith("Unrecognized servable version label"):
        return ModelNotFoundError(error.message)
    if error.code == grpc.StatusCode.INVALID_ARGUMENT:
        return UpstreamError(
            error.code,
            f"{error.details} (the tensor built from model {model!r}'s preprocessing profile "
            "does not match what TF Serving expects: check the profile)",
            error.method,
        )
    return error
