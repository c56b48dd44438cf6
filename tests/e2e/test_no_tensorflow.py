"""The hard rule: a process that imports and uses the gateway's upstream client never loads
TensorFlow (it costs ~4 s and ~630 MiB)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, ModelServerProcess

SCRIPT = """
import asyncio, json, sys
import numpy as np
from gateway.tfserving.signatures import ModelRef
from gateway.tfserving.client import UpstreamClient
from gateway.tfserving.options import UpstreamOptions

async def main(target):
    async with UpstreamClient(UpstreamOptions(target)) as client:
        await client.metadata(ModelRef("colors"))
        await client.status(ModelRef("colors"))
        image = np.zeros((1, 224, 224, 3), np.float32)
        image[..., 2] = 1
        prediction = await client.predict(ModelRef("colors"), {"images": image})
        return int(prediction.outputs["class_id"][0])

class_id = asyncio.run(main(sys.argv[1]))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_serving"))
print(json.dumps({"class_id": class_id, "tensorflow_modules": loaded}))
"""


def test_upstream_client_process_never_imports_tensorflow(tfserving: ModelServerProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, tfserving.target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report == {"class_id": 2, "tensorflow_modules": []}


def test_gateway_package_has_no_tensorflow_import() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "gateway").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.lstrip().startswith(("import tensorflow", "from tensorflow"))
    ]
    assert offenders == []
