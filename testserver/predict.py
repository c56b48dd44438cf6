"""Predict as TF Serving runs it (tensorflow_serving/servables/tensorflow/predict_util.cc):
signature lookup, input checks with TF Serving's messages, output_filter, and the two output
encodings. Inputs are checked against the signature before TensorFlow sees them, because some
bad shapes make TensorFlow abort the whole process."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from testserver.registry import ServedVersion, ServingError

DEFAULT_SIGNATURE = "serving_default"
_MAX_ELEMENTS = 1 << 31


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _type_name(dtype: int) -> str:
    """TensorFlow's DataTypeString: "float" for DT_FLOAT, as TF Serving's messages say it."""
    if dtype == types_pb2.DT_INVALID:
        return "INVALID"
    name = tf.as_dtype(dtype).name
    return {"float32": "float", "float64": "double", "float16": "half"}.get(name, name)


def _keys(mapping: Mapping[str, object]) -> str:
    return ",".join(sorted(mapping))


def _check_shape(
    alias: str, shape: tuple[int, ...], expected: tensor_shape_pb2.TensorShapeProto
) -> None:
    if expected.unknown_rank:
        return
    want = [dim.size for dim in expected.dim]
    if len(shape) != len(want) or any(w >= 0 and w != s for w, s in zip(want, shape, strict=True)):
        raise _invalid(
            f"input {alias} has shape {list(shape)}, incompatible with the signature's shape "
            f"{want} (-1: any size)"
        )


def decode_inputs(
    signature: object, inputs: Mapping[str, tensor_pb2.TensorProto]
) -> dict[str, np.ndarray]:
    sig_inputs = signature.inputs  # type: ignore[attr-defined]
    if len(inputs) != len(sig_inputs) and not (
        len(inputs) < len(sig_inputs) and signature.defaults  # type: ignore[attr-defined]
    ):
        sent_extra = _keys({k: 0 for k in inputs if k not in sig_inputs})
        missing = _keys({k: 0 for k in sig_inputs if k not in inputs})
        raise _invalid(
            f"input size does not match signature: {len(inputs)}!={len(sig_inputs)} "
            f"len({{{_keys(inputs)}}}) != len({{{_keys(sig_inputs)}}}). "
            f"Sent extra: {{{sent_extra}}}. Missing but required: {{{missing}}}."
        )
    arrays: dict[str, np.ndarray] = {}
    for index, (alias, proto) in enumerate(sorted(inputs.items())):
        info = sig_inputs.get(alias)
        if info is None:
            raise _invalid(
                f"input tensor alias not found in signature: {alias}. "
                f"Inputs expected to be in the set {{{_keys(sig_inputs)}}}."
            )
        if proto.dtype != info.dtype:
            raise _invalid(
                f"Expects arg[{index}] to be {_type_name(info.dtype)} but "
                f"{_type_name(proto.dtype)} is provided"
            )
        shape = tuple(dim.size for dim in proto.tensor_shape.dim)
        if any(n < 0 for n in shape) or np.prod(shape, dtype=np.float64) > _MAX_ELEMENTS:
            raise _invalid(f"tensor parsing error: {alias}")
        _check_shape(alias, shape, info.tensor_shape)
        try:
            arrays[alias] = tf.make_ndarray(proto)
        except (ValueError, TypeError):
            raise _invalid(f"tensor parsing error: {alias}") from None
    return arrays


def select_outputs(signature: object, output_filter: Sequence[str]) -> list[str]:
    outputs = signature.outputs  # type: ignore[attr-defined]
    seen: list[str] = []
    for alias in output_filter:
        if alias not in outputs:
            raise _invalid(
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{_keys(outputs)}}}."
            )
        if alias in seen:
            raise _invalid(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen or list(outputs)


def run(
    version: ServedVersion,
    signature_name: str,
    inputs: Mapping[str, tensor_pb2.TensorProto],
    output_filter: Sequence[str],
) -> dict[str, np.ndarray]:
    """Check the request against the signature, run the model, return the selected outputs."""
    name = signature_name or DEFAULT_SIGNATURE
    signature = version.signature_defs.get(name)
    function = version.functions.get(name)
    if signature is None or function is None:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.'
        )
    arrays = decode_inputs(signature, inputs)
    aliases = select_outputs(signature, output_filter)
    try:
        result = function(**{alias: tf.constant(array) for alias, array in arrays.items()})
    except tf.errors.OpError as error:
        raise ServingError(grpc.StatusCode(_grpc_code(error.error_code)), error.message) from None
    return {alias: result[alias].numpy() for alias in aliases}


def _grpc_code(tf_code: int) -> tuple[int, str]:
    for code in grpc.StatusCode:
        if code.value[0] == tf_code:
            return code.value
    return grpc.StatusCode.UNKNOWN.value


def encode_output(array: np.ndarray, as_tensor_content: bool) -> tensor_pb2.TensorProto:
    """As Tensor::AsProtoTensorContent if asked, else as AsProtoField (TF Serving default)."""
    if as_tensor_content or array.dtype.kind in "OSU":
        return tf.make_tensor_proto(array)
    dtype = tf.as_dtype(array.dtype)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    proto.tensor_shape.dim.extend(
        tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape
    )
    flat = array.ravel()
    field = {
        types_pb2.DT_FLOAT: "float_val",
        types_pb2.DT_DOUBLE: "double_val",
        types_pb2.DT_INT64: "int64_val",
        types_pb2.DT_BOOL: "bool_val",
        types_pb2.DT_UINT32: "uint32_val",
        types_pb2.DT_UINT64: "uint64_val",
        types_pb2.DT_HALF: "half_val",
        types_pb2.DT_BFLOAT16: "half_val",
    }.get(dtype.as_datatype_enum, "int_val")
    if field == "half_val":
        flat = flat.view(np.uint16)
    getattr(proto, field).extend(flat.tolist())
    return proto
