"""TF Serving over its REST API, for deployments where only the REST port is reachable:
``/v1/models/NAME[/versions/N|/labels/L]`` with ``:predict`` (columnar ``{"inputs": …}``,
binary as ``{"b64": …}``), ``/metadata`` and status, through aiohttp's client.

It offers what the data plane needs of any upstream (``gateway.tfserving.client.Upstream``). Float
images travel as JSON numbers here, which costs far more than gRPC's raw bytes
(``bench/upstream_bench.py`` measures it); prefer gRPC wherever it is reachable.
TF Serving's REST responses do not say which version served: the version reported is the one
asked for, or else the latest the gateway knows from the metadata.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp
import grpc
import numpy as np
from google.protobuf import json_format

from gateway._proto.tfserving import get_model_metadata_pb2, get_model_status_pb2
from gateway.errors import UpstreamError, UpstreamProtocolError
from gateway.tfserving.signatures import (
    DEFAULT_SIGNATURE,
    ModelMetadata,
    ModelRef,
    Prediction,
    VersionStatus,
    signature_from_proto,
    version_statuses,
)
from gateway.tfserving.tensors import DataType, numpy_dtype

_GRPC_CODE_FOR_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclass
class RetryPolicy:
    """Retries of UNAVAILABLE for the REST upstream, with the same defaults as the gRPC
    channel's service config: 3 attempts, 20 ms doubling backoff up to 0.5 s, and a token
    budget (a failure costs 1, a success earns 0.1; retries stop below half of 10 tokens)."""

    attempts: int = 3
    initial_backoff_s: float = 0.02
    max_backoff_s: float = 0.5
    max_tokens: float = 10.0
    token_ratio: float = 0.1
    tokens: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.max_tokens

    def succeeded(self) -> None:
        self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    def failed(self) -> bool:
        """Record a failure; True when a retry is still within the budget."""
        self.tokens = max(0.0, self.tokens - 1)
        return self.tokens > self.max_tokens / 2

    def backoff(self, attempt: int) -> float:
        """The pause before retry number ``attempt + 1``: the first waits up to the initial
        backoff, as in gRPC's retry design (A6)."""
        return random.uniform(0, min(self.max_backoff_s, self.initial_backoff_s * 2**attempt))


def _path(model: ModelRef) -> str:
    path = f"/v1/models/{model.name}"
    if model.version is not None:
        path += f"/versions/{model.version}"
    elif model.version_label is not None:
        path += f"/labels/{model.version_label}"
    return path


def _json_value(array: np.ndarray) -> Any:
    if array.dtype.kind in "OS":
        return np.vectorize(
            lambda item: {"b64": base64.b64encode(item).decode("ascii")}, otypes=[object]
        )(array).tolist()
    return array.tolist()


def _from_b64(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_b64(item) for item in value]
    return value


def _first_leaf(value: Any) -> Any:
    while isinstance(value, list) and value:
        value = value[0]
    return value


def _array(value: Any) -> np.ndarray:
    """A JSON output (nested lists, ``{"b64": …}`` for binary strings) as an array."""
    decoded = _from_b64(value)
    if isinstance(_first_leaf(decoded), bytes):
        return np.array(decoded, dtype=object)
    return np.asarray(decoded)


