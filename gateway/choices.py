"""The enumerated choices that settings and profiles take: what kind of model, how an image is
resized and filtered, its colour order, normalisation, dtype and layout. A leaf module: config,
profiles and outputs all read these, and it imports nothing of the gateway."""

from __future__ import annotations

from enum import StrEnum


class ModelKind(StrEnum):
    CLASSIFICATION = "classification"
    DETECTION = "detection"


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


class ResizeFilter(StrEnum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    LANCZOS = "lanczos"
    BOX = "box"
    HAMMING = "hamming"


class Layout(StrEnum):
    """Where the channels go; written either case in the config ("nchw" is NCHW)."""

    NHWC = "NHWC"
    NCHW = "NCHW"

    @classmethod
    def _missing_(cls, value: object) -> Layout | None:
        return cls.__members__.get(value.upper()) if isinstance(value, str) else None


class InputDType(StrEnum):
    """The dtypes of an image tensor the gateway makes; TF's own names (DT_FLOAT ...) also read."""

    UINT8 = "uint8"
    FLOAT32 = "float32"
    FLOAT16 = "float16"

    @classmethod
    def _missing_(cls, value: object) -> InputDType | None:
        tf_names = {"DT_UINT8": cls.UINT8, "DT_FLOAT": cls.FLOAT32, "DT_HALF": cls.FLOAT16}
        return tf_names.get(value) if isinstance(value, str) else None
