"""Decoding and preprocessing, against references computed independently (numpy, or Pillow
applied directly), with no server."""

from __future__ import annotations

import io
from types import MappingProxyType

import numpy as np
import pytest
from PIL import Image

from gateway._proto.tfserving import types_pb2
from gateway.choices import Color, InputDType, Layout, Normalization, ResizeFilter, ResizeMode
from gateway.config import PreprocessSettings
from gateway.decode import DecodeLimits, decode_image, read_header
from gateway.errors import ImageTooLargeError, InvalidImageError, ProfileError
from gateway.pipeline import Geometry, input_geometry, preprocess
from gateway.profiles import PreprocessProfile, infer_profile
from gateway.tfserving.signatures import Signature, TensorSpec
from tests import images

LIMITS = DecodeLimits()


def signature(dtype: int, shape: tuple[int, ...] | None, name: str = "images") -> Signature:
    spec = TensorSpec(name, f"{name}:0", dtype, shape)
    out = TensorSpec("scores", "s:0", types_pb2.DT_FLOAT, (-1, 10))
    return Signature(
        "serving_default",
        "tensorflow/serving/predict",
        MappingProxyType({name: spec}),
        MappingProxyType({"scores": out}),
    )


def profile(**fields: object) -> PreprocessProfile:
    return PreprocessProfile(**{"input_name": "images", "width": 8, "height": 6, **fields})


# --- profile inference -----------------------------------------------------------------------


def test_float_nhwc_signature_gives_stretch_to_its_size_in_unit_range() -> None:
    inferred = infer_profile(signature(types_pb2.DT_FLOAT, (-1, 224, 192, 3)), PreprocessSettings())
    assert inferred == PreprocessProfile(
        input_name="images", width=192, height=224, resize_mode=ResizeMode.STRETCH,
        normalization=Normalization.UNIT, dtype=types_pb2.DT_FLOAT, layout=Layout.NHWC,
    )  # fmt: skip


def test_nchw_grayscale_and_uint8_are_inferred() -> None:
    nchw = infer_profile(signature(types_pb2.DT_FLOAT, (-1, 3, 32, 48)), PreprocessSettings())
    assert (nchw.layout, nchw.width, nchw.height) == (Layout.NCHW, 48, 32)
    gray = infer_profile(signature(types_pb2.DT_FLOAT, (-1, 28, 28, 1)), PreprocessSettings())
    assert gray.color == Color.GRAYSCALE
    detector = infer_profile(signature(types_pb2.DT_UINT8, (1, -1, -1, 3)), PreprocessSettings())
    assert (detector.resize_mode, detector.normalization, detector.dtype) == (
        ResizeMode.NONE, Normalization.RAW, types_pb2.DT_UINT8,
    )  # fmt: skip


def test_string_input_passes_encoded_bytes_through() -> None:
    inferred = infer_profile(signature(types_pb2.DT_STRING, (-1,)), PreprocessSettings())
    assert inferred.encoded and inferred.dtype == types_pb2.DT_STRING


def test_config_overrides_the_inferred_profile() -> None:
    settings = PreprocessSettings(
        resize_mode=ResizeMode.LETTERBOX, pad_value=114, color=Color.BGR,
        normalization=Normalization.SYMMETRIC, resize_filter=ResizeFilter.NEAREST,
        dtype=InputDType.FLOAT16,
    )  # fmt: skip
    inferred = infer_profile(signature(types_pb2.DT_FLOAT, (-1, 64, 64, 3)), settings)
    assert (
        inferred.resize_mode, inferred.pad_value, inferred.color, inferred.normalization,
        inferred.resize_filter, inferred.dtype,
    ) == (
        ResizeMode.LETTERBOX, 114, Color.BGR, Normalization.SYMMETRIC, ResizeFilter.NEAREST,
        types_pb2.DT_HALF,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "settings", "message"),
    [
        ((-1, -1, -1, 3),
         PreprocessSettings(dtype=InputDType.FLOAT32, resize_mode=ResizeMode.STRETCH),
         "input 'images' has no fixed size: set preprocess.width and height"),
        ((-1, 8, 8, 3), PreprocessSettings(normalization=Normalization.MEAN_STD),
         "normalization mean_std needs preprocess.mean and preprocess.std"),
        ((-1, 8, 8, 3), PreprocessSettings(mean=(1.0, 2.0)), "mean needs 1 or 3 values, has 2"),
        ((-1, 10), PreprocessSettings(),
         "input 'images' has shape (-1, 10); an image input has rank 4"),
    ],
)  # fmt: skip
def test_impossible_profiles_are_refused_with_the_reason(shape, settings, message) -> None:
    with pytest.raises(ProfileError) as caught:
        infer_profile(signature(types_pb2.DT_FLOAT, shape), settings)
    assert caught.value.message == message


# --- geometry --------------------------------------------------------------------------------


def header(width: int, height: int):
    return read_header(images.encode(Image.new("RGB", (width, height)), "PNG"), LIMITS)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (ResizeMode.STRETCH, Geometry(0, 0, 640, 480)),
        # 640x480 into 224x224: scale 0.35 → 224x168 inside, 28 px of padding above and below.
        (ResizeMode.LETTERBOX, Geometry(0, -80, 640, 640)),
        (ResizeMode.CENTER_CROP, Geometry(80, 0, 480, 480)),
        # shorter side 480 → 256 (224·8/7), then the central 224²: 420 px of the original.
        (ResizeMode.SHORTER_SIDE_CROP, Geometry(110, 30, 420, 420)),
    ],
)
def test_each_resize_mode_covers_a_known_rectangle_of_the_original(mode, expected) -> None:
    p = infer_profile(
        signature(types_pb2.DT_FLOAT, (-1, 224, 224, 3)), PreprocessSettings(resize_mode=mode)
    )
    got = input_geometry(header(640, 480), p)
    np.testing.assert_allclose(
        [got.x0, got.y0, got.width, got.height],
        [expected.x0, expected.y0, expected.width, expected.height],
    )


# --- tensors ---------------------------------------------------------------------------------


def test_stretch_equals_pillow_resize_then_scale_to_unit() -> None:
    source = images.noise((40, 30))
    tensor = preprocess(images.encode(source, "PNG"), profile(), LIMITS).tensor
    reference = np.asarray(source.resize((8, 6), Image.Resampling.BILINEAR), np.float32) / 255
    assert tensor.shape == (1, 6, 8, 3) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], reference, rtol=0, atol=1e-7)


def test_letterbox_pads_with_the_pad_value_and_centres_the_image() -> None:
    source = Image.new("RGB", (40, 10), (200, 100, 50))
    p = profile(width=8, height=8, resize_mode=ResizeMode.LETTERBOX, pad_value=7,
                normalization=Normalization.RAW, dtype=types_pb2.DT_UINT8)  # fmt: skip
    tensor = preprocess(images.encode(source, "PNG"), p, LIMITS).tensor[0]
    # 40x10 → 8x2 inside an 8x8 canvas: rows 3 and 4 hold the image.
    assert (tensor[:3] == 7).all() and (tensor[5:] == 7).all()
    assert (tensor[3:5] == (200, 100, 50)).all()


@pytest.mark.parametrize(
    ("norm", "mean", "std", "expect"),
    [
        (Normalization.RAW, (), (), lambda x: x),
        (Normalization.UNIT, (), (), lambda x: x / 255),
        (Normalization.SYMMETRIC, (), (), lambda x: x / 127.5 - 1),
        (Normalization.MEAN_STD, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
         lambda x: (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])),
    ],
)  # fmt: skip
def test_normalizations(norm, mean, std, expect) -> None:
    source = images.noise((8, 6), seed=3)
    p = profile(normalization=norm, mean=mean, std=std)
    tensor = preprocess(images.encode(source, "PNG"), p, LIMITS).tensor[0]
    reference = expect(np.asarray(source, np.float64))
    np.testing.assert_allclose(tensor, reference, rtol=1e-6, atol=1e-6)


def test_caffe_is_bgr_minus_the_imagenet_means() -> None:
    source = images.noise((8, 6), seed=4)
    tensor = preprocess(
        images.encode(source, "PNG"), profile(normalization=Normalization.CAFFE), LIMITS
    ).tensor[0]
    reference = np.asarray(source, np.float64)[..., ::-1] - [103.939, 116.779, 123.68]
    np.testing.assert_allclose(tensor, reference, atol=1e-4)


