"""The micro-batcher in process, against a fake TF Serving: what it merges, when it sends, how it
splits the answer back, and what a failure, a cancelled caller or a deadline does to a batch.

Every caller sends its own solid colour, and the fake answers each row with its mean colour,
so a caller that got someone else's row would see the wrong colour. Batches are read from the
serialised PredictRequests the fake received.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from gateway import batching
from gateway._proto.tfserving import types_pb2
from gateway.batching import Batcher
from gateway.errors import UpstreamError
from gateway.metrics import Metrics
from gateway.tfserving.signatures import ModelRef, Prediction
from tests.fakes import FakeUpstream, classifier, unavailable

COLORS = ModelRef("colors")
NEVER = 3600.0  # a max wait that never elapses in a test: batches go out when full


def image(n: int) -> np.ndarray:
    """A 1x8x8x3 image of solid colour (n, n + 0.5, n + 0.25): its mean colour, exactly."""
    return np.broadcast_to(np.array([n, n + 0.5, n + 0.25], np.float32), (1, 8, 8, 3)).copy()


def scores(n: int) -> np.ndarray:
    return np.array([[n, n + 0.5, n + 0.25]], np.float32)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def run(test: Callable[[FakeUpstream], Awaitable[None]]) -> FakeUpstream:
    """Run an async test body on a fresh loop with a fresh fake; a hang fails after 5 s."""
    upstream = FakeUpstream(classifier("colors", 1), classifier("colors", 2))

    async def body() -> None:
        await asyncio.wait_for(test(upstream), timeout=5)

    asyncio.run(body())
    return upstream


def make_batcher(
    upstream: FakeUpstream, executor: ThreadPoolExecutor, max_size: int, max_wait_s: float
) -> Batcher:
    return Batcher(
        "colors",
        upstream,
        executor,
        Metrics(CollectorRegistry(), ("colors",)),
        max_size=max_size,
        max_wait_s=max_wait_s,
    )


def caller(
    batcher: Batcher, n: int, ref: ModelRef = COLORS, timeout: float | None = None
) -> asyncio.Task[Prediction]:
    """One single-image Predict of ``image(n)``, started as a task."""
    return asyncio.ensure_future(
        batcher.predict(ref, "images", image(n), types_pb2.DT_FLOAT, ("scores",), timeout)
    )


async def queued() -> None:
    """One turn of the loop: every task just started runs to its first await, which in
    ``Batcher.predict`` is the wait for its batch (it has joined the queue by then)."""
    await asyncio.sleep(0)


def test_concurrent_predicts_are_merged_into_one_predict_of_max_size(executor) -> None:
    async def test(upstream: FakeUpstream) -> None:
        batcher = make_batcher(upstream, executor, max_size=4, max_wait_s=NEVER)
        await asyncio.gather(*(caller(batcher, n) for n in range(8)))

    upstream = run(test)
    assert [sent.rows for sent in upstream.sent] == [4, 4]
    np.testing.assert_array_equal(
        upstream.sent[0].inputs["images"], np.concatenate([image(n) for n in range(4)])
    )


def test_the_batch_request_carries_the_model_spec_and_output_filter(executor) -> None:
    async def test(upstream: FakeUpstream) -> None:
        batcher = make_batcher(upstream, executor, max_size=2, max_wait_s=NEVER)
        await asyncio.gather(caller(batcher, 1), caller(batcher, 2))

    (sent,) = run(test).sent
    assert (sent.model, sent.output_filter) == (COLORS, ("scores",))


def test_a_lone_predict_is_sent_after_the_max_wait(executor) -> None:
    max_wait_s = 0.02

    async def test(upstream: FakeUpstream) -> None:
        loop = asyncio.get_running_loop()
        batcher = make_batcher(upstream, executor, max_size=8, max_wait_s=max_wait_s)
        began = loop.time()
        prediction = await caller(batcher, 3)
        # The loop may run a timer up to one clock tick early; nothing else bends this bound.
        assert loop.time() - began >= max_wait_s - time.get_clock_info("monotonic").resolution
        np.testing.assert_array_equal(prediction.outputs["scores"], scores(3))

    assert [sent.rows for sent in run(test).sent] == [1]


def test_each_caller_gets_exactly_its_own_row(executor) -> None:
    async def test(upstream: FakeUpstream) -> None:
        batcher = make_batcher(upstream, executor, max_size=5, max_wait_s=NEVER)
        predictions = await asyncio.gather(*(caller(batcher, n) for n in (7, 1, 4, 9, 2)))
        for n, prediction in zip((7, 1, 4, 9, 2), predictions, strict=True):
            np.testing.assert_array_equal(prediction.outputs["scores"], scores(n))

    assert [sent.rows for sent in run(test).sent] == [5]


def test_split_back_predictions_name_the_version_that_served(executor) -> None:
    async def test(upstream: FakeUpstream) -> None:
        batcher = make_batcher(upstream, executor, max_size=2, max_wait_s=NEVER)
        predictions = await asyncio.gather(caller(batcher, 1), caller(batcher, 2))
        assert [(p.model, p.version, p.signature_name) for p in predictions] == [
            ("colors", 2, "serving_default"),
            ("colors", 2, "serving_default"),
        ]

    run(test)


def test_a_failed_predict_reaches_every_caller_in_the_batch(executor) -> None:
    error = unavailable("TF Serving is restarting")

    async def test(upstream: FakeUpstream) -> None:
        upstream.fail("send", error)
        batcher = make_batcher(upstream, executor, max_size=3, max_wait_s=NEVER)
        results = await asyncio.gather(
            *(caller(batcher, n) for n in range(3)), return_exceptions=True
        )
        assert results == [error, error, error]

    assert [sent.rows for sent in run(test).sent] == [3]


def test_the_batch_after_a_failure_succeeds(executor) -> None:
    async def test(upstream: FakeUpstream) -> None:
        upstream.fail("send", unavailable())
        batcher = make_batcher(upstream, executor, max_size=2, max_wait_s=NEVER)
        with pytest.raises(UpstreamError):
            await asyncio.gather(caller(batcher, 1), caller(batcher, 2))
        prediction, _ = await asyncio.gather(caller(batcher, 3), caller(batcher, 4))
        np.testing.assert_array_equal(prediction.outputs["scores"], scores(3))

    run(test)


def test_a_caller_cancelled_while_queued_is_left_out_of_the_batch(executor) -> None:
    async def test(upstream: FakeUpstream) -> None:
        batcher = make_batcher(upstream, executor, max_size=3, max_wait_s=NEVER)
        first, gone = caller(batcher, 1), caller(batcher, 2)
        await queued()
        gone.cancel()
        last = caller(batcher, 3)  # the third in the queue: the batch goes out
        first_prediction, last_prediction = await asyncio.gather(first, last)
        np.testing.assert_array_equal(first_prediction.outputs["scores"], scores(1))
        np.testing.assert_array_equal(last_prediction.outputs["scores"], scores(3))
        assert gone.cancelled()

    (sent,) = run(test).sent
    np.testing.assert_array_equal(sent.inputs["images"], np.concatenate([image(1), image(3)]))


def test_a_caller_cancelled_while_its_batch_is_in_flight_leaves_the_others_their_rows(
    executor,
) -> None:
    async def test(upstream: FakeUpstream) -> None:
        upstream.hold()
        batcher = make_batcher(upstream, executor, max_size=3, max_wait_s=NEVER)
        first, gone, last = caller(batcher, 1), caller(batcher, 2), caller(batcher, 3)
        await upstream.wait_sent(1)
        gone.cancel()
        upstream.release()
        first_prediction, last_prediction = await asyncio.gather(first, last)
        np.testing.assert_array_equal(first_prediction.outputs["scores"], scores(1))
        np.testing.assert_array_equal(last_prediction.outputs["scores"], scores(3))
        assert gone.cancelled()

    assert [sent.rows for sent in run(test).sent] == [3]


def test_predicts_arriving_while_a_batch_is_in_flight_form_the_next_batch(executor) -> None:
    async def test(upstream: FakeUpstream) -> None:
        upstream.hold()
        batcher = make_batcher(upstream, executor, max_size=2, max_wait_s=NEVER)
        early = [caller(batcher, 1), caller(batcher, 2)]
        await upstream.wait_sent(1)
        late = [caller(batcher, 3), caller(batcher, 4)]
        await upstream.wait_sent(2)
        upstream.release()
        predictions = await asyncio.gather(*early, *late)
        for n, prediction in zip((1, 2, 3, 4), predictions, strict=True):
            np.testing.assert_array_equal(prediction.outputs["scores"], scores(n))

    upstream = run(test)
    np.testing.assert_array_equal(
        upstream.sent[1].inputs["images"], np.concatenate([image(3), image(4)])
    )


class Clock:
    """Stands in for ``time`` in gateway.batching, which reads only ``time.monotonic()``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_the_batch_timeout_is_the_smallest_remaining_deadline(executor, monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(batching, "time", clock)

    async def test(upstream: FakeUpstream) -> None:
        batcher = make_batcher(upstream, executor, max_size=3, max_wait_s=NEVER)
        tasks = [caller(batcher, 1, timeout=10.0)]  # deadline 1010
        await queued()
        clock.now += 4
        tasks.append(caller(batcher, 2, timeout=8.0))  # deadline 1012, the smaller timeout
        await queued()
        clock.now += 1
        tasks.append(caller(batcher, 3, timeout=None))  # sent now, at 1005
        await asyncio.gather(*tasks)

    (sent,) = run(test).sent
    assert sent.timeout == 5.0


def test_a_batch_without_deadlines_is_sent_without_a_timeout(executor) -> None:
    async def test(upstream: FakeUpstream) -> None:
        batcher = make_batcher(upstream, executor, max_size=2, max_wait_s=NEVER)
        await asyncio.gather(caller(batcher, 1), caller(batcher, 2))

    (sent,) = run(test).sent
    assert sent.timeout is None


def test_different_versions_are_batched_separately(executor) -> None:
    v1, v2 = ModelRef("colors", version=1), ModelRef("colors", version=2)

    async def test(upstream: FakeUpstream) -> None:
        batcher = make_batcher(upstream, executor, max_size=2, max_wait_s=NEVER)
        predictions = await asyncio.gather(
            caller(batcher, 1, v1), caller(batcher, 2, v2),
            caller(batcher, 3, v2), caller(batcher, 4, v1),
        )  # fmt: skip
        assert [p.version for p in predictions] == [1, 2, 2, 1]

    upstream = run(test)
    assert [(sent.model, sent.inputs["images"][:, 0, 0, 0].tolist()) for sent in upstream.sent] == [
        (v2, [2.0, 3.0]),
        (v1, [1.0, 4.0]),
    ]


def test_different_signatures_are_batched_separately(executor) -> None:
    default, other = ModelRef("colors"), ModelRef("colors", signature_name="other")

    async def test(upstream: FakeUpstream) -> None:
        batcher = make_batcher(upstream, executor, max_size=2, max_wait_s=NEVER)
        await asyncio.gather(
            caller(batcher, 1, other), caller(batcher, 2, default),
            caller(batcher, 3, default), caller(batcher, 4, other),
        )  # fmt: skip

    upstream = run(test)
    assert [(sent.model, sent.inputs["images"][:, 0, 0, 0].tolist()) for sent in upstream.sent] == [
        (default, [2.0, 3.0]),
        (other, [1.0, 4.0]),
    ]


def test_batch_sizes_are_counted_in_the_histogram(executor) -> None:
    registry = CollectorRegistry()

    async def test(upstream: FakeUpstream) -> None:
        batcher = Batcher("colors", upstream, executor, Metrics(registry, ("colors",)), 3, NEVER)
        await asyncio.gather(*(caller(batcher, n) for n in range(6)))

    run(test)
    labels = {"model": "colors"}
    assert registry.get_sample_value("tfs_gateway_batch_size_count", labels) == 2.0
    assert registry.get_sample_value("tfs_gateway_batch_size_sum", labels) == 6.0
    assert registry.get_sample_value("tfs_gateway_batch_queue_wait_seconds_count", labels) == 6.0
