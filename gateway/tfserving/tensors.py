"""numpy arrays ⇄ TF Serving TensorProto, without TensorFlow.

Arrays are written as ``tensor_content`` (raw little-endian bytes: one copy, ~650 times faster than
filling ``float_val``), strings as ``string_val``. Both encodings are read, because TF Serving
answers in the typed ``*_val`` fields unless it runs with
``--enable_serialization_as_tensor_content``. Reading follows ``tf.make_ndarray``: when a typed
field holds fewer values than the shape has elements, the last value is repeated.

bfloat16 has no numpy dtype; it is read as float32 (exact) and written from float32 with
round-to-nearest-even, as TensorFlow rounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np

from gateway._proto.tfserving import tensor_pb2, types_pb2
from gateway.errors import MalformedTensorError, UnsupportedDtypeError

DataType: TypeAlias = types_pb2.DataType  # a tfsgateway.tfserving.DataType value (an int)

# Bound on what one decoded tensor may occupy, so that a shape in a message cannot make the
# gateway allocate without limit (a single repeated value may legally stand for every element).
MAX_TENSOR_BYTES = 1 << 30

_NUMPY_BY_DTYPE: dict[DataType, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_HALF: np.dtype("<f2"),
    types_pb2.DT_INT8: np.dtype("i1"),
    types_pb2.DT_INT16: np.dtype("<i2"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
    types_pb2.DT_UINT8: np.dtype("u1"),
    types_pb2.DT_UINT16: np.dtype("<u2"),
    types_pb2.DT_UINT32: np.dtype("<u4"),
    types_pb2.DT_UINT64: np.dtype("<u8"),
    types_pb2.DT_BOOL: np.dtype("?"),
    types_pb2.DT_STRING: np.dtype(object),
    types_pb2.DT_BFLOAT16: np.dtype("<f4"),  # widened: see the module docstring
}

_DTYPE_BY_NUMPY: dict[np.dtype, DataType] = {
    np.dtype(dt).newbyteorder("="): enum
    for enum, dt in _NUMPY_BY_DTYPE.items()
    if enum != types_pb2.DT_BFLOAT16
}

# Which typed field holds which dtype's values (TensorFlow's Tensor::AsProtoField).
_VALUE_FIELD: dict[DataType, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}


def dtype_name(dtype: DataType) -> str:
    """``DT_FLOAT`` for 1, and a readable fallback for numbers this build does not know."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType({dtype})"


def numpy_dtype(dtype: DataType) -> np.dtype:
    """The numpy dtype an array of this TensorFlow dtype is read into."""
    try:
        return _NUMPY_BY_DTYPE[dtype]
    except KeyError:
        raise UnsupportedDtypeError(f"tensor dtype {dtype_name(dtype)} is not supported") from None


def datatype_of(array: np.ndarray) -> DataType:
    """The TensorFlow dtype for a numpy array (object and bytes arrays are DT_STRING)."""
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    try:
        return _DTYPE_BY_NUMPY[array.dtype.newbyteorder("=")]
    except KeyError:
        raise UnsupportedDtypeError(f"numpy dtype {array.dtype} has no TensorFlow dtype") from None


def make_tensor_proto(
    values: np.ndarray | np.generic | Sequence[bytes] | bytes, dtype: DataType | None = None
) -> tensor_pb2.TensorProto:
    """Build a TensorProto from an array, in ``tensor_content`` (``string_val`` for strings).

    ``dtype`` converts on the way (for example float32 → DT_HALF or DT_BFLOAT16); by default
    the array's own dtype is kept.
    """
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, values, dtype)
    return proto


