"""Preprocessing profiles: how a model wants its image tensor (size, resize mode and filter,
colour order, normalisation, dtype, layout), inferred from the model's signature and refined by
the config, validated once."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from gateway._proto.tfserving import types_pb2
from gateway.choices import Color, InputDType, Layout, Normalization, ResizeFilter, ResizeMode
from gateway.config import PreprocessSettings
from gateway.errors import ProfileError
from gateway.tfserving.signatures import Signature, TensorSpec
from gateway.tfserving.tensors import DataType, dtype_name

FILTERS: dict[ResizeFilter, Image.Resampling] = {
    ResizeFilter.NEAREST: Image.Resampling.NEAREST,
    ResizeFilter.BILINEAR: Image.Resampling.BILINEAR,
    ResizeFilter.BICUBIC: Image.Resampling.BICUBIC,
    ResizeFilter.LANCZOS: Image.Resampling.LANCZOS,
    ResizeFilter.BOX: Image.Resampling.BOX,
    ResizeFilter.HAMMING: Image.Resampling.HAMMING,
}
T = TypeVar("T")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TENSOR_DTYPES: dict[InputDType, DataType] = {
    InputDType.UINT8: types_pb2.DT_UINT8,
    InputDType.FLOAT32: types_pb2.DT_FLOAT,
    InputDType.FLOAT16: types_pb2.DT_HALF,
}


@dataclass(frozen=True, slots=True)
class PreprocessProfile:
    input_name: str
    encoded: bool = False  # DT_STRING input: the caller's bytes go through untouched
    width: int = 0  # 0 with ResizeMode.NONE: the image's own size
    height: int = 0
    resize_mode: ResizeMode = ResizeMode.STRETCH
    resize_filter: ResizeFilter = ResizeFilter.BILINEAR
    shorter_side: int = 0
    pad_value: int = 0
    color: Color = Color.RGB
    background: tuple[int, int, int] = (255, 255, 255)
    normalization: Normalization = Normalization.UNIT
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    dtype: DataType = types_pb2.DT_FLOAT
    layout: Layout = Layout.NHWC


def _image_input(signature: Signature, settings: PreprocessSettings) -> tuple[str, TensorSpec]:
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
    if spec.dtype == types_pb2.DT_STRING:
        return PreprocessProfile(input_name=name, encoded=True, dtype=types_pb2.DT_STRING)
    shape = spec.shape
    if shape is None or len(shape) != 4:
        raise ProfileError(f"input {name!r} has shape {shape}; an image input has rank 4")
    nchw = shape[1] in (1, 3) and shape[3] not in (1, 3)
    height, width, channels = (shape[2], shape[3], shape[1]) if nchw else shape[1:]
    dtype = spec.dtype
    inferred = PreprocessProfile(
        input_name=name,
        width=max(width, 0),
        height=max(height, 0),
        resize_mode=ResizeMode.STRETCH if width > 0 and height > 0 else ResizeMode.NONE,
        color=Color.GRAYSCALE if channels == 1 else Color.RGB,
        normalization=Normalization.RAW if dtype == types_pb2.DT_UINT8 else Normalization.UNIT,
        dtype=dtype,
        layout=Layout.NCHW if nchw else Layout.NHWC,
    )
    return _validated(_override(inferred, settings), name)


def _override(profile: PreprocessProfile, settings: PreprocessSettings) -> PreprocessProfile:
    """The config's settings over the inferred ones (they were parsed and range-checked at load)."""
    resize_mode = settings.resize_mode
    if resize_mode is None and settings.width and profile.resize_mode == ResizeMode.NONE:
        resize_mode = ResizeMode.STRETCH  # a size for a free-size input: resize to it
    return dataclasses.replace(
        profile,
        width=_either(settings.width, profile.width),
        height=_either(settings.height, profile.height),
        resize_mode=_either(resize_mode, profile.resize_mode),
        resize_filter=_either(settings.resize_filter, profile.resize_filter),
        shorter_side=_either(settings.shorter_side, profile.shorter_side),
        pad_value=_either(settings.pad_value, profile.pad_value),
        color=_either(settings.color, profile.color),
        background=_either(settings.background, profile.background),
        normalization=_either(settings.normalization, profile.normalization),
        mean=_either(settings.mean, profile.mean),
        std=_either(settings.std, profile.std),
        dtype=profile.dtype if settings.dtype is None else _TENSOR_DTYPES[settings.dtype],
        layout=_either(settings.layout, profile.layout),
    )


def _either(configured: T | None, inferred: T) -> T:
    return inferred if configured is None else configured


def _validated(profile: PreprocessProfile, name: str) -> PreprocessProfile:
    if profile.resize_mode != ResizeMode.NONE and (profile.width <= 0 or profile.height <= 0):
        raise ProfileError(f"input {name!r} has no fixed size: set preprocess.width and height")
    if profile.dtype not in _TENSOR_DTYPES.values():
        raise ProfileError(
            f"input {name!r} has dtype {dtype_name(profile.dtype)}, not an image dtype"
        )
    if profile.dtype == types_pb2.DT_UINT8 and profile.normalization != Normalization.RAW:
        raise ProfileError(f"input {name!r} is uint8: only 'raw' normalization fits it")
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
