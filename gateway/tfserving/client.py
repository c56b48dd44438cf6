"""The TF Serving wire client: one long-lived grpc.aio channel, metadata, status and Predict.

TF Serving is called by its fixed method paths with this project's own message classes, so the
gateway needs no TensorFlow. Every call carries a deadline; every upstream error status is
raised as :class:`UpstreamError` with TF Serving's own code and message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Protocol, TypeVar

import grpc
import grpc.aio
import numpy as np

from gateway._proto.tfserving import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    tensor_pb2,
)
from gateway.errors import UpstreamError, UpstreamProtocolError
from gateway.tfserving.options import UpstreamOptions
from gateway.tfserving.signatures import (
    DEFAULT_SIGNATURE,
    ModelMetadata,
    ModelRef,
    Prediction,
    VersionStatus,
    signature_from_proto,
    version_statuses,
)
from gateway.tfserving.tensors import DataType, fill_tensor_proto, make_ndarray

PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"

SIGNATURE_DEF_MAP_TYPE = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
_UNREACHABLE = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)


class Upstream(Protocol):
    """What the data plane needs from TF Serving, over gRPC (:class:`UpstreamClient`) or REST
    (:class:`gateway.tfserving.rest.RestUpstream`). ``prepare`` is thread-safe and does the heavy
    encoding off the event loop; ``send`` runs on it."""

    async def metadata(self, model: ModelRef, timeout: float | None = None) -> ModelMetadata: ...

    async def status(
        self, model: ModelRef, timeout: float | None = None
    ) -> list[VersionStatus]: ...

    def prepare(
        self,
        model: ModelRef,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        dtypes: Mapping[str, DataType],
    ) -> bytes: ...

    async def send(self, prepared: bytes, model: ModelRef, timeout: float | None) -> Prediction: ...

    async def close(self) -> None: ...


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class UpstreamClient:
    """A client for one TF Serving target (one or several replicas behind one name)."""

    def __init__(
        self, options: UpstreamOptions, credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        self.options = options
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(
                options.channel_target(), options.channel_options()
            )
        else:
            self._channel = grpc.aio.secure_channel(
                options.channel_target(), credentials, options.channel_options()
            )
        self._predict_bytes = self._channel.unary_unary(
            PREDICT,
            request_serializer=None,  # requests arrive serialised: build_predict_request
            response_deserializer=predict_pb2.PredictResponse.FromString,
        )
        self._metadata = self._channel.unary_unary(
            GET_MODEL_METADATA,
            request_serializer=get_model_metadata_pb2.GetModelMetadataRequest.SerializeToString,
            response_deserializer=get_model_metadata_pb2.GetModelMetadataResponse.FromString,
        )
        self._status = self._channel.unary_unary(
            GET_MODEL_STATUS,
            request_serializer=get_model_status_pb2.GetModelStatusRequest.SerializeToString,
            response_deserializer=get_model_status_pb2.GetModelStatusResponse.FromString,
        )

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def connectivity(self) -> AsyncIterator[bool]:
        """Whether TF Serving can be reached, each time that changes: True when the channel is
        READY, False when it cannot connect (TRANSIENT_FAILURE). The channel is asked to
        connect whenever it is idle, so an outage is seen at once, not at the next call."""
        reachable: bool | None = None
        state = self._channel.get_state(try_to_connect=True)
        while True:
            if state == grpc.ChannelConnectivity.READY and reachable is not True:
                reachable = True
                yield True
            elif state in _UNREACHABLE and reachable is not False:
                reachable = False
                yield False
            if state == grpc.ChannelConnectivity.SHUTDOWN:
                return  # closed
            await self._channel.wait_for_state_change(state)
            state = self._channel.get_state(try_to_connect=True)

    async def metadata(self, model: ModelRef, timeout: float | None = None) -> ModelMetadata:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        model.fill(request.model_spec)
        response = await self._call(self._metadata, GET_MODEL_METADATA, request, timeout)
        packed = response.metadata.get("signature_def")
        if packed is None or packed.type_url != SIGNATURE_DEF_MAP_TYPE:
            raise UpstreamProtocolError(
                f"GetModelMetadata for {model.name!r} returned no {SIGNATURE_DEF_MAP_TYPE}"
            )
        signature_map = get_model_metadata_pb2.SignatureDefMap.FromString(packed.value)
        spec = response.model_spec
        return ModelMetadata(
            name=spec.name or model.name,
            version=spec.version.value if spec.HasField("version") else None,
            signatures=MappingProxyType(
                {
                    name: signature_from_proto(name, sig)
                    for name, sig in signature_map.signature_def.items()
                }
            ),
        )

    async def status(self, model: ModelRef, timeout: float | None = None) -> list[VersionStatus]:
        request = get_model_status_pb2.GetModelStatusRequest()
        model.fill(request.model_spec)
        request.model_spec.ClearField("signature_name")
        response = await self._call(self._status, GET_MODEL_STATUS, request, timeout)
        return version_statuses(response)

    async def predict(
        self,
        model: ModelRef,
        inputs: Mapping[str, np.ndarray | tensor_pb2.TensorProto],
        output_filter: Sequence[str] = (),
        timeout: float | None = None,
    ) -> Prediction:
        """Run Predict. Inputs may be arrays or TensorProtos already built by the caller."""
        return await self.predict_serialized(
            build_predict_request(model, inputs, output_filter), model, timeout
        )

    def prepare(
        self,
        model: ModelRef,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        dtypes: Mapping[str, DataType],
    ) -> bytes:
        return build_predict_request(model, inputs, output_filter, dtypes)

    async def send(self, prepared: bytes, model: ModelRef, timeout: float | None) -> Prediction:
        return await self.predict_serialized(prepared, model, timeout)

    async def predict_serialized(
        self, request: bytes, model: ModelRef, timeout: float | None = None
    ) -> Prediction:
        """Run Predict with a request serialised beforehand (by :func:`build_predict_request`,
        typically in a worker thread, so the event loop never copies the tensor's bytes)."""
        response = await self._call(self._predict_bytes, PREDICT, request, timeout)
        spec = response.model_spec
        return Prediction(
            model=spec.name or model.name,
            version=spec.version.value if spec.HasField("version") else None,
            signature_name=spec.signature_name or model.signature_name or DEFAULT_SIGNATURE,
            outputs={alias: make_ndarray(tensor) for alias, tensor in response.outputs.items()},
        )

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
        path: str,
        request: _Req,
        timeout: float | None,
    ) -> _Resp:
        deadline = (
            self.options.timeout_s if timeout is None else min(timeout, self.options.timeout_s)
        )
        try:
            return await method(request, timeout=deadline)
        except grpc.aio.AioRpcError as error:
            raise UpstreamError(error.code(), error.details() or "", path) from None


def build_predict_request(
    model: ModelRef,
    inputs: Mapping[str, np.ndarray | tensor_pb2.TensorProto],
    output_filter: Sequence[str] = (),
    dtypes: Mapping[str, DataType] | None = None,
) -> bytes:
    """A serialised PredictRequest. Arrays are written straight into the request's input map
    (``tensor_content``), optionally converted to ``dtypes[alias]``. Thread-safe: call it off
    the event loop."""
    request = predict_pb2.PredictRequest(output_filter=output_filter)
    model.fill(request.model_spec)
    for alias, value in inputs.items():
        if isinstance(value, tensor_pb2.TensorProto):
            request.inputs[alias].CopyFrom(value)
        else:
            fill_tensor_proto(request.inputs[alias], value, (dtypes or {}).get(alias))
    return request.SerializeToString()
