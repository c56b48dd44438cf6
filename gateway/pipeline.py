"""Image bytes → the model's input tensor, per the model's preprocessing profile
(``gateway/profiles.py``). Every resize mode is described by a :class:`Geometry`, the rectangle
of the original image that the model's input covers, which is also what maps the model's boxes
back to original pixels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gateway._proto.tfserving import types_pb2
from gateway.choices import Color, Layout, Normalization, ResizeMode
from gateway.decode import (
    DecodedImage,
    DecodeLimits,
    ImageHeader,
    Opened,
    decode_image,
    read_header,
)
from gateway.profiles import CAFFE_MEAN_BGR, FILTERS, PreprocessProfile
from gateway.tfserving.tensors import numpy_dtype


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


def input_geometry(header: ImageHeader, profile: PreprocessProfile) -> Geometry:
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
    # The decoded image may be smaller than the original (scaled JPEG decode): scale the geometry.
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
    if profile.layout == Layout.NCHW:
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array[None])


def preprocess(data: bytes, profile: PreprocessProfile, limits: DecodeLimits) -> Preprocessed:
    """The whole stage: bytes → tensor, header and geometry, timed. Runs in a worker thread."""
    return preprocess_many(data, (profile,), limits)[0]


def preprocess_many(
    data: bytes,
    profiles: Sequence[PreprocessProfile],
    limits: DecodeLimits,
    opened: Opened | None = None,
) -> list[Preprocessed]:
    """One decode of the image, then each profile's tensor (several models on one image).

    The image is decoded once, at the largest size any profile needs; transparent pixels are
    flattened onto the first tensor profile's background. Encoded-input profiles get the bytes.
    ``opened``: the image as :func:`~gateway.decode.open_image` left it (header already read).
    """
    start = time.perf_counter()
    tensor_profiles = [p for p in profiles if not p.encoded]
    decoded: DecodedImage | None = None
    if tensor_profiles:

        def min_size(header: ImageHeader) -> tuple[int, int] | None:
            sizes = [decode_size(header, p, input_geometry(header, p)) for p in tensor_profiles]
            if any(size is None for size in sizes):
                return None
            return max(s[0] for s in sizes if s), max(s[1] for s in sizes if s)

        decoded = decode_image(
            data,
            limits,
            min_size=min_size,
            gray=all(p.color == Color.GRAYSCALE for p in tensor_profiles),
            background=tensor_profiles[0].background,
            opened=opened,
        )
        header = decoded.header
    elif opened is not None:
        opened[0].close()  # encoded inputs only: the bytes go upstream as they are
        header = opened[1]
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
            geometry = input_geometry(header, profile)
            image = decoded
            if profile.color == Color.GRAYSCALE and decoded.image.mode != "L":
                image = DecodedImage(header, decoded.image.convert("L"))
            tensor = to_tensor(resize(image, profile, geometry), profile)
        results.append(
            Preprocessed(tensor, header, geometry, decode_s, time.perf_counter() - began)
        )
    return results
