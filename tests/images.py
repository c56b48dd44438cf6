"""Test images made in code, with what a model must see in them known by construction."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}

# The detection scene: rectangles at known pixel edges (x0, y0, x1, y1), x1/y1 exclusive.
SCENE_SIZE = (400, 300)
SCENE_BOXES = {"red": (40, 30, 140, 130), "blue": (200, 150, 350, 260)}


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def solid(colour: str, size: tuple[int, int] = (640, 480), fmt: str = "JPEG") -> bytes:
    return encode(Image.new("RGB", size, COLOURS[colour]), fmt, **_lossless(fmt))


def framed(frame: str, centre: str, size: tuple[int, int] = (640, 480)) -> bytes:
    """``frame`` colour everywhere but the central half (in each direction), which is ``centre``."""
    image = Image.new("RGB", size, COLOURS[frame])
    w, h = size
    ImageDraw.Draw(image).rectangle(
        [w // 4, h // 4, 3 * w // 4 - 1, 3 * h // 4 - 1], fill=COLOURS[centre]
    )
    return encode(image, "PNG")


def scene() -> Image.Image:
    image = Image.new("RGB", SCENE_SIZE, (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for colour, (x0, y0, x1, y1) in SCENE_BOXES.items():
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=COLOURS[colour])
    return image


def rotated_jpeg(image: Image.Image, orientation: int = 6) -> bytes:
    """A JPEG stored turned so that applying EXIF ``orientation`` displays ``image``."""
    t = Image.Transpose
    turn = {6: t.ROTATE_90, 8: t.ROTATE_270, 3: t.ROTATE_180}
    stored = image.transpose(turn[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=100, subsampling=0, exif=exif.tobytes())


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _lossless(fmt: str) -> dict[str, object]:
    return {"quality": 95} if fmt == "JPEG" else {}
