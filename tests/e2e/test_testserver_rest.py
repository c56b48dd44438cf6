"""The test server's REST API speaks TF Serving's format (the REST fallback builds on it)."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import pytest
from PIL import Image

from tests.conftest import ModelServerProcess


def rest(server: ModelServerProcess, path: str, body: object = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://localhost:{server.rest_port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def test_status_and_metadata(tfserving: ModelServerProcess) -> None:
    assert rest(tfserving, "/v1/models/colors/versions/1") == (
        200,
        {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]},
    )
    status, metadata = rest(tfserving, "/v1/models/colors/labels/canary/metadata")
    assert status == 200
    assert metadata["model_spec"] == {"name": "colors", "signature_name": "", "version": "2"}
    inputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert inputs["images"]["dtype"] == "DT_FLOAT"


def test_row_and_columnar_predict(tfserving: ModelServerProcess) -> None:
    red = [[[1.0, 0.0, 0.0]] * 224] * 224
    status, body = rest(tfserving, "/v1/models/colors/versions/1:predict", {"instances": [red]})
    assert status == 200
    assert body["predictions"][0]["class_id"] == 0
    status, body = rest(tfserving, "/v1/models/colors:predict", {"inputs": {"images": [red]}})
    assert status == 200
    assert body["outputs"]["class_id"] == [0]


def test_binary_input_as_b64(tfserving: ModelServerProcess) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 255, 0)).save(buffer, "PNG")
    blob = {"b64": base64.b64encode(buffer.getvalue()).decode()}
    status, body = rest(tfserving, "/v1/models/colors_bytes:predict", {"instances": [blob]})
    assert status == 200
    assert body["predictions"][0]["class_id"] == 1
    assert body["predictions"][0]["byte_length"] == len(buffer.getvalue())


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        (
            "/v1/models/nope:predict",
            {"instances": [1]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "/v1/models/colors/labels/x:predict",
            {"instances": [1]},
            400,
            "Unrecognized servable version label: x",
        ),
        (
            "/v1/models/colors:predict",
            {"inputs": {"image": [1]}},
            400,
            "input tensor alias not found in signature: image. "
            "Inputs expected to be in the set {images}.",
        ),
        (
            "/v1/models/colors:predict",
            {"instances": [[1.0, 2.0]]},
            400,
            "input images has shape [1, 2], incompatible with the signature's shape "
            "[-1, 224, 224, 3] (-1: any size)",
        ),
    ],
)
def test_errors_are_json_with_tf_servings_http_status(
    tfserving: ModelServerProcess, path: str, body: object, status: int, error: str
) -> None:
    assert rest(tfserving, path, body) == (status, {"error": error})
