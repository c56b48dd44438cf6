"""What TF Serving says about models, in plain Python: which model/version/signature a call is
for, signatures and their tensors, version states, and Predict's outputs."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import grpc
import numpy as np

from gateway._proto.tfserving import get_model_metadata_pb2, get_model_status_pb2, model_pb2
from gateway.errors import SignatureNotFoundError
from gateway.tfserving.tensors import DataType

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Which model, version (number or label, or neither for the latest) and signature."""

    name: str
    version: int | None = None
    version_label: str | None = None
    signature_name: str = ""

    def __post_init__(self) -> None:
        if self.version is not None and self.version_label is not None:
            raise ValueError("a model reference takes a version or a version label, not both")

    def fill(self, spec: model_pb2.ModelSpec) -> None:
        spec.name = self.name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label is not None:
            spec.version_label = self.version_label
        if self.signature_name:
            spec.signature_name = self.signature_name


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """An input or output of a signature; ``shape`` None for unknown rank, -1 per unknown dim."""

    alias: str
    tensor_name: str
    dtype: DataType
    shape: tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """A model version's signatures, as GetModelMetadata reported them."""

    name: str
    version: int | None
    signatures: Mapping[str, Signature]

    def signature(self, name: str = "") -> Signature:
        key = name or DEFAULT_SIGNATURE
        try:
            return self.signatures[key]
        except KeyError:
            known = ", ".join(sorted(self.signatures)) or "none"
            raise SignatureNotFoundError(
                f'model {self.name!r} has no signature "{key}" (it has: {known})'
            ) from None


class VersionState(enum.IntEnum):
    """TF Serving's ModelVersionStatus.State."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: int
    state: VersionState
    error_code: grpc.StatusCode
    error_message: str


@dataclass(frozen=True, slots=True)
class Prediction:
    """Predict's outputs, and the model version and signature that actually served."""

    model: str
    version: int | None
    signature_name: str
    outputs: Mapping[str, np.ndarray]


def signature_from_proto(name: str, proto: get_model_metadata_pb2.SignatureDef) -> Signature:
    return Signature(
        name=name,
        method_name=proto.method_name,
        inputs=MappingProxyType({k: _tensor_spec(k, v) for k, v in proto.inputs.items()}),
        outputs=MappingProxyType({k: _tensor_spec(k, v) for k, v in proto.outputs.items()}),
    )


def _tensor_spec(alias: str, info: get_model_metadata_pb2.TensorInfo) -> TensorSpec:
    shape = info.tensor_shape
    return TensorSpec(
        alias=alias,
        tensor_name=info.name,
        dtype=info.dtype,
        shape=None if shape.unknown_rank else tuple(dim.size for dim in shape.dim),
    )


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def version_statuses(response: get_model_status_pb2.GetModelStatusResponse) -> list[VersionStatus]:
    """GetModelStatus's answer (over gRPC or REST) as VersionStatus values."""
    return [
        VersionStatus(
            version=item.version,
            state=VersionState(item.state),
            error_code=_STATUS_CODES.get(item.status.error_code, grpc.StatusCode.UNKNOWN),
            error_message=item.status.error_message,
        )
        for item in response.model_version_status
    ]
