"""Image bytes → the model's input tensor, per the model's preprocessing profile.

A profile is inferred from the model's signature (size from the input shape, dtype, layout;
a DT_STRING input means "send the encoded bytes untouched") and refined by the config. Every
resize mode is described by a :class:`Geometry`, the rectangle of the original image that the
model's input covers, which is also what maps the model's boxes back to original pixels.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image

from gateway._proto.tfserving import types_pb2
from gateway.config import PreprocessSettings
from gateway.decode import DecodedImage, DecodeLimits, ImageHeader, decode_image, read_header
from gateway.errors import ProfileError
from gateway.tensors import DataType, dtype_name, numpy_dtype
from gateway.upstream import Signature


class ResizeMode(StrEnum):
    NONE = "none"  # keep the image's own size (models that resize inside, e.g. TF OD API)
    STRETCH = "stretch"
    LETTERBOX = "letterbox"
    CENTER_CROP = "center_crop"
    SHORTER_SIDE_CROP = "shorter_side_crop"


class Normalization(StrEnum):
    RAW = "raw"  # 0..255
    UNIT = "unit"  # [0, 1]
    SYMMETRIC = "symmetric"  # [-1, 1]
    MEAN_STD = "mean_std"  # (x/255 - mean) / std, mean and std in [0, 1] units
    CAFFE = "caffe"  # x - mean (0..255 units, BGR means by default)


class Color(StrEnum):
    RGB = "rgb"
    BGR = "bgr"
    GRAYSCALE = "grayscale"


FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TENSOR_DTYPES = {
    "uint8": types_pb2.DT_UINT8,
    "float32": types_pb2.DT_FLOAT,
    "float16": types_pb2.DT_HALF,
    "DT_UINT8": types_pb2.DT_UINT8,
    "DT_FLOAT": types_pb2.DT_FLOAT,
    "DT_HALF": types_pb2.DT_HALF,
}


@dataclass(frozen=True, slots=True)
class PreprocessProfile:
    input_name: str
    encoded: bool = False  # DT_STRING input: the caller's bytes go through untouched
    width: int = 0  # 0 with ResizeMode.NONE: the image's own size
    height: int = 0
    resize_mode: ResizeMode = ResizeMode.STRETCH
    resize_filter: str = "bilinear"
    shorter_side: int = 0
    pad_value: int = 0
    color: Color = Color.RGB
    background: tuple[int, int, int] = (255, 255, 255)
    normalization: Normalization = Normalization.UNIT
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    dtype: DataType = types_pb2.DT_FLOAT
    layout: str = "NHWC"


@dataclass(frozen=True, slots=True)
class Geometry:
    """The rectangle of the original image (pixels, may extend past it) the model input spans."""

    x0: float
    y0: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Preprocessed:
    tensor: np.ndarray  # with the batch dimension
    header: ImageHeader
    geometry: Geometry
    decode_s: float  # sniff, guard and decode
    preprocess_s: float  # resize, colour, normalise, layout


def _image_input(signature: Signature, settings: PreprocessSettings) -> tuple[str, object]:
    if settings.input_name:
        if settings.input_name not in signature.inputs:
            raise ProfileError(f"input {settings.input_name!r} is not in the signature")
        return settings.input_name, signature.inputs[settings.input_name]
    if len(signature.inputs) != 1:
        names = ", ".join(sorted(signature.inputs))
        raise ProfileError(f"the signature has several inputs ({names}): set preprocess.input_name")
    return next(iter(signature.inputs.items()))


def infer_profile(signature: Signature, settings: PreprocessSettings) -> PreprocessProfile:
    """The profile for a signature's image input: inferred, then overridden by ``settings``."""
    name, spec = _image_input(signature, settings)
    if spec.dtype == types_pb2.DT_STRING:  # type: ignore[attr-defined]
        return PreprocessProfile(input_name=name, encoded=True, dtype=types_pb2.DT_STRING)
    shape = spec.shape  # type: ignore[attr-defined]
    if shape is None or len(shape) != 4:
        raise ProfileError(f"input {name!r} has shape {shape}; an image input has rank 4")
    nchw = shape[1] in (1, 3) and shape[3] not in (1, 3)
    height, width, channels = (shape[2], shape[3], shape[1]) if nchw else shape[1:]
    dtype = spec.dtype  # type: ignore[attr-defined]
    inferred = PreprocessProfile(
        input_name=name,
        width=max(width, 0),
        height=max(height, 0),
        resize_mode=ResizeMode.STRETCH if width > 0 and height > 0 else ResizeMode.NONE,
        color=Color.GRAYSCALE if channels == 1 else Color.RGB,
        normalization=Normalization.RAW if dtype == types_pb2.DT_UINT8 else Normalization.UNIT,
        dtype=dtype,
        layout="NCHW" if nchw else "NHWC",
    )
    return _validated(_override(inferred, settings), name)


