"""The in-process tests of the core, and their fake TF Serving, load no TensorFlow: checked in a
fresh interpreter, since other test modules in the same pytest run do import it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

CORE_TESTS = (
    "tests.fakes",
    "tests.test_batching",
    "tests.test_models",
    "tests.test_retry_policy",
    "tests.test_metrics",
)
SCRIPT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(
    m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_serving", "keras")
)))
"""


def test_the_core_tests_import_no_tensorflow() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *CORE_TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == []
