"""The enumerated choices that settings and profiles take: what kind of model, how an image is
resized, its colour order and normalisation. A leaf module: config, profiles and outputs all
read these, and it imports nothing of the gateway."""

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