def _override(profile: PreprocessProfile, settings: PreprocessSettings) -> PreprocessProfile:
    changes: dict[str, object] = {}
    for f in dataclasses.fields(PreprocessSettings):
        value = getattr(settings, f.name)
        if value is None or f.name == "input_name":
            continue
        try:
            changes[f.name] = {
                "resize_mode": ResizeMode,
                "color": Color,
                "normalization": Normalization,
                "dtype": lambda v: _TENSOR_DTYPES[v],
                "layout": str.upper,
            }.get(f.name, lambda v: v)(value)
        except (KeyError, ValueError):
            raise ProfileError(f"preprocess.{f.name}: {value!r} is not a valid choice") from None
    if (
        "width" in changes
        and "resize_mode" not in changes
        and profile.resize_mode == ResizeMode.NONE
    ):
        changes["resize_mode"] = ResizeMode.STRETCH
    return dataclasses.replace(profile, **changes)


def _validated(profile: PreprocessProfile, name: str) -> PreprocessProfile:
    if profile.resize_filter not in FILTERS:
        raise ProfileError(f"resize_filter {profile.resize_filter!r}: one of {', '.join(FILTERS)}")
    if profile.resize_mode != ResizeMode.NONE and (profile.width <= 0 or profile.height <= 0):
        raise ProfileError(f"input {name!r} has no fixed size: set preprocess.width and height")
    if profile.dtype not in _TENSOR_DTYPES.values():
        raise ProfileError(
            f"input {name!r} has dtype {dtype_name(profile.dtype)}, not an image dtype"
        )
    if profile.dtype == types_pb2.DT_UINT8 and profile.normalization != Normalization.RAW:
        raise ProfileError(f"input {name!r} is uint8: only 'raw' normalization fits it")
    if profile.layout not in ("NHWC", "NCHW"):
        raise ProfileError(f"layout {profile.layout!r}: NHWC or NCHW")
    channels = 1 if profile.color == Color.GRAYSCALE else 3
    for label, values in (("mean", profile.mean), ("std", profile.std)):
        if values and len(values) not in (1, channels):
            raise ProfileError(f"{label} needs 1 or {channels} values, has {len(values)}")
    if profile.normalization == Normalization.MEAN_STD and not (profile.mean and profile.std):
        raise ProfileError("normalization mean_std needs preprocess.mean and preprocess.std")
    if profile.resize_mode == ResizeMode.SHORTER_SIDE_CROP:
        side = profile.shorter_side or math.ceil(max(profile.width, profile.height) * 8 / 7)
        if side < max(profile.width, profile.height):
            raise ProfileError("shorter_side must be at least the larger target dimension")
        profile = dataclasses.replace(profile, shorter_side=side)
    return profile


def plan(header: ImageHeader, profile: PreprocessProfile) -> Geometry:
    """Which rectangle of the original image the model input covers, for each resize mode."""
    w, h = header.width, header.height
    tw, th = profile.width, profile.height
    mode = profile.resize_mode
    if mode in (ResizeMode.NONE, ResizeMode.STRETCH) or profile.encoded:
        return Geometry(0.0, 0.0, float(w), float(h))
    if mode == ResizeMode.LETTERBOX:
        inner_w, inner_h = _letterbox_inner(w, h, tw, th)
        pad_x, pad_y = (tw - inner_w) // 2, (th - inner_h) // 2
        return Geometry(
            -pad_x * w / inner_w, -pad_y * h / inner_h, tw * w / inner_w, th * h / inner_h
        )
    if mode == ResizeMode.CENTER_CROP:
        aspect = tw / th
        crop_w, crop_h = (h * aspect, float(h)) if w / h > aspect else (float(w), w / aspect)
    else:  # SHORTER_SIDE_CROP
        scale = profile.shorter_side / min(w, h)
        crop_w, crop_h = tw / scale, th / scale
    return Geometry((w - crop_w) / 2, (h - crop_h) / 2, crop_w, crop_h)


def _letterbox_inner(w: int, h: int, tw: int, th: int) -> tuple[int, int]:
    scale = min(tw / w, th / h)
    return max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))


