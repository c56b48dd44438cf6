"""This project's TF Serving messages and tensor conversion against the official ones.

Both sets of classes live in this one process (their proto packages differ), which is itself
part of the proof. Descriptors are compared field by field, so a field never set in a sample
message is checked too; sample messages then cross the wire in both directions.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from tensorflow.core.framework import tensor_pb2 as tf_tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2 as tf_shape_pb2
from tensorflow.core.framework import types_pb2 as tf_types_pb2
from tensorflow.core.protobuf import error_codes_pb2 as tf_error_codes_pb2
from tensorflow.core.protobuf import meta_graph_pb2 as tf_meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2 as tf_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2 as tf_status_pb2
from tensorflow_serving.apis import model_pb2 as tf_model_pb2
from tensorflow_serving.apis import predict_pb2 as tf_predict_pb2
from tensorflow_serving.apis import status_pb2 as tf_status_proto_pb2

from gateway._proto.tfserving import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    tensor_pb2,
    types_pb2,
)
from gateway.tfserving.client import SIGNATURE_DEF_MAP_TYPE
from gateway.tfserving.tensors import make_ndarray, make_tensor_proto
from testserver.predict import encode_output

# (ours, official) for every message the gateway uses.
MESSAGE_PAIRS = [
    (tensor_pb2.TensorProto, tf_tensor_pb2.TensorProto),
    (tensor_pb2.TensorShapeProto, tf_shape_pb2.TensorShapeProto),
    (tensor_pb2.TensorShapeProto.Dim, tf_shape_pb2.TensorShapeProto.Dim),
    (model_pb2.ModelSpec, tf_model_pb2.ModelSpec),
    (predict_pb2.PredictRequest, tf_predict_pb2.PredictRequest),
    (predict_pb2.PredictResponse, tf_predict_pb2.PredictResponse),
    (get_model_metadata_pb2.GetModelMetadataRequest, tf_metadata_pb2.GetModelMetadataRequest),
    (get_model_metadata_pb2.GetModelMetadataResponse, tf_metadata_pb2.GetModelMetadataResponse),
    (get_model_metadata_pb2.SignatureDefMap, tf_metadata_pb2.SignatureDefMap),
    (get_model_metadata_pb2.SignatureDef, tf_meta_graph_pb2.SignatureDef),
    (get_model_metadata_pb2.TensorInfo, tf_meta_graph_pb2.TensorInfo),
    (get_model_status_pb2.GetModelStatusRequest, tf_status_pb2.GetModelStatusRequest),
    (get_model_status_pb2.GetModelStatusResponse, tf_status_pb2.GetModelStatusResponse),
    (get_model_status_pb2.ModelVersionStatus, tf_status_pb2.ModelVersionStatus),
    (get_model_status_pb2.StatusProto, tf_status_proto_pb2.StatusProto),
]
ENUM_PAIRS = [
    (types_pb2.DataType.DESCRIPTOR, tf_types_pb2.DataType.DESCRIPTOR),
    (get_model_status_pb2.Code.DESCRIPTOR, tf_error_codes_pb2.Code.DESCRIPTOR),
    (
        get_model_status_pb2.ModelVersionStatus.State.DESCRIPTOR,
        tf_status_pb2.ModelVersionStatus.State.DESCRIPTOR,
    ),
]
# Official fields deliberately left out; their numbers must be reserved in ours.
OMITTED = {
    "tensorflow.TensorProto": {"resource_handle_val", "variant_val"},
    "tensorflow.TensorInfo": {"coo_sparse", "composite_tensor"},
    "tensorflow.serving.PredictRequest": {
        "predict_streamed_options",
        "client_id",
        "request_options",
    },
}


def _reserved_numbers(descriptor: Descriptor) -> set[int]:
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return {n for r in proto.reserved_range for n in range(r.start, r.end)}


def _field_facts(field: FieldDescriptor) -> tuple[object, ...]:
    return (field.name, field.number, field.type, field.is_repeated, field.json_name)


def _assert_same_message(ours: Descriptor, official: Descriptor) -> None:
    omitted = OMITTED.get(official.full_name, set())
    ours_by_name = {f.name: f for f in ours.fields}
    assert set(ours_by_name) == {f.name for f in official.fields} - omitted, official.full_name
    for theirs in official.fields:
        if theirs.name in omitted:
            assert theirs.number in _reserved_numbers(ours), (official.full_name, theirs.name)
            continue
        mine = ours_by_name[theirs.name]
        assert _field_facts(mine) == _field_facts(theirs), official.full_name
        assert mine.has_presence == theirs.has_presence, (official.full_name, theirs.name)
        assert (mine.containing_oneof is None) == (theirs.containing_oneof is None)
        if theirs.message_type is not None and theirs.message_type.GetOptions().map_entry:
            _assert_same_message(mine.message_type, theirs.message_type)
        elif theirs.message_type is not None:
            assert mine.message_type.name == theirs.message_type.name
        if theirs.enum_type is not None:
            _assert_same_enum(mine.enum_type, theirs.enum_type)


def _assert_same_enum(ours: EnumDescriptor, official: EnumDescriptor) -> None:
    assert {(v.name, v.number) for v in ours.values} == {
        (v.name, v.number) for v in official.values
    }


@pytest.mark.parametrize(
    ("ours", "official"), MESSAGE_PAIRS, ids=[o.DESCRIPTOR.full_name for _, o in MESSAGE_PAIRS]
)
def test_message_descriptors_match_the_official_field_by_field(ours, official) -> None:
    _assert_same_message(ours.DESCRIPTOR, official.DESCRIPTOR)


@pytest.mark.parametrize(("ours", "official"), ENUM_PAIRS, ids=lambda d: d.full_name)
def test_enum_descriptors_match_the_official(ours, official) -> None:
    _assert_same_enum(ours, official)


# --- sample messages across the wire, both ways ---------------------------------------------


def _both_ways(ours, official) -> None:
    """Ours parses as the official message and the official one as ours, to equal messages."""
    assert type(official).FromString(ours.SerializeToString()) == official
    assert type(ours).FromString(official.SerializeToString()) == ours


def _encoded_images() -> list[bytes]:
    return [b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b""]


def test_float32_image_request_in_tensor_content() -> None:
    image = np.random.default_rng(1).random((1, 224, 224, 3), dtype=np.float32)
    ours = predict_pb2.PredictRequest(output_filter=["probabilities"])
    ours.model_spec.name = "resnet"
    ours.model_spec.version.value = 3
    ours.model_spec.signature_name = "serving_default"
    ours.inputs["images"].CopyFrom(make_tensor_proto(image))

    official = tf_predict_pb2.PredictRequest(output_filter=["probabilities"])
    official.model_spec.name = "resnet"
    official.model_spec.version.value = 3
    official.model_spec.signature_name = "serving_default"
    official.inputs["images"].CopyFrom(tf.make_tensor_proto(image))

    assert len(ours.inputs["images"].tensor_content) == 224 * 224 * 3 * 4
    _both_ways(ours, official)


def test_string_request_with_several_encoded_images() -> None:
    blobs = _encoded_images()
    ours = predict_pb2.PredictRequest()
    ours.model_spec.name = "detector"
    ours.model_spec.version_label = "stable"
    ours.inputs["image_bytes"].CopyFrom(make_tensor_proto(np.array(blobs, dtype=object)))

    official = tf_predict_pb2.PredictRequest()
    official.model_spec.name = "detector"
    official.model_spec.version_label = "stable"
    official.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(blobs))

    assert list(ours.inputs["image_bytes"].string_val) == blobs
    _both_ways(ours, official)


def test_response_with_float_val_int64_val_and_tensor_content_outputs() -> None:
    scores = np.array([[0.1, 0.7, 0.2]], np.float32)
    classes = np.array([1, 5], np.int64)
    boxes = np.random.default_rng(2).random((1, 10, 4), dtype=np.float32)

    official = tf_predict_pb2.PredictResponse()
    official.model_spec.name = "m"
    official.model_spec.version.value = 1
    official.outputs["scores"].CopyFrom(encode_output(scores, as_tensor_content=False))
    official.outputs["classes"].CopyFrom(encode_output(classes, as_tensor_content=False))
    official.outputs["boxes"].CopyFrom(tf.make_tensor_proto(boxes))

    ours = predict_pb2.PredictResponse()
    ours.model_spec.name = "m"
    ours.model_spec.version.value = 1
    ours.outputs["scores"].dtype = types_pb2.DT_FLOAT
    ours.outputs["scores"].tensor_shape.dim.add(size=1)
    ours.outputs["scores"].tensor_shape.dim.add(size=3)
    ours.outputs["scores"].float_val.extend(scores.ravel().tolist())
    ours.outputs["classes"].dtype = types_pb2.DT_INT64
    ours.outputs["classes"].tensor_shape.dim.add(size=2)
    ours.outputs["classes"].int64_val.extend([1, 5])
    ours.outputs["boxes"].CopyFrom(make_tensor_proto(boxes))

    _both_ways(ours, official)
    decoded = {alias: make_ndarray(tensor) for alias, tensor in ours.outputs.items()}
    np.testing.assert_array_equal(decoded["scores"], scores)
    np.testing.assert_array_equal(decoded["classes"], classes)
    np.testing.assert_array_equal(decoded["boxes"], boxes)


def _signature(module, meta) -> object:
    signature = meta.SignatureDef(method_name="tensorflow/serving/predict")
    image = signature.inputs["images"]
    image.name = "serving_default_images:0"
    image.dtype = tf_types_pb2.DT_FLOAT
    for size in (-1, 224, 224, 3):
        image.tensor_shape.dim.add(size=size)
    out = signature.outputs["probabilities"]
    out.name = "PartitionedCall:0"
    out.dtype = tf_types_pb2.DT_FLOAT
    out.tensor_shape.dim.add(size=-1)
    out.tensor_shape.dim.add(size=1000)
    init = module.SignatureDefMap()
    init.signature_def["serving_default"].CopyFrom(signature)
    init.signature_def["__saved_model_init_op"].outputs["__saved_model_init_op"].name = "NoOp"
    return init


def test_metadata_response_with_packed_signature_def_map() -> None:
    official = tf_metadata_pb2.GetModelMetadataResponse()
    official.model_spec.name = "resnet"
    official.model_spec.version.value = 7
    official_map = _signature(tf_metadata_pb2, tf_meta_graph_pb2)
    official.metadata["signature_def"].Pack(official_map, deterministic=True)

    ours = get_model_metadata_pb2.GetModelMetadataResponse()
    ours.model_spec.name = "resnet"
    ours.model_spec.version.value = 7
    ours_map = _signature(get_model_metadata_pb2, get_model_metadata_pb2)
    packed = ours.metadata["signature_def"]
    packed.type_url = SIGNATURE_DEF_MAP_TYPE
    packed.value = ours_map.SerializeToString(deterministic=True)

    assert official.metadata["signature_def"].type_url == SIGNATURE_DEF_MAP_TYPE
    _both_ways(ours, official)


def test_model_status_response() -> None:
    official = tf_status_pb2.GetModelStatusResponse()
    official.model_version_status.add(version=2, state=tf_status_pb2.ModelVersionStatus.AVAILABLE)
    failed = official.model_version_status.add(
        version=1, state=tf_status_pb2.ModelVersionStatus.END
    )
    failed.status.error_code = tf_error_codes_pb2.NOT_FOUND
    failed.status.error_message = "Could not load"

    ours = get_model_status_pb2.GetModelStatusResponse()
    ours.model_version_status.add(
        version=2, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE
    )
    mine = ours.model_version_status.add(
        version=1, state=get_model_status_pb2.ModelVersionStatus.END
    )
    mine.status.error_code = get_model_status_pb2.NOT_FOUND
    mine.status.error_message = "Could not load"

    _both_ways(ours, official)


# --- tensor conversion against tf.make_tensor_proto / tf.make_ndarray ----------------------

NUMERIC = [
    np.float32,
    np.float64,
    np.float16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
]
SHAPES = [(), (0, 3), (1,), (2, 3, 4)]


def _sample(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    values = np.random.default_rng(3).integers(0, 120, size=shape)
    if np.dtype(dtype).kind == "f":
        return (values / 7).astype(dtype)
    return values.astype(dtype)


def _official(proto: object) -> tf_tensor_pb2.TensorProto:
    return tf_tensor_pb2.TensorProto.FromString(proto.SerializeToString())


def _ours(proto: object) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto.FromString(proto.SerializeToString())


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_numeric_tensors_match_tensorflow(dtype: type, shape: tuple[int, ...]) -> None:
    array = _sample(dtype, shape)
    ours = make_tensor_proto(array)
    official = tf.make_tensor_proto(array)

    read_by_tf = tf.make_ndarray(_official(ours))
    assert read_by_tf.dtype == array.dtype
    np.testing.assert_array_equal(read_by_tf, array)

    read_by_us = make_ndarray(_ours(official))
    assert read_by_us.dtype == array.dtype
    assert read_by_us.shape == shape
    np.testing.assert_array_equal(read_by_us, array)

    if official.tensor_content:  # TF chose tensor_content too: the bytes must be identical
        assert ours.SerializeToString() == official.SerializeToString()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_typed_value_fields_read_as_tensorflow_reads_them(
    dtype: type, shape: tuple[int, ...]
) -> None:
    official = encode_output(_sample(dtype, shape), as_tensor_content=False)
    assert not official.tensor_content
    expected = tf.make_ndarray(official)
    read_by_us = make_ndarray(_ours(official))
    assert read_by_us.dtype == expected.dtype
    np.testing.assert_array_equal(read_by_us, expected)


@pytest.mark.parametrize(
    ("value", "dtype", "shape"),
    [
        (3.5, tf.float32, [2, 3]),
        (7, tf.int64, [4]),
        (True, tf.bool, [2, 2]),
        (1.5, tf.float16, [3]),
    ],
)
def test_a_single_typed_value_fills_the_shape_as_in_tensorflow(value, dtype, shape) -> None:
    official = tf.make_tensor_proto(value, dtype=dtype, shape=shape)
    np.testing.assert_array_equal(make_ndarray(_ours(official)), tf.make_ndarray(official))


def test_fewer_typed_values_than_elements_repeat_the_last_as_in_tensorflow() -> None:
    official = tf_tensor_pb2.TensorProto(dtype=tf_types_pb2.DT_FLOAT, float_val=[1.0, 2.0])
    official.tensor_shape.dim.add(size=5)
    expected = tf.make_ndarray(official)
    np.testing.assert_array_equal(make_ndarray(_ours(official)), expected)
    assert expected.tolist() == [1.0, 2.0, 2.0, 2.0, 2.0]


@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 2)], ids=str)
def test_string_tensors_match_tensorflow(shape: tuple[int, ...]) -> None:
    blobs = [*_encoded_images(), b"x"][: int(np.prod(shape))]
    array = np.empty(len(blobs), dtype=object)
    array[:] = blobs
    array = array.reshape(shape)
    ours = make_tensor_proto(array)
    official = tf.make_tensor_proto(array)
    assert ours.SerializeToString() == official.SerializeToString()
    assert tf.make_ndarray(_official(ours)).tolist() == array.tolist()
    read_by_us = make_ndarray(_ours(official))
    assert read_by_us.dtype == object
    assert read_by_us.tolist() == array.tolist()


def test_bfloat16_is_written_and_read_as_tensorflow_does() -> None:
    # Values chosen to exercise rounding: ties to even, carries into the exponent, inf, nan.
    values = np.array(
        [1.0, -2.5, 1.00390625, 1.01171875, 3.4e38, 1e-40, np.inf, -np.inf, 0.1, 65504.0],
        np.float32,
    )
    official = tf.make_tensor_proto(values.astype(ml_dtypes.bfloat16))
    ours = make_tensor_proto(values, dtype=types_pb2.DT_BFLOAT16)
    np.testing.assert_array_equal(
        tf.make_ndarray(_official(ours)).astype(np.float32),
        values.astype(ml_dtypes.bfloat16).astype(np.float32),
    )
    read_by_us = make_ndarray(_ours(official))
    assert read_by_us.dtype == np.float32  # widened: numpy has no bfloat16
    np.testing.assert_array_equal(read_by_us, tf.make_ndarray(official).astype(np.float32))
    nan = make_tensor_proto(np.array([np.nan], np.float32), dtype=types_pb2.DT_BFLOAT16)
    assert np.isnan(tf.make_ndarray(_official(nan)).astype(np.float32)).all()


def test_float32_written_as_half_matches_tensorflow() -> None:
    values = np.array([0.1, 1 / 3, 65504.0, 1e-6, -0.0], np.float32)
    ours = make_tensor_proto(values, dtype=types_pb2.DT_HALF)
    np.testing.assert_array_equal(tf.make_ndarray(_official(ours)), values.astype(np.float16))