def fill_tensor_proto(
    proto: tensor_pb2.TensorProto,
    values: np.ndarray | np.generic | Sequence[bytes] | bytes,
    dtype: DataType | None = None,
) -> None:
    """:func:`make_tensor_proto` into an existing (empty) message, such as a request's input
    map entry, which saves copying the tensor's bytes once more."""
    if isinstance(values, np.ndarray | np.generic):
        array = np.asarray(values)
    else:  # bytes, or a sequence of bytes: keep each item whole (no numpy 'S' trimming)
        array = np.asarray(values, dtype=object)
    target = datatype_of(array) if dtype is None else dtype
    proto.dtype = target
    proto.tensor_shape.dim.extend(tensor_pb2.TensorShapeProto.Dim(size=n) for n in array.shape)
    if target == types_pb2.DT_STRING:
        proto.string_val.extend(_as_bytes(item) for item in array.ravel())
    elif target == types_pb2.DT_BFLOAT16:
        proto.tensor_content = _float32_to_bfloat16_bits(array).tobytes()
    else:
        proto.tensor_content = np.ascontiguousarray(array, dtype=numpy_dtype(target)).tobytes()


def make_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Read a TensorProto in either encoding into an array (read-only when from tensor_content)."""
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    if any(n < 0 for n in shape):
        raise MalformedTensorError(f"tensor shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    dtype = numpy_dtype(proto.dtype)
    if count * max(dtype.itemsize, 1) > MAX_TENSOR_BYTES:
        raise MalformedTensorError(
            f"tensor of shape {list(shape)} would take over {MAX_TENSOR_BYTES} bytes"
        )
    if proto.dtype == types_pb2.DT_STRING:
        return _strings_array(list(proto.string_val), count, shape)
    if proto.tensor_content:
        return _from_content(proto, shape, count)
    values = np.asarray(getattr(proto, _VALUE_FIELD[proto.dtype]))
    if proto.dtype == types_pb2.DT_HALF:
        values = values.astype(np.uint16).view(np.float16)
    elif proto.dtype == types_pb2.DT_BFLOAT16:
        values = _bfloat16_bits_to_float32(values.astype(np.uint16))
    else:
        values = values.astype(dtype, copy=False)
    if values.size > count:
        raise MalformedTensorError(
            f"tensor of shape {list(shape)} holds {values.size} values, more than {count}"
        )
    if values.size == 0:
        return np.zeros(shape, dtype=values.dtype)
    if values.size < count:
        values = np.pad(values, (0, count - values.size), mode="edge")
    return values.reshape(shape)


def _from_content(proto: tensor_pb2.TensorProto, shape: tuple[int, ...], count: int) -> np.ndarray:
    raw_dtype = (
        np.dtype("<u2") if proto.dtype == types_pb2.DT_BFLOAT16 else numpy_dtype(proto.dtype)
    )
    expected = count * raw_dtype.itemsize
    if len(proto.tensor_content) != expected:
        raise MalformedTensorError(
            f"{dtype_name(proto.dtype)} tensor of shape {list(shape)} needs {expected} bytes of "
            f"tensor_content, got {len(proto.tensor_content)}"
        )
    array = np.frombuffer(proto.tensor_content, dtype=raw_dtype).reshape(shape)
    if proto.dtype == types_pb2.DT_BFLOAT16:
        return _bfloat16_bits_to_float32(array)
    return array


def _strings_array(values: list[bytes], count: int, shape: tuple[int, ...]) -> np.ndarray:
    if len(values) > count:
        raise MalformedTensorError(
            f"string tensor of shape {list(shape)} holds {len(values)} values, more than {count}"
        )
    if len(values) < count:
        values.extend([values[-1] if values else b""] * (count - len(values)))
    array = np.empty(count, dtype=object)
    array[:] = values
    return array.reshape(shape)


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise UnsupportedDtypeError(f"string tensors take bytes or str, not {type(item).__name__}")


def _bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _float32_to_bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even; NaN stays NaN) and return the bits."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(array)
    if nan.any():
        rounded = np.where(nan, ((bits >> 16) | 0x40).astype(np.uint16), rounded)
    return rounded.astype("<u2")
