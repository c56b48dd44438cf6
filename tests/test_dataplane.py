"""The data plane in process, against a fake TF Serving: what a caller gets back (labels and
scores, one result per task), which errors it gets and with what message, what reaches the
wire, and what is timed and counted.

The models take uint8 pixels as they are (no normalisation), and the fake answers each image
with its mean colour, so a solid PNG of colour (r, g, b) scores exactly r, g and b.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from gateway import pipeline
from gateway._proto.tfserving import types_pb2
from gateway.choices import ModelKind
from gateway.config import GatewayConfig, ModelSettings
from gateway.dataplane import DataPlane
from gateway.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    UpstreamError,
    WrongModelKindError,
)
from gateway.inference import Classifications, ImageRequest, InferenceResult, Task
from gateway.labels import Label
from gateway.metrics import STAGES, Metrics
from gateway.tfserving.signatures import ModelMetadata, ModelRef, VersionState, VersionStatus
from tests.fakes import FakeUpstream, classifier
from tests.images import encode

UINT8 = types_pb2.DT_UINT8
NEVER_MS = 3_600_000.0  # a batch wait that never elapses in a test: batches go out when full
COLOUR = (200, 50, 100)  # red first, then blue, then green
COLORS = Task(ModelRef("colors"))
ONE_MODEL = GatewayConfig(models=(ModelSettings("colors"),))


def png(colour: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> bytes:
    """A solid PNG: lossless, so the model sees exactly ``colour`` in every pixel."""
    return encode(Image.new("RGB", size, colour), "PNG")


def colors_model(version: int = 1) -> ModelMetadata:
    """``colors``: uint8 [-1, 8, 8, 3] in, three scores out."""
    return classifier("colors", version, input_dtype=UINT8)


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    path = tmp_path / "colors.txt"
    path.write_text("red\ngreen\nblue\n")
    return path


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


@dataclass
class Gateway:
    dataplane: DataPlane
    upstream: FakeUpstream
    registry: CollectorRegistry

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def serve(
    executor: ThreadPoolExecutor,
    config: GatewayConfig,
    test: Callable[[Gateway], Awaitable[None]],
    upstream: FakeUpstream | None = None,
) -> Gateway:
    """Run an async test body on a fresh loop against a data plane whose models are refreshed
    (ready, if the fake serves them); a hang fails after 5 s."""
    upstream = upstream or FakeUpstream(colors_model())
    registry = CollectorRegistry()
    metrics = Metrics(registry, tuple(m.name for m in config.models))
    gateway = Gateway(DataPlane(config, upstream, metrics, executor), upstream, registry)

    async def body() -> None:
        async with asyncio.timeout(5):
            await gateway.dataplane.refresh()
            await test(gateway)

    asyncio.run(body())
    return gateway


async def classify(
    gateway: Gateway, task: Task, image: bytes, timeout_s: float | None = None
) -> InferenceResult:
    return await gateway.dataplane.classify(ImageRequest(task, image, timeout_s))


def labelled(labels: Path, **settings: object) -> GatewayConfig:
    """``colors`` with its label file and these settings."""
    return GatewayConfig(models=(ModelSettings("colors", labels=labels, **settings),))


# --- what a caller gets back ------------------------------------------------------------------


def test_classify_gives_the_label_map_names_and_mean_colour_scores(executor, labels) -> None:
    async def test(gateway: Gateway) -> None:
        result = await classify(gateway, COLORS, png(COLOUR))
        assert result.outputs == Classifications(
            [Label(0, "red", 200.0), Label(2, "blue", 100.0), Label(1, "green", 50.0)]
        )
        assert (result.model, result.signature_name, result.image_size, result.kind) == (
            "colors",
            "serving_default",
            (8, 8),
            ModelKind.CLASSIFICATION,
        )

    serve(executor, labelled(labels), test)


def test_top_k_and_min_score_left_at_zero_take_the_models_settings(executor, labels) -> None:
    config = labelled(labels, top_k=2, min_score=60.0)

    async def test(gateway: Gateway) -> None:
        result = await classify(gateway, COLORS, png(COLOUR))
        assert result.outputs == Classifications([Label(0, "red", 200.0), Label(2, "blue", 100.0)])
        result = await classify(gateway, Task(ModelRef("colors"), min_score=150.0), png(COLOUR))
        assert result.outputs == Classifications([Label(0, "red", 200.0)])

    serve(executor, config, test)


def test_the_tasks_top_k_and_min_score_override_the_models_settings(executor, labels) -> None:
    config = labelled(labels, top_k=1, min_score=150.0)

    async def test(gateway: Gateway) -> None:
        task = Task(ModelRef("colors"), top_k=3, min_score=40.0)
        result = await classify(gateway, task, png(COLOUR))
        assert result.outputs == Classifications(
            [Label(0, "red", 200.0), Label(2, "blue", 100.0), Label(1, "green", 50.0)]
        )

    serve(executor, config, test)


TWO_MODELS = GatewayConfig(models=(ModelSettings("colors"), ModelSettings("thumbs")))


def two_models() -> FakeUpstream:
    """``colors`` (8x8) and ``thumbs`` (4x4): the same image goes to each at its own size."""
    return FakeUpstream(colors_model(), classifier("thumbs", size=(4, 4), input_dtype=UINT8))


def test_run_returns_one_result_per_task_in_task_order(executor) -> None:
    async def test(gateway: Gateway) -> None:
        tasks = [Task(ModelRef("thumbs"), top_k=1), Task(ModelRef("colors"), top_k=1)]
        results = await gateway.dataplane.run(png(COLOUR, (16, 16)), tasks)
        assert [(r.model, r.outputs) for r in results] == [
            ("thumbs", Classifications([Label(0, "", 200.0)])),
            ("colors", Classifications([Label(0, "", 200.0)])),
        ]

    serve(executor, TWO_MODELS, test, two_models())


def test_run_sends_one_predict_per_model_each_at_its_models_size(executor) -> None:
    async def test(gateway: Gateway) -> None:
        tasks = [Task(ModelRef("thumbs")), Task(ModelRef("colors"))]
        await gateway.dataplane.run(png(COLOUR, (16, 16)), tasks)

    upstream = serve(executor, TWO_MODELS, test, two_models()).upstream
    assert sorted((s.model.name, s.inputs["images"].shape) for s in upstream.sent) == [
        ("colors", (1, 8, 8, 3)),
        ("thumbs", (1, 4, 4, 3)),
    ]


def test_run_decodes_the_image_once_for_several_models(executor, monkeypatch) -> None:
    decodes: list[bytes] = []
    decode_image = pipeline.decode_image

    def counting_decode(data: bytes, *args: object, **kwargs: object) -> pipeline.DecodedImage:
        decodes.append(data)
        return decode_image(data, *args, **kwargs)

    monkeypatch.setattr(pipeline, "decode_image", counting_decode)
    image = png(COLOUR, (16, 16))

    async def test(gateway: Gateway) -> None:
        await gateway.dataplane.run(image, [Task(ModelRef("thumbs")), Task(ModelRef("colors"))])

    serve(executor, TWO_MODELS, test, two_models())
    assert decodes == [image]


# --- errors, before any work and from upstream -------------------------------------------------


def test_detect_on_a_classification_model_is_the_wrong_kind(executor) -> None:
    async def test(gateway: Gateway) -> None:
        with pytest.raises(WrongModelKindError) as error:
            await gateway.dataplane.detect(ImageRequest(COLORS, png(COLOUR)))
        assert error.value.message == "model 'colors' is a classification model: call Classify"

    assert serve(executor, ONE_MODEL, test).upstream.sent == []


def test_a_model_without_an_available_version_is_not_ready(executor) -> None:
    upstream = FakeUpstream(colors_model())
    upstream.statuses["colors"] = [VersionStatus(1, VersionState.LOADING, grpc.StatusCode.OK, "")]

    async def test(gateway: Gateway) -> None:
        with pytest.raises(ModelNotReadyError) as error:
            await classify(gateway, COLORS, png(COLOUR))
        assert error.value.message == (
            "model 'colors' is not ready: TF Serving has no AVAILABLE version"
        )

    assert serve(executor, ONE_MODEL, test, upstream).upstream.sent == []


def test_a_model_the_gateway_does_not_serve_is_not_found(executor) -> None:
    async def test(gateway: Gateway) -> None:
        with pytest.raises(ModelNotFoundError) as error:
            await classify(gateway, Task(ModelRef("shapes")), png(COLOUR))
        assert error.value.message == (
            "model 'shapes' is not served by this gateway (models: colors)"
        )

    serve(executor, ONE_MODEL, test)


def test_a_run_without_tasks_is_an_invalid_request(executor) -> None:
    async def test(gateway: Gateway) -> None:
        with pytest.raises(InvalidRequestError) as error:
            await gateway.dataplane.run(png(COLOUR), [])
        assert error.value.message == "at least one model is required"

    serve(executor, ONE_MODEL, test)


def test_an_empty_image_is_an_invalid_request(executor) -> None:
    async def test(gateway: Gateway) -> None:
        with pytest.raises(InvalidRequestError) as error:
            await classify(gateway, COLORS, b"")
        assert error.value.message == "image is required (the encoded image bytes)"

    serve(executor, ONE_MODEL, test)


def invalid_argument() -> UpstreamError:
    return UpstreamError(
        grpc.StatusCode.INVALID_ARGUMENT, "input size mismatch", "tensorflow.serving.Predict"
    )


def test_an_upstream_invalid_argument_says_the_models_profile_does_not_fit(executor) -> None:
    upstream = FakeUpstream(colors_model())
    upstream.fail("send", invalid_argument())

    async def test(gateway: Gateway) -> None:
        with pytest.raises(UpstreamError) as error:
            await classify(gateway, COLORS, png(COLOUR))
        assert (error.value.code, error.value.message) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "upstream: input size mismatch (the tensor built from model 'colors''s "
            "preprocessing profile does not match what TF Serving expects: check the profile)",
        )

    serve(executor, ONE_MODEL, test, upstream)


def test_an_upstream_error_is_counted_by_model_and_code(executor) -> None:
    upstream = FakeUpstream(colors_model())
    upstream.fail("send", invalid_argument())

    async def test(gateway: Gateway) -> None:
        with pytest.raises(UpstreamError):
            await classify(gateway, COLORS, png(COLOUR))
        await classify(gateway, COLORS, png(COLOUR))  # a success counts nothing

    gateway = serve(executor, ONE_MODEL, test, upstream)
    errors = "tfs_gateway_upstream_errors_total"
    assert gateway.sample(errors, model="colors", code="INVALID_ARGUMENT") == 1.0


# --- micro-batching -----------------------------------------------------------------------------

BATCHED = GatewayConfig(
    models=(ModelSettings("colors", batch_max_size=3, batch_max_wait_ms=NEVER_MS),)
)
THREE_COLOURS = [(200, 50, 100), (10, 20, 30), (0, 255, 128)]


async def three_concurrent_runs(gateway: Gateway) -> list[InferenceResult]:
    return await asyncio.gather(
        *(classify(gateway, Task(ModelRef("colors"), top_k=3), png(c)) for c in THREE_COLOURS)
    )


def test_concurrent_runs_of_a_micro_batched_model_share_one_predict(executor) -> None:
    upstream = serve(executor, BATCHED, three_concurrent_runs).upstream
    assert [sent.rows for sent in upstream.sent] == [3]


def test_each_micro_batched_run_gets_its_own_answer(executor) -> None:
    async def test(gateway: Gateway) -> None:
        results = await three_concurrent_runs(gateway)
        assert [[label.score for label in r.outputs.labels] for r in results] == [
            [200.0, 100.0, 50.0],
            [30.0, 20.0, 10.0],
            [255.0, 128.0, 0.0],
        ]

    serve(executor, BATCHED, test)


# --- what reaches the wire, what comes back ---------------------------------------------------


def test_the_version_asked_for_reaches_the_wire_and_answers(executor) -> None:
    async def test(gateway: Gateway) -> None:
        result = await classify(gateway, Task(ModelRef("colors", version=1)), png(COLOUR))
        assert result.version == 1

    upstream = FakeUpstream(colors_model(1), colors_model(2))
    (sent,) = serve(executor, ONE_MODEL, test, upstream).upstream.sent
    assert sent.model == ModelRef("colors", 1, None, "serving_default")


def test_a_version_label_reaches_the_wire_and_the_result_names_the_version_that_answered(
    executor,
) -> None:
    async def test(gateway: Gateway) -> None:
        task = Task(ModelRef("colors", version_label="canary"))
        result = await classify(gateway, task, png(COLOUR))
        assert result.version == 2  # the fake answers a label with its latest version

    upstream = FakeUpstream(colors_model(1), colors_model(2))
    (sent,) = serve(executor, ONE_MODEL, test, upstream).upstream.sent
    assert sent.model == ModelRef("colors", None, "canary", "serving_default")


def test_the_callers_timeout_reaches_the_upstream_send(executor) -> None:
    async def test(gateway: Gateway) -> None:
        await classify(gateway, COLORS, png(COLOUR), timeout_s=7.5)

    (sent,) = serve(executor, ONE_MODEL, test).upstream.sent
    assert sent.timeout == 7.5


# --- timings and stage metrics ----------------------------------------------------------------


def test_stage_timings_are_not_negative_and_the_total_covers_the_upstream(executor) -> None:
    async def test(gateway: Gateway) -> None:
        timings = (await classify(gateway, COLORS, png(COLOUR))).timings
        assert min(timings.decode_s, timings.preprocess_s, timings.upstream_s,
                   timings.postprocess_s) >= 0  # fmt: skip
        assert timings.total_s >= timings.upstream_s

    serve(executor, ONE_MODEL, test)


def test_stage_histograms_count_one_observation_per_call(executor) -> None:
    async def test(gateway: Gateway) -> None:
        await classify(gateway, COLORS, png(COLOUR))
        await classify(gateway, COLORS, png(COLOUR))

    gateway = serve(executor, ONE_MODEL, test)
    counts = {
        stage: gateway.sample(
            "tfs_gateway_stage_duration_seconds_count", stage=stage, model="colors"
        )
        for stage in STAGES
    }
    assert counts == dict.fromkeys(STAGES, 2.0)
