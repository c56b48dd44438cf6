"""Call TF Serving (or the test server) through the gateway's TensorFlow-free upstream client.

    python examples/upstream_client.py localhost:8500

Generates two images in code, preprocesses them as the ``colors`` model expects (224x224
float32 in [0, 1]) and asks version 1 (whole image) and version 2 (central half) what colour
they see; then runs the ``shapes`` detector on an image with a red rectangle.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np

from gateway.tfserving.client import UpstreamClient
from gateway.tfserving.options import UpstreamOptions
from gateway.tfserving.signatures import ModelRef

COLORS = ["red", "green", "blue", "yellow", "cyan", "magenta", "white", "black"]


async def main(target: str) -> None:
    images = np.zeros((2, 224, 224, 3), np.float32)
    images[0] = (0, 1, 0)  # all green
    images[1] = (1, 0, 0)  # red frame ...
    images[1, 56:168, 56:168] = (0, 0, 1)  # ... around a blue centre
    async with UpstreamClient(UpstreamOptions(target)) as tfserving:
        for version in (1, 2):
            result = await tfserving.predict(
                ModelRef("colors", version=version), {"images": images}
            )
            for name, probabilities in zip(
                ("green image", "framed image"), result.outputs["probabilities"], strict=True
            ):
                best = int(probabilities.argmax())
                print(
                    f"colors v{result.version}: {name:12} -> {COLORS[best]} "
                    f"({probabilities[best]:.4f})"
                )

        scene = np.zeros((1, 120, 160, 3), np.uint8)
        scene[0, 30:90, 40:100] = (255, 0, 0)
        result = await tfserving.predict(ModelRef("shapes"), {"input_tensor": scene})
        count = int(result.outputs["num_detections"][0])
        for box, score, cls in zip(
            result.outputs["detection_boxes"][0][:count],
            result.outputs["detection_scores"][0][:count],
            result.outputs["detection_classes"][0][:count],
            strict=True,
        ):
            print(
                f"shapes v{result.version}: class {int(cls)} score {score:.3f} box {box.round(3)}"
            )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "localhost:8500"))