def test_bgr_nchw_float16_and_grayscale_layouts() -> None:
    source = images.noise((8, 6), seed=5)
    data = images.encode(source, "PNG")
    bgr = preprocess(data, profile(color=Color.BGR, normalization=Normalization.RAW), LIMITS).tensor
    np.testing.assert_array_equal(bgr[0], np.asarray(source)[..., ::-1])
    nchw = preprocess(data, profile(layout=Layout.NCHW, dtype=types_pb2.DT_HALF), LIMITS).tensor
    assert nchw.shape == (1, 3, 6, 8) and nchw.dtype == np.float16
    np.testing.assert_allclose(nchw[0], (np.asarray(source) / 255).transpose(2, 0, 1), atol=1e-3)
    gray = preprocess(
        data, profile(color=Color.GRAYSCALE, normalization=Normalization.RAW), LIMITS
    ).tensor
    np.testing.assert_array_equal(gray[0, ..., 0], np.asarray(source.convert("L")))


def test_alpha_is_flattened_onto_the_background() -> None:
    rgba = Image.new("RGBA", (8, 6), (255, 0, 0, 0))  # fully transparent red
    p = profile(normalization=Normalization.RAW, background=(0, 0, 255))
    tensor = preprocess(images.encode(rgba, "PNG"), p, LIMITS).tensor[0]
    assert (tensor == (0, 0, 255)).all()


def test_gif_uses_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = images.encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    tensor = preprocess(data, profile(normalization=Normalization.RAW), LIMITS).tensor[0]
    assert (tensor == (255, 0, 0)).all()


# --- decoding --------------------------------------------------------------------------------


def test_format_is_sniffed_from_the_bytes_not_named() -> None:
    assert read_header(images.solid("red", (10, 10), "PNG"), LIMITS).format == "PNG"
    assert read_header(images.solid("red", (10, 10), "WEBP"), LIMITS).format == "WEBP"


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    data = images.encode(Image.new("L", (5000, 4000)), "PNG")
    with pytest.raises(ImageTooLargeError) as caught:
        decode_image(data, DecodeLimits(max_pixels=10_000_000))
    assert caught.value.message == "the image is 5000x4000 = 20.0 Mpx, over the 10 Mpx limit"


def test_disallowed_format_is_named() -> None:
    with pytest.raises(InvalidImageError) as caught:
        read_header(images.solid("red", (10, 10), "PNG"), DecodeLimits(allowed_formats=("JPEG",)))
    assert caught.value.message == "image format PNG is not allowed (allowed: JPEG)"


def test_exif_orientation_is_applied() -> None:
    decoded = decode_image(images.rotated_jpeg(images.scene(), 6), LIMITS)
    assert decoded.header.orientation == 6
    assert decoded.image.size == images.SCENE_SIZE == (decoded.header.width, decoded.header.height)
    x0, y0, x1, y1 = images.SCENE_BOXES["red"]
    assert np.asarray(decoded.image)[(y0 + y1) // 2, (x0 + x1) // 2].tolist()[0] > 200


def test_large_jpeg_is_decoded_at_a_reduced_scale_close_to_the_full_decode() -> None:
    source = images.noise((240, 135), seed=6).resize((1920, 1080), Image.Resampling.BICUBIC)
    data = images.encode(source, "JPEG", quality=95)
    p = profile(width=224, height=224)
    decoded = decode_image(data, LIMITS, min_size=lambda h: (224, 224))
    assert decoded.image.size == (480, 270)  # 1/4 scale: the smallest still ≥ 224 both ways
    fast = preprocess(data, p, LIMITS).tensor[0]
    full_decode = Image.open(io.BytesIO(data)).convert("RGB")
    full = np.asarray(full_decode.resize((224, 224), Image.Resampling.BILINEAR), np.float32) / 255
    # DCT scaling averages like a box filter: close to, not equal to, the full decode.
    assert np.abs(fast - full).mean() < 0.02
