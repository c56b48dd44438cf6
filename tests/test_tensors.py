"""gateway.tfserving.tensors on inputs a hostile or broken peer could send: every malformed
tensor is a MalformedTensorError (INVALID_ARGUMENT), never a crash or an unbounded allocation."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from gateway._proto.tfserving import tensor_pb2, types_pb2
from gateway.errors import MalformedTensorError, UnsupportedDtypeError
from gateway.tfserving.tensors import MAX_TENSOR_BYTES, make_ndarray, make_tensor_proto


def _proto(dtype: int, shape: list[int], **fields: object) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def test_tensor_content_of_the_wrong_length_is_rejected() -> None:
    proto = _proto(types_pb2.DT_FLOAT, [2, 3], tensor_content=b"\x00" * 20)
    with pytest.raises(MalformedTensorError) as caught:
        make_ndarray(proto)
    assert caught.value.message == (
        "DT_FLOAT tensor of shape [2, 3] needs 24 bytes of tensor_content, got 20"
    )
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_negative_dimension_is_rejected() -> None:
    with pytest.raises(MalformedTensorError, match=r"shape \[-1, 3\] has a negative dimension"):
        make_ndarray(_proto(types_pb2.DT_FLOAT, [-1, 3]))


def test_a_single_value_cannot_claim_a_huge_shape() -> None:
    proto = _proto(types_pb2.DT_FLOAT, [1 << 20, 1 << 20], float_val=[1.0])
    with pytest.raises(MalformedTensorError, match=f"would take over {MAX_TENSOR_BYTES} bytes"):
        make_ndarray(proto)


def test_more_values_than_elements_is_rejected() -> None:
    with pytest.raises(MalformedTensorError, match="holds 3 values, more than 2"):
        make_ndarray(_proto(types_pb2.DT_INT64, [2], int64_val=[1, 2, 3]))
    with pytest.raises(MalformedTensorError, match="holds 2 values, more than 1"):
        make_ndarray(_proto(types_pb2.DT_STRING, [1], string_val=[b"a", b"b"]))


@pytest.mark.parametrize("dtype", [types_pb2.DT_COMPLEX64, types_pb2.DT_RESOURCE, 999])
def test_unsupported_dtypes_are_named(dtype: int) -> None:
    with pytest.raises(UnsupportedDtypeError, match="is not supported"):
        make_ndarray(_proto(dtype, [1]))


def test_no_values_at_all_reads_as_zeros() -> None:
    array = make_ndarray(_proto(types_pb2.DT_INT32, [2, 2]))
    assert array.dtype == np.int32
    assert array.tolist() == [[0, 0], [0, 0]]


def test_tensor_content_is_read_without_a_copy() -> None:
    image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    proto = make_tensor_proto(image)
    array = make_ndarray(proto)
    assert not array.flags.writeable  # a view on the message's bytes
    np.testing.assert_array_equal(array, image)


def test_non_contiguous_and_big_endian_arrays_are_written_little_endian() -> None:
    base = np.arange(12, dtype=">i4").reshape(3, 4)
    proto = make_tensor_proto(base[:, ::2])
    assert proto.dtype == types_pb2.DT_INT32
    assert proto.tensor_content == np.array([[0, 2], [4, 6], [8, 10]], "<i4").tobytes()


def test_str_items_are_utf8_encoded_and_other_objects_refused() -> None:
    assert list(make_tensor_proto(np.array(["é", b"\x00"], dtype=object)).string_val) == [
        "é".encode(),
        b"\x00",
    ]
    with pytest.raises(UnsupportedDtypeError, match="not int"):
        make_tensor_proto(np.array([1, b"x"], dtype=object))
