"""Streams of frames and several models per request, end to end: ordered and as-ready delivery,
the per-stream window, dropping stale frames under a slow model, per-frame errors, cancellation
reaching TF Serving, and Analyze."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway._proto import classify_pb2, classify_pb2_grpc
from tests import images
from tests.conftest import GatewayProcess, ModelServerProcess, start_gateway, start_test_server
from tests.waiting import wait_until
from tests.wiretap import Wiretap

COLOURS = ["red", "green", "blue", "yellow"]
SLOW_MS = 300


def options(*models: str, **fields: object) -> classify_pb2.StreamRequest:
    tasks = [classify_pb2.ModelTask(model=classify_pb2.ModelRef(name=m), top_k=1) for m in models]
    return classify_pb2.StreamRequest(options=classify_pb2.StreamOptions(tasks=tasks, **fields))


def frame(frame_id: int, image: bytes) -> classify_pb2.StreamRequest:
    return classify_pb2.StreamRequest(
        frame=classify_pb2.Frame(frame_id=frame_id, image=image, timestamp_us=frame_id * 40_000)
    )


def colour_frames(count: int) -> list[bytes]:
    return [images.solid(COLOURS[i % 4], (160, 120)) for i in range(count)]


def stream(stub, messages: list[classify_pb2.StreamRequest], pause_s: float = 0.0) -> list:
    def send() -> Iterator[classify_pb2.StreamRequest]:
        for message in messages:
            yield message
            time.sleep(pause_s)  # paces the frames like a camera: the drop-stale test's subject

    return list(stub.Stream(send(), timeout=60))


def label_of(response: classify_pb2.StreamResponse, task: int = 0) -> str:
    return response.result.results[task].classifications[0].label


def test_ordered_stream_returns_each_frames_labels_in_frame_order(stub) -> None:
    frames = colour_frames(12)
    responses = stream(
        stub, [options("colors", window=4)] + [frame(i, f) for i, f in enumerate(frames)]
    )
    assert [r.result.frame_id for r in responses] == list(range(12))
    assert [label_of(r) for r in responses] == [COLOURS[i % 4] for i in range(12)]
    assert [r.result.timestamp_us for r in responses] == [i * 40_000 for i in range(12)]
    assert {(r.result.image_size.width, r.result.image_size.height) for r in responses} == {
        (160, 120)
    }


def test_as_ready_stream_returns_every_frame_once_with_its_own_labels(stub) -> None:
    frames = colour_frames(12)
    messages = [options("colors", window=6, delivery=classify_pb2.DELIVERY_AS_READY)]
    responses = stream(stub, messages + [frame(i, f) for i, f in enumerate(frames)])
    assert sorted(r.result.frame_id for r in responses) == list(range(12))
    assert all(label_of(r) == COLOURS[r.result.frame_id % 4] for r in responses)


def test_several_models_per_frame(stub) -> None:
    scene = images.encode(images.scene(), "PNG")
    responses = stream(stub, [options("colors", "shapes"), frame(7, scene)])
    [response] = responses
    classifier, detector = response.result.results
    assert (classifier.model.name, classifier.kind) == (
        "colors",
        classify_pb2.MODEL_KIND_CLASSIFICATION,
    )
    assert classifier.classifications[0].label == "black"
    assert [d.label for d in detector.detections] == ["red", "blue"]
    assert detector.kind == classify_pb2.MODEL_KIND_DETECTION


def test_a_bad_frame_gets_its_own_error_and_the_stream_goes_on(stub) -> None:
    frames = [images.solid("red"), b"not an image", images.solid("blue")]
    responses = stream(stub, [options("colors")] + [frame(i, f) for i, f in enumerate(frames)])
    assert [r.WhichOneof("message") for r in responses] == ["result", "error", "result"]
    error = responses[1].error
    assert (error.frame_id, error.code) == (1, "INVALID_ARGUMENT")
    assert error.message.startswith("the data is not an image in a supported format")
    assert label_of(responses[2]) == "blue"


@pytest.mark.parametrize(
    ("first", "code", "message"),
    [
        (frame(0, b"x"), grpc.StatusCode.INVALID_ARGUMENT,
         "the first message of a stream must be its options"),
        (options("resnet"), grpc.StatusCode.NOT_FOUND,
         "model 'resnet' is not served by this gateway (models: colors, colors_bytes, shapes)"),
        (options("colors", window=99), grpc.StatusCode.INVALID_ARGUMENT,
         "window 99 is over the gateway's max_stream_window of 32"),
        (options(), grpc.StatusCode.INVALID_ARGUMENT, "at least one model is required"),
    ],
)  # fmt: skip
def test_stream_level_errors_end_the_stream_with_a_status(stub, first, code, message) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stream(stub, [first, frame(1, images.solid("red"))])
    assert (caught.value.code(), caught.value.details()) == (code, message)


def test_analyze_runs_several_models_on_one_image(stub) -> None:
    tasks = [
        classify_pb2.ModelTask(model=classify_pb2.ModelRef(name="colors", version=1), top_k=1),
        classify_pb2.ModelTask(model=classify_pb2.ModelRef(name="colors", version=2), top_k=1),
        classify_pb2.ModelTask(model=classify_pb2.ModelRef(name="colors_bytes"), top_k=1),
    ]
    response = stub.Analyze(
        classify_pb2.AnalyzeRequest(
            image=images.framed("red", "blue"), tasks=tasks, request_id="a1"
        )
    )
    assert response.request_id == "a1"
    assert [
        (r.model.name, r.model.version, r.classifications[0].label) for r in response.results
    ] == [
        ("colors", 1, "red"),
        ("colors", 2, "blue"),
        ("colors_bytes", 1, "red"),
    ]


# --- against a slow model: window, drops, cancellation -----------------------------------------


@pytest.fixture(scope="module")
def slow(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, Wiretap]]:
    server: ModelServerProcess = start_test_server(
        models_dir / "models.config", "--test_latency_ms", str(SLOW_MS)
    )
    tap = Wiretap(server.target)
    config = tmp_path_factory.mktemp("slow") / "gateway.toml"
    labels = models_dir / "colors" / "labels.txt"
    config.write_text(
        f'upstream = "{tap.target}"\nstatus_poll_s = 60\n[models.colors]\nlabels = "{labels}"\n'
    )
    gateway = start_gateway(config)
    yield gateway, tap
    gateway.stop()
    tap.stop()
    server.stop()


def _stub(gateway: GatewayProcess) -> classify_pb2_grpc.ImageGatewayStub:
    return classify_pb2_grpc.ImageGatewayStub(grpc.insecure_channel(gateway.target))


def test_the_window_bounds_frames_in_flight_at_tf_serving(slow) -> None:
    gateway, tap = slow
    tap.reset_counts()
    frames = colour_frames(6)
    started = time.monotonic()
    responses = stream(
        _stub(gateway), [options("colors", window=2)] + [frame(i, f) for i, f in enumerate(frames)]
    )
    elapsed = time.monotonic() - started
    assert [label_of(r) for r in responses] == [COLOURS[i % 4] for i in range(6)]
    assert tap.max_in_flight == 2  # never more than the window, and the window was used
    assert elapsed > 3 * SLOW_MS / 1000  # 6 frames, 2 at a time, each SLOW_MS


def test_drop_stale_keeps_the_newest_frame_and_reports_every_dropped_one(slow) -> None:
    gateway, _ = slow
    frames = colour_frames(10)
    messages = [options("colors", window=1, drop_policy=classify_pb2.DROP_POLICY_DROP_STALE)]
    # 10 frames, one every 50 ms, against a model that takes 300 ms: most must be dropped.
    responses = stream(
        _stub(gateway), messages + [frame(i, f) for i, f in enumerate(frames)], pause_s=0.05
    )
    kinds = {}
    for r in responses:
        which = r.WhichOneof("message")
        kinds[getattr(r, which).frame_id] = which
    assert sorted(kinds) == list(range(10))  # every frame answered exactly once
    assert len(responses) == 10
    served = sorted(i for i, k in kinds.items() if k == "result")
    dropped = sorted(i for i, k in kinds.items() if k == "dropped")
    assert served[0] == 0 and served[-1] == 9  # the first, and the newest at the end
    assert len(dropped) >= 5
    assert all(
        r.dropped.reason == classify_pb2.DROP_REASON_STALE
        for r in responses
        if r.HasField("dropped")
    )
    assert [r.result.frame_id for r in responses if r.HasField("result")] == served  # ordered
    for r in responses:
        if r.HasField("result"):
            assert label_of(r) == COLOURS[r.result.frame_id % 4]


def test_cancelling_a_stream_cancels_its_calls_to_tf_serving(slow) -> None:
    gateway, tap = slow
    tap.reset_counts()
    before = len(tap.predict_requests())
    release = threading.Event()

    def send() -> Iterator[classify_pb2.StreamRequest]:
        yield options("colors", window=3)
        for i, image in enumerate(colour_frames(3)):
            yield frame(i, image)
        release.wait(10)  # keep the stream open until cancelled

    call = _stub(gateway).Stream(send(), timeout=30)
    wait_until(
        lambda: len(tap.predict_requests()) - before >= 3,
        5,
        0.01,
        "the frames never reached TF Serving",
    )
    call.cancel()
    release.set()
    wait_until(
        lambda: tap.cancelled >= 3,
        3,
        0.01,
        lambda: f"only {tap.cancelled} upstream calls were cancelled",
    )
    assert len(tap.predict_requests()) - before == 3