def decode_size(
    header: ImageHeader, profile: PreprocessProfile, geometry: Geometry
) -> tuple[int, int] | None:
    """The smallest whole-image size that still gives the model full resolution (None: full)."""
    if profile.resize_mode == ResizeMode.NONE:
        return None
    return (
        math.ceil(header.width * profile.width / geometry.width),
        math.ceil(header.height * profile.height / geometry.height),
    )


def resize(decoded: DecodedImage, profile: PreprocessProfile, geometry: Geometry) -> Image.Image:
    image = decoded.image
    if profile.resize_mode == ResizeMode.NONE:
        return image
    # The decoded image may be smaller than the original (scaled JPEG decode): scale the plan.
    sx, sy = image.width / decoded.header.width, image.height / decoded.header.height
    resample = FILTERS[profile.resize_filter]
    size = (profile.width, profile.height)
    if profile.resize_mode == ResizeMode.LETTERBOX:
        inner = _letterbox_inner(decoded.header.width, decoded.header.height, *size)
        canvas = Image.new(image.mode, size, (profile.pad_value,) * len(image.getbands()))
        canvas.paste(
            image.resize(inner, resample), ((size[0] - inner[0]) // 2, (size[1] - inner[1]) // 2)
        )
        return canvas
    box = (
        geometry.x0 * sx,
        geometry.y0 * sy,
        (geometry.x0 + geometry.width) * sx,
        (geometry.y0 + geometry.height) * sy,
    )
    if image.size == size and box == (0.0, 0.0, float(size[0]), float(size[1])):
        return image
    return image.resize(size, resample, box=box)


def to_tensor(image: Image.Image, profile: PreprocessProfile) -> np.ndarray:
    """Pixels → normalised array in the profile's colour order, dtype and layout, batch of one."""
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if profile.color == Color.BGR or profile.normalization == Normalization.CAFFE:
        pixels = pixels[..., ::-1]
    if profile.dtype == types_pb2.DT_UINT8:
        array = pixels
    else:
        array = pixels.astype(np.float32)
        norm = profile.normalization
        if norm == Normalization.UNIT:
            array *= 1 / 255
        elif norm == Normalization.SYMMETRIC:
            array *= 1 / 127.5
            array -= 1
        elif norm == Normalization.MEAN_STD:
            array *= 1 / 255
            array -= np.asarray(profile.mean, np.float32)
            array /= np.asarray(profile.std, np.float32)
        elif norm == Normalization.CAFFE:
            array -= np.asarray(profile.mean or CAFFE_MEAN_BGR, np.float32)
        array = array.astype(numpy_dtype(profile.dtype), copy=False)
    if profile.layout == "NCHW":
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array[None])


def preprocess(data: bytes, profile: PreprocessProfile, limits: DecodeLimits) -> Preprocessed:
    """The whole stage: bytes → tensor, header and geometry, timed. Runs in a worker thread."""
    return preprocess_many(data, (profile,), limits)[0]


def preprocess_many(
    data: bytes, profiles: Sequence[PreprocessProfile], limits: DecodeLimits
) -> list[Preprocessed]:
    """One decode of the image, then each profile's tensor (several models on one image).

    The image is decoded once, at the largest size any profile needs; transparent pixels are
    flattened onto the first tensor profile's background. Encoded-input profiles get the bytes.
    """
    start = time.perf_counter()
    tensor_profiles = [p for p in profiles if not p.encoded]
    decoded: DecodedImage | None = None
    if tensor_profiles:

        def min_size(header: ImageHeader) -> tuple[int, int] | None:
            sizes = [decode_size(header, p, plan(header, p)) for p in tensor_profiles]
            if any(size is None for size in sizes):
                return None
            return max(s[0] for s in sizes if s), max(s[1] for s in sizes if s)

        decoded = decode_image(
            data,
            limits,
            min_size=min_size,
            gray=all(p.color == Color.GRAYSCALE for p in tensor_profiles),
            background=tensor_profiles[0].background,
        )
        header = decoded.header
    else:
        header = read_header(data, limits)  # format and size are checked all the same
    decode_s = time.perf_counter() - start

    results = []
    for profile in profiles:
        began = time.perf_counter()
        if profile.encoded:
            tensor = np.empty(1, dtype=object)
            tensor[0] = data
            geometry = Geometry(0.0, 0.0, float(header.width), float(header.height))
        else:
            assert decoded is not None
            geometry = plan(header, profile)
            image = decoded
            if profile.color == Color.GRAYSCALE and decoded.image.mode != "L":
                image = DecodedImage(header, decoded.image.convert("L"))
            tensor = to_tensor(resize(image, profile, geometry), profile)
        results.append(
            Preprocessed(tensor, header, geometry, decode_s, time.perf_counter() - began)
        )
    return results