class RestUpstream:
    def __init__(
        self, base_url: str, timeout_s: float = 30.0, retry: RetryPolicy | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._session: aiohttp.ClientSession | None = None
        self._outputs: dict[tuple[str, str], list[str]] = {}
        self._latest: dict[str, int] = {}

    async def _request(
        self, method: str, path: str, body: bytes | None, timeout: float | None
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        deadline = time.monotonic() + (
            self.timeout_s if timeout is None else min(timeout, self.timeout_s)
        )
        attempt = 0
        while True:
            try:
                return await self._once(method, path, body, deadline)
            except UpstreamError as error:
                retry = error.code == grpc.StatusCode.UNAVAILABLE and self.retry.failed()
                pause = self.retry.backoff(attempt)
                attempt += 1
                if (
                    not retry
                    or attempt >= self.retry.attempts
                    or time.monotonic() + pause >= deadline
                ):
                    raise
                await asyncio.sleep(pause)

    async def _once(self, method: str, path: str, body: bytes | None, deadline: float) -> Any:
        assert self._session is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", path)
        try:
            async with self._session.request(
                method, self.base_url + path, data=body,
                headers={"Content-Type": "application/json"} if body else None,
                timeout=aiohttp.ClientTimeout(total=remaining),
            ) as response:  # fmt: skip
                text = await response.text()
                status = response.status
        except TimeoutError:
            raise UpstreamError(
                grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", path
            ) from None
        except aiohttp.ClientError as error:
            raise UpstreamError(
                grpc.StatusCode.UNAVAILABLE, f"REST upstream: {error}", path
            ) from None
        try:
            payload = json.loads(text) if text else {}
        except json.JSONDecodeError:
            payload = {"error": text[:500]}
        if status != 200:
            code = _GRPC_CODE_FOR_HTTP.get(status, grpc.StatusCode.UNKNOWN)
            raise UpstreamError(code, str(payload.get("error", text[:500])), path)
        self.retry.succeeded()
        return payload

    async def metadata(self, model: ModelRef, timeout: float | None = None) -> ModelMetadata:
        payload = await self._request("GET", _path(model) + "/metadata", None, timeout)
        try:
            signatures = payload["metadata"]["signature_def"]
            parsed = json_format.ParseDict(signatures, get_model_metadata_pb2.SignatureDefMap())
            version = int(payload["model_spec"]["version"])
        except (KeyError, TypeError, ValueError, json_format.ParseError) as error:
            raise UpstreamProtocolError(
                f"REST metadata for {model.name!r} is malformed: {error}"
            ) from None
        result = ModelMetadata(
            name=model.name,
            version=version,
            signatures=MappingProxyType(
                {n: signature_from_proto(n, s) for n, s in parsed.signature_def.items()}
            ),
        )
        for name, signature in result.signatures.items():
            self._outputs[(model.name, name)] = sorted(signature.outputs)
        if model.version is None and model.version_label is None:
            self._latest[model.name] = version
        return result

    async def status(self, model: ModelRef, timeout: float | None = None) -> list[VersionStatus]:
        payload = await self._request("GET", _path(model), None, timeout)
        parsed = json_format.ParseDict(
            payload, get_model_status_pb2.GetModelStatusResponse(), ignore_unknown_fields=True
        )
        return version_statuses(parsed)

    def prepare(
        self,
        model: ModelRef,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        dtypes: Mapping[str, DataType],
    ) -> bytes:
        """The JSON body of a columnar predict request (REST has no output_filter)."""
        body: dict[str, Any] = {"inputs": {}}
        if model.signature_name:
            body["signature_name"] = model.signature_name
        for alias, array in inputs.items():
            if alias in dtypes and array.dtype.kind not in "OS":
                array = array.astype(numpy_dtype(dtypes[alias]), copy=False)
            body["inputs"][alias] = _json_value(array)
        return json.dumps(body, separators=(",", ":")).encode()

    async def send(self, prepared: bytes, model: ModelRef, timeout: float | None) -> Prediction:
        payload = await self._request("POST", _path(model) + ":predict", prepared, timeout)
        outputs = payload.get("outputs")
        if outputs is None:
            raise UpstreamProtocolError(f"REST predict for {model.name!r} returned no outputs")
        signature = model.signature_name or DEFAULT_SIGNATURE
        if not isinstance(outputs, dict) or set(outputs) == {"b64"}:  # a single output, unnamed
            names = self._outputs.get((model.name, signature), ["output"])
            outputs = {names[0]: outputs}
        return Prediction(
            model=model.name,
            version=model.version if model.version is not None else self._latest.get(model.name),
            signature_name=signature,
            outputs={alias: _array(value) for alias, value in outputs.items()},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
