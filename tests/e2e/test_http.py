"""The HTTP/JSON front and annotated images, end to end: the same gateway process the gRPC tests
use, called over HTTP; JSON checked exactly and against the OpenAPI document; annotated
images checked in pixels."""

from __future__ import annotations

import io
import json
import re
import urllib.error
import urllib.request
import uuid

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from jsonschema import Draft202012Validator
from PIL import Image

from gateway._proto import classify_pb2
from gateway.drawing import class_colour, line_width
from tests import images
from tests.conftest import GatewayProcess
from tests.e2e.conftest import MAX_MESSAGE_BYTES


def http(
    gateway: GatewayProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/octet-stream",
) -> tuple[int, str, bytes]:
    request = urllib.request.Request(gateway.http + path, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get_content_type(), error.read()


def post_json(gateway: GatewayProcess, path: str, image: bytes, **kw) -> tuple[int, dict]:
    status, content_type, body = http(gateway, "POST", path, image, **kw)
    assert content_type == "application/json"
    return status, json.loads(body)


def openapi(gateway: GatewayProcess) -> dict:
    status, _, body = http(gateway, "GET", "/openapi.json")
    assert status == 200
    return json.loads(body)


def assert_matches_schema(doc: dict, schema: str, instance: object) -> None:
    Draft202012Validator({**doc, "$ref": f"#/components/schemas/{schema}"}).validate(instance)


# --- JSON API --------------------------------------------------------------------------------


def test_classify_over_http_returns_the_grpc_response_as_json(
    gateway: GatewayProcess, stub
) -> None:
    image = images.solid("red")
    status, body = post_json(gateway, "/v1/models/colors:classify?top_k=2&request_id=r1", image)
    assert status == 200
    grpc_response = stub.Classify(
        classify_pb2.ClassifyRequest(
            model={"name": "colors"}, image=image, top_k=2, request_id="r1"
        )
    )
    expected = json_format.MessageToDict(
        grpc_response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for response in (body, expected):
        del response["timings"]  # differs call to call
    assert body == expected
    assert [(c["label"], c["class_id"]) for c in body["classifications"]] == [
        ("red", "0"),
        ("black", "7"),
    ]
    assert body["model"] == {"name": "colors", "version": "2", "signature_name": "serving_default"}
    assert body["image_size"] == {"width": 640, "height": 480}


def test_detect_over_http_with_a_multipart_upload(gateway: GatewayProcess) -> None:
    boundary = uuid.uuid4().hex
    image = images.encode(images.scene(), "PNG")
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="min_score"\r\n\r\n0.5\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="s.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, body = post_json(
        gateway,
        "/v1/models/shapes:detect",
        form,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert status == 200
    assert [(d["label"], d["class_id"], d["score"]) for d in body["detections"]] == [
        ("red", "1", 1.0),
        ("blue", "3", 1.0),
    ]
    red = body["detections"][0]["pixel_box"]
    np.testing.assert_allclose(
        [red["xmin"], red["ymin"], red["xmax"], red["ymax"]], [40, 30, 140, 130], atol=1.25
    )


def test_models_listing_and_description(gateway: GatewayProcess) -> None:
    status, _, body = http(gateway, "GET", "/v1/models")
    assert status == 200
    assert [m["name"] for m in json.loads(body)["models"]] == ["colors", "colors_bytes", "shapes"]
    status, _, body = http(gateway, "GET", "/v1/models/shapes")
    assert (status, json.loads(body)["kind"]) == (200, "MODEL_KIND_DETECTION")


def test_health_endpoints(gateway: GatewayProcess) -> None:
    assert http(gateway, "GET", "/healthz")[::2] == (200, b'{"status": "SERVING"}')
    assert http(gateway, "GET", "/readyz")[::2] == (200, b'{"status": "SERVING"}')


HTTP_ERRORS = [
    ("/v1/models/colors:classify", b"not an image", 400, "INVALID_ARGUMENT"),
    ("/v1/models/nope:classify", images.solid("red"), 404, "NOT_FOUND"),
    ("/v1/models/colors:classify?version=9", images.solid("red"), 404, "NOT_FOUND"),
    ("/v1/models/colors:classify?top_k=many", images.solid("red"), 400, "INVALID_ARGUMENT"),
    ("/v1/models/shapes:classify", images.solid("red"), 400, "FAILED_PRECONDITION"),
    ("/v1/models/colors:classify", b"\xff" * (MAX_MESSAGE_BYTES + 1), 413, "RESOURCE_EXHAUSTED"),
]


@pytest.mark.parametrize(
    ("path", "image", "status", "code"), HTTP_ERRORS, ids=[e[0] + str(e[2]) for e in HTTP_ERRORS]
)
def test_errors_are_json_with_the_tables_http_status(
    gateway: GatewayProcess, path: str, image: bytes, status: int, code: str
) -> None:
    got_status, body = post_json(gateway, path, image)
    assert (got_status, body["error"]["code"]) == (status, code)
    assert body["error"]["message"]
    if status == 413:
        assert body["error"]["message"] == (
            f"the request body is over the gateway's limit of {MAX_MESSAGE_BYTES} bytes"
        )
    assert_matches_schema(openapi(gateway), "Error", body)


def test_error_messages_match_grpcs(gateway: GatewayProcess) -> None:
    _, body = post_json(gateway, "/v1/models/colors:classify", b"not an image")
    assert body["error"]["message"] == (
        "the data is not an image in a supported format (JPEG, PNG, WEBP, BMP, GIF); "
        "first bytes: 6e6f7420616e2069"
    )


# --- OpenAPI ---------------------------------------------------------------------------------


def test_openapi_document_lists_exactly_the_served_routes(gateway: GatewayProcess) -> None:
    doc = openapi(gateway)
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    served = {
        ("/", "GET"), ("/page.js", "GET"), ("/page.css", "GET"), ("/openapi.json", "GET"),
        ("/healthz", "GET"), ("/readyz", "GET"),
        ("/v1/models", "GET"), ("/v1/models/{name}", "GET"), ("/v1/models/{name}:classify", "POST"),
        ("/v1/models/{name}:detect", "POST"), ("/v1/models/{name}:annotate", "POST"),
    }  # fmt: skip
    assert documented == served
    for path, method in served:  # each documented route answers (not 404/405 from the router)
        concrete = path.replace(
            "{name}", "colors" if "classify" in path or "annotate" in path else "shapes"
        )
        status, _, _ = http(
            gateway, method, concrete, images.solid("red") if method == "POST" else None
        )
        assert status == 200, (method, concrete)


def test_responses_match_the_openapi_schemas(gateway: GatewayProcess) -> None:
    doc = openapi(gateway)
    _, classified = post_json(
        gateway, "/v1/models/colors:classify?annotate=true", images.solid("red")
    )
    assert_matches_schema(doc, "ClassifyResponse", classified)
    _, detected = post_json(
        gateway, "/v1/models/shapes:detect", images.encode(images.scene(), "PNG")
    )
    assert_matches_schema(doc, "DetectResponse", detected)
    assert_matches_schema(
        doc, "ListModelsResponse", json.loads(http(gateway, "GET", "/v1/models")[2])
    )
    with pytest.raises(Exception, match="is a required property"):
        assert_matches_schema(doc, "DetectResponse", {"detections": []})  # the check can fail


# --- annotated images ------------------------------------------------------------------------


def _annotated_detection(gateway: GatewayProcess, fmt: str) -> Image.Image:
    status, content_type, body = http(
        gateway,
        "POST",
        f"/v1/models/shapes:annotate?format={fmt}",
        images.encode(images.scene(), "PNG"),
    )
    assert (status, content_type) == (200, f"image/{fmt}")
    return Image.open(io.BytesIO(body)).convert("RGB")


def test_annotated_boxes_are_drawn_in_the_class_colour_where_the_boxes_are(
    gateway: GatewayProcess,
) -> None:
    drawn = np.asarray(_annotated_detection(gateway, "png"))
    assert drawn.shape == (300, 400, 3)  # the original image's size, not the model's 320x320
    width = line_width((400, 300))
    for name, class_id in (("red", 1), ("blue", 3)):
        x0, y0, x1, y1 = images.SCENE_BOXES[name]
        colour = class_colour(class_id)
        # Left and bottom outline, halfway along (the label band covers the top edge), allowing
        # for the box's mapping back through the letterbox (1.25 px).
        left = drawn[(y0 + y1) // 2, x0 : x0 + width]
        bottom = drawn[y1 - width : y1, (x0 + x1) // 2]
        assert (left == colour).all(axis=1).sum() >= width - 1, (name, left)
        assert (bottom == colour).all(axis=1).sum() >= width - 1, (name, bottom)
        # The inside stays the image's own colour.
        assert drawn[(y0 + y1) // 2, (x0 + x1) // 2].tolist() == list(images.COLOURS[name])


def test_annotated_jpeg_and_grpc_annotated_image(gateway: GatewayProcess, stub) -> None:
    jpeg = np.asarray(_annotated_detection(gateway, "jpeg"), np.int16)
    x0, y0, _, y1 = images.SCENE_BOXES["blue"]
    # JPEG smears a 2 px line over its neighbours; it still reads as the class colour.
    pixel = jpeg[(y0 + y1) // 2, x0 + 1]
    assert np.abs(pixel - class_colour(3)).sum() < np.abs(pixel - images.COLOURS["blue"]).sum()
    png = classify_pb2.AnnotateOptions(enabled=True, format=classify_pb2.IMAGE_FORMAT_PNG)
    image = images.rotated_jpeg(images.scene(), 6)
    response = stub.Classify(
        classify_pb2.ClassifyRequest(model={"name": "colors"}, image=image, annotate=png)
    )
    annotated = response.annotated_image
    assert (annotated.mime_type, annotated.size.width, annotated.size.height) == (
        "image/png",
        400,
        300,
    )
    drawn = np.asarray(Image.open(io.BytesIO(annotated.data)).convert("RGB"))
    assert drawn.shape == (300, 400, 3)  # drawn on the displayed (rotated back) image
    label = response.classifications[0]
    band = drawn[5:20, 5:60].reshape(-1, 3)
    assert (band == class_colour(label.class_id)).all(axis=1).any()  # the top label's band


def test_no_annotated_image_unless_asked(stub) -> None:
    response = stub.Classify(
        classify_pb2.ClassifyRequest(model={"name": "colors"}, image=images.solid("red"))
    )
    assert not response.HasField("annotated_image")


def test_http_requests_are_counted_apart_from_grpc(gateway: GatewayProcess) -> None:
    post_json(gateway, "/v1/models/colors:classify", images.solid("red"))
    status, _, _ = http(gateway, "GET", "/metrics")
    metrics = (
        urllib.request.urlopen(f"http://localhost:{gateway.metrics_port}/metrics", timeout=10)
        .read()
        .decode()
    )
    assert re.search(
        r'tfs_gateway_requests_total\{code="OK",method="http.Classify",model="colors"\} [1-9]',
        metrics,
    )
    assert status == 404  # /metrics lives on the metrics port, not the HTTP API's


def test_grpc_status_codes_map_to_http_statuses() -> None:
    from gateway.errors import HTTP_STATUS

    assert {code.name: int(status) for code, status in HTTP_STATUS.items() if code.name in (
        "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED",
    )} == {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503,
           "DEADLINE_EXCEEDED": 504}  # fmt: skip
    assert grpc.StatusCode.INTERNAL in HTTP_STATUS
