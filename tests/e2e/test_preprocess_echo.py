"""Preprocessed tensors reach TensorFlow intact: the echo model returns what it received, and
that must equal a reference computed independently (Pillow and numpy applied directly)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image

from gateway.choices import Color, Layout, Normalization, ResizeFilter, ResizeMode
from gateway.decode import DecodeLimits
from gateway.pipeline import preprocess
from gateway.profiles import PreprocessProfile
from gateway.tfserving.client import UpstreamClient
from gateway.tfserving.options import UpstreamOptions
from gateway.tfserving.signatures import ModelRef
from tests import images
from tests.conftest import ModelServerProcess

SOURCE = images.noise((64, 48), seed=11)


def _reference_stretch_unit() -> np.ndarray:
    return np.asarray(SOURCE.resize((32, 24), Image.Resampling.BILINEAR), np.float32) / 255


def _reference_letterbox_raw() -> np.ndarray:
    canvas = Image.new("RGB", (32, 32), (114, 114, 114))
    canvas.paste(SOURCE.resize((32, 24), Image.Resampling.BILINEAR), (0, 4))
    return np.asarray(canvas, np.float32)


def _reference_center_crop_caffe_nchw() -> np.ndarray:
    # The central 48x48 of the 64x48 image; resampled with its surroundings as filter support
    # (Pillow's resize box), not cut out first, so its border pixels are not edge-clamped.
    crop = SOURCE.resize((16, 16), Image.Resampling.BICUBIC, box=(8, 0, 56, 48))
    bgr = np.asarray(crop, np.float32)[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    return bgr.transpose(2, 0, 1)


CASES = {
    "stretch, unit": (PreprocessProfile("input", width=32, height=24), _reference_stretch_unit),
    "letterbox, raw": (
        PreprocessProfile("input", width=32, height=32, resize_mode=ResizeMode.LETTERBOX,
                          pad_value=114, normalization=Normalization.RAW),
        _reference_letterbox_raw,
    ),
    "center crop, caffe, NCHW": (
        PreprocessProfile("input", width=16, height=16, resize_mode=ResizeMode.CENTER_CROP,
                          resize_filter=ResizeFilter.BICUBIC, normalization=Normalization.CAFFE,
                          color=Color.BGR, layout=Layout.NCHW),
        _reference_center_crop_caffe_nchw,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_echoed_tensor_equals_the_independent_reference(
    tfserving: ModelServerProcess, case: str
) -> None:
    profile, reference = CASES[case]
    tensor = preprocess(images.encode(SOURCE, "PNG"), profile, DecodeLimits()).tensor

    async def echo() -> np.ndarray:
        async with UpstreamClient(UpstreamOptions(tfserving.target)) as client:
            return (await client.predict(ModelRef("echo"), {"input": tensor})).outputs["output"]

    echoed = asyncio.run(echo())
    np.testing.assert_array_equal(echoed, tensor)  # bit for bit through TensorFlow
    np.testing.assert_allclose(echoed[0], reference(), rtol=0, atol=2e-4)
