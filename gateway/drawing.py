"""Draw results on the caller's image: boxes with label and score, or the top labels.

Drawn on the original image as displayed (EXIF orientation applied), at its full size; line
width and text size scale with the image; each class keeps one colour; text sits on a filled
band of the class colour, in black or white, whichever reads better on it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from gateway.labels import Detection, Label

# Distinct, saturated colours (Tableau 10 and friends), indexed by class id.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (0, 92, 230), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AnnotateSpec:
    """What a caller asked the annotated image to be."""

    png: bool = False
    jpeg_quality: int = 0  # 0: 90


@dataclass(frozen=True, slots=True)
class EncodedImage:
    data: bytes
    mime_type: str
    size: tuple[int, int]


def class_colour(class_id: int) -> tuple[int, int, int]:
    return PALETTE[class_id % len(PALETTE)]


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def line_width(size: tuple[int, int]) -> int:
    return max(2, round(max(size) / 300))


@lru_cache(maxsize=32)
def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=pixels)


def _font_size(size: tuple[int, int]) -> int:
    return max(11, round(max(size) / 45))


def _label_band(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    colour: tuple[int, int, int],
    px: int,
) -> None:
    font = _font(px)
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    pad = max(1, px // 6)
    draw.rectangle([left - pad, top - pad, right + pad, bottom + pad], fill=colour)
    draw.text(xy, text, fill=_text_colour(colour), font=font)


def draw_detections(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    canvas = image.convert("RGB") if image.mode != "RGB" else image.copy()
    draw = ImageDraw.Draw(canvas)
    width, px = line_width(canvas.size), _font_size(canvas.size)
    for d in reversed(detections):  # best drawn last, on top
        colour = class_colour(d.class_id)
        b = d.pixel_box
        draw.rectangle([b.xmin, b.ymin, b.xmax - 1, b.ymax - 1], outline=colour, width=width)
        text = f"{d.label or d.class_id} {d.score:.2f}"
        above = b.ymin - px - 2 * max(1, px // 6) - width
        _label_band(
            draw, (b.xmin + width, above if above >= 0 else b.ymin + width), text, colour, px
        )
    return canvas


def draw_classifications(image: Image.Image, labels: Sequence[Label]) -> Image.Image:
    canvas = image.convert("RGB") if image.mode != "RGB" else image.copy()
    draw = ImageDraw.Draw(canvas)
    px = _font_size(canvas.size)
    y = px // 2
    for item in labels:
        _label_band(draw, (px // 2, y), f"{item.label or item.class_id} {item.score:.2f}",
                    class_colour(item.class_id), px)  # fmt: skip
        y += round(px * 1.6)
    return canvas


def encode(image: Image.Image, spec: AnnotateSpec) -> EncodedImage:
    buffer = io.BytesIO()
    if spec.png:
        image.save(buffer, "PNG", compress_level=3)
        return EncodedImage(buffer.getvalue(), "image/png", image.size)
    image.save(buffer, "JPEG", quality=min(max(spec.jpeg_quality or 90, 1), 95))
    return EncodedImage(buffer.getvalue(), "image/jpeg", image.size)
