"""Import time and memory of the gateway's TF Serving client versus the official stubs.

    .venv/bin/python bench/import_cost.py [--runs 5]

Each measurement runs in a fresh interpreter: the time to import what a Predict client needs
(and build one PredictRequest) and the process's peak RSS afterwards. Medians are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

PROBE = """
import json, resource, time
t0 = time.perf_counter()
{imports}
elapsed = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": elapsed, "max_rss_mib": rss}}))
"""
CLIENTS = {
    "gateway (gateway.tfserving.client)": (
        "import numpy as np\n"
        "from gateway.tfserving.client import UpstreamClient, ModelRef\n"
        "from gateway.tfserving.tensors import make_tensor_proto\n"
        "from gateway._proto.tfserving import predict_pb2\n"
        "r = predict_pb2.PredictRequest(); r.inputs['x'].CopyFrom("
        "make_tensor_proto(np.zeros((1, 224, 224, 3), np.float32)))"
    ),
    "official (tensorflow_serving.apis + tf.make_tensor_proto)": (
        "import numpy as np, grpc\n"
        "import tensorflow as tf\n"
        "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc\n"
        "r = predict_pb2.PredictRequest(); r.inputs['x'].CopyFrom("
        "tf.make_tensor_proto(np.zeros((1, 224, 224, 3), np.float32)))"
    ),
}


def measure(imports: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)],
        capture_output=True,
        text=True,
        check=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for name, imports in CLIENTS.items():
        runs = [measure(imports) for _ in range(args.runs)]
        results[name] = (
            statistics.median(r["seconds"] for r in runs),
            statistics.median(r["max_rss_mib"] for r in runs),
        )
        print(f"{name:60} import {results[name][0]:.3f} s   peak RSS {results[name][1]:.0f} MiB")
    (gw_s, gw_m), (tf_s, tf_m) = results.values()
    print(f"official / gateway: {tf_s / gw_s:.1f}x the import time, {tf_m / gw_m:.1f}x the memory")


if __name__ == "__main__":
    main()
