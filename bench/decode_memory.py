"""Peak RSS of decoding one image through the gateway's pipeline, per format and size.

Each case runs in a fresh process: build the encoded image, reset the RSS high-water mark
(Linux ``/proc/self/clear_refs`` 5), decode it to RGB at full size as ``decode_image`` does
(no JPEG draft: the worst case), and report the peak above the RSS before, per pixel.

    python bench/decode_memory.py            # the table in bench/results-memory.md
"""

from __future__ import annotations

import io
import subprocess
import sys

CASES = [
    ("WEBP", "RGBA", True),  # lossless
    ("PNG", "RGBA", False),
    ("JPEG", "CMYK", False),
    ("GIF", "P", False),
    ("BMP", "RGB", False),
    ("JPEG", "RGB", False),
    ("PNG", "RGB", False),
    ("WEBP", "RGB", False),  # lossy
]
SIZES = [(2000, 2000), (4000, 4000)]


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def one(fmt: str, mode: str, lossless: bool, width: int, height: int) -> None:
    import numpy as np
    from PIL import Image

    from gateway.decode import DecodeLimits, decode_image

    rng = np.random.default_rng(0)
    # Noise in a corner, flat elsewhere: decoders do full work, the file stays small.
    image = Image.new(mode, (width, height), (10, 20, 30, 40)[: len(mode)] if mode != "P" else 3)
    noise = rng.integers(0, 255, (64, 64, len(image.getbands())), np.uint8).squeeze()
    image.paste(Image.fromarray(noise, mode if mode != "P" else "L"), (0, 0))
    buffer = io.BytesIO()
    options = {"lossless": True} if lossless else {}
    image.save(buffer, fmt, **options)
    data = buffer.getvalue()
    del image, buffer, noise
    limits = DecodeLimits(max_pixels=10**9)
    decode_image(_tiny(fmt, mode), limits)  # warm: imports, plugins
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS")
    decoded = decode_image(data, limits)  # full size: no JPEG draft, the worst case
    peak = _status("VmHWM") - before
    del decoded
    pixels = width * height
    print(
        f"| {fmt} {mode} | {width}x{height} | {len(data):,} | {peak / 2**20:.0f} MiB "
        f"| {peak / pixels:.1f} |"
    )


def _tiny(fmt: str, mode: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (8, 8)).save(buffer, fmt)
    return buffer.getvalue()


def main() -> None:
    print("| format | size | file bytes | peak above start | bytes per pixel |")
    print("|---|---|---|---|---|")
    for fmt, mode, lossless in CASES:
        for width, height in SIZES:
            args = [fmt, mode, str(int(lossless)), str(width), str(height)]
            subprocess.run([sys.executable, __file__, *args], check=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        f, m, ll, w, h = sys.argv[1:]
        one(f, m, ll == "1", int(w), int(h))
    else:
        main()
