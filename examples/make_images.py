"""Write the demo images into a folder: what the demo models see in each is known in advance.

    python examples/make_images.py OUT_DIR

- red.jpg, green.png, blue.webp: one colour each (the ``colors`` model names it);
- framed.png: a red frame around a blue centre (``colors`` v1 says red, v2 says blue);
- scene.png: a red and a blue rectangle on black (``shapes`` finds both boxes);
- scene-rotated.jpg: the same scene stored turned, with EXIF orientation 6 (boxes come back in
  the displayed frame all the same).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (640, 480), (220, 20, 30)).save(out / "red.jpg", quality=92)
    Image.new("RGB", (320, 240), (10, 200, 40)).save(out / "green.png")
    Image.new("RGB", (300, 300), (20, 30, 230)).save(out / "blue.webp")

    framed = Image.new("RGB", (400, 400), (255, 0, 0))
    ImageDraw.Draw(framed).rectangle([100, 100, 299, 299], fill=(0, 0, 255))
    framed.save(out / "framed.png")

    scene = Image.new("RGB", (400, 300), (0, 0, 0))
    draw = ImageDraw.Draw(scene)
    draw.rectangle([40, 30, 139, 129], fill=(255, 0, 0))
    draw.rectangle([200, 150, 349, 259], fill=(0, 0, 255))
    scene.save(out / "scene.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    scene.transpose(Image.Transpose.ROTATE_90).save(
        out / "scene-rotated.jpg", quality=100, subsampling=0, exif=exif.tobytes()
    )
    for path in sorted(out.iterdir()):
        print(path)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/images"))
