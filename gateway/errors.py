"""The gateway's exceptions, each carrying the gRPC status it maps to.

Every transport reads the status from here; none invents its own mapping.
"""

from __future__ import annotations

import grpc


class GatewayError(Exception):
    """Base of every error the gateway reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class UpstreamError(GatewayError):
    """An error status from TF Serving; it keeps the upstream's own code and message."""

    def __init__(self, code: grpc.StatusCode, details: str, method: str) -> None:
        super().__init__(f"upstream: {details}")
        self.code = code
        self.details = details
        self.method = method
