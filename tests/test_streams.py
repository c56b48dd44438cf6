"""Streams in process, against a fake TF Serving: delivery order, the window of frames in
flight, the drop-stale policy, per-frame errors, cancellation and the stream metrics.

Frame ``n`` is a solid grey PNG of value ``n`` fed as uint8 pixels, so a Predict shows which
frame it carries, and a gated ``predict`` can finish frames in the order a test chooses.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import grpc
import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from gateway._proto.tfserving import types_pb2
from gateway.calls import Calls
from gateway.config import GatewayConfig, ModelSettings
from gateway.dataplane import DataPlane
from gateway.errors import GatewayError
from gateway.inference import Task
from gateway.metrics import Metrics
from gateway.stream_flow import FrameIn, FrameOut
from gateway.streaming import StreamSettings, process_stream
from gateway.tfserving.signatures import ModelRef, Prediction
from tests.fakes import Answer, FakeUpstream, PredictFn, classifier, mean_colour, unavailable
from tests.images import encode

CONFIG = GatewayConfig(models=(ModelSettings("colors"),))
TASKS = (Task(ModelRef("colors")),)
NOT_AN_IMAGE = b"not an image"


def frame(n: int, image: bytes | None = None) -> FrameIn:
    """Frame ``n``: a solid grey of value ``n``, unless ``image`` is given."""
    grey = encode(Image.new("RGB", (8, 8), (n, n, n)), "PNG")
    return FrameIn(n, grey if image is None else image, timestamp_us=1000 * n)


def frame_of(inputs: Mapping[str, np.ndarray]) -> int:
    return int(inputs["images"][0, 0, 0, 0])


def outcome(out: FrameOut) -> str:
    """How a frame was answered, "served", "dropped" or its error's code, checking that it was
    answered one way only."""
    assert [out.results is not None, out.dropped, out.error is not None].count(True) == 1
    if out.error is not None:
        return out.error.code.name
    return "dropped" if out.dropped else "served"


class WatchedUpstream(FakeUpstream):
    """The fake serving ``colors`` (uint8 [-1, 8, 8, 3]), also counting its sends in flight,
    the most at once, and the sends cancelled while they waited."""

    def __init__(self, predict: PredictFn = mean_colour) -> None:
        super().__init__(classifier("colors", input_dtype=types_pb2.DT_UINT8), predict=predict)
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled = 0

    async def send(self, prepared: bytes, model: ModelRef, timeout: float | None) -> Prediction:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await super().send(prepared, model, timeout)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


class Gates:
    """A ``predict`` that answers frame ``n`` once ``open(n)`` has been called, and notes the
    order it answered in."""

    def __init__(self, *open_from_start: int) -> None:
        self.events: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.answered: list[int] = []
        self.open(*open_from_start)

    def open(self, *frames: int) -> None:
        for n in frames:
            self.events[n].set()

    async def predict(self, inputs: Mapping[str, np.ndarray]) -> Answer:
        n = frame_of(inputs)
        await self.events[n].wait()
        self.answered.append(n)
        return mean_colour(inputs)


class Caller:
    """The caller's side of a stream: the frames it sends (and when it stops, or sends what
    ends the stream with an error), as the test decides."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[FrameIn | GatewayError | None] = asyncio.Queue()

    def send(self, *frames: FrameIn) -> None:
        for item in frames:
            self.queue.put_nowait(item)

    def close(self) -> None:
        self.queue.put_nowait(None)

    def fail(self, error: GatewayError) -> None:
        """What the transport raises for a message that ends the stream (e.g. a malformed one)."""
        self.queue.put_nowait(error)

    async def frames(self) -> AsyncIterator[FrameIn]:
        while (item := await self.queue.get()) is not None:
            if isinstance(item, GatewayError):
                raise item
            yield item


class Reader:
    """Reads a stream's outcomes in a task of its own, keeping them as they come."""

    def __init__(self, outcomes: AsyncIterator[FrameOut]) -> None:
        self.seen: list[FrameOut] = []
        self.task = asyncio.ensure_future(self._read(outcomes))

    async def _read(self, outcomes: AsyncIterator[FrameOut]) -> None:
        async for out in outcomes:
            self.seen.append(out)

    async def all(self) -> list[FrameOut]:
        await self.task
        return self.seen


async def until(condition: Callable[[], bool]) -> None:
    """Loop turns until ``condition`` holds (every test's 5 s guard ends a hang)."""
    while not condition():
        await asyncio.sleep(0)


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


@dataclass
class Stream:
    upstream: WatchedUpstream
    caller: Caller
    outcomes: AsyncGenerator[FrameOut, None]
    registry: CollectorRegistry
    calls: Calls

    def frames_total(self, outcome: str) -> float | None:
        return self.registry.get_sample_value(
            "tfs_gateway_stream_frames_total", {"outcome": outcome}
        )

    def requests(self, code: str) -> float | None:
        labels = {"method": "StreamFrame", "model": "colors", "code": code}
        return self.registry.get_sample_value("tfs_gateway_requests_total", labels)

    def in_flight(self) -> float | None:
        return self.registry.get_sample_value("tfs_gateway_in_flight_requests")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def streamed(
    executor: ThreadPoolExecutor,
    settings: StreamSettings,
    test: Callable[[Stream], Awaitable[None]],
    predict: PredictFn = mean_colour,
    time_remaining: Callable[[], float | None] = lambda: None,
    idle_timeout_s: float | None = None,
) -> Stream:
    """Run an async test body on a fresh loop with one stream open on a ready data plane; a
    hang fails after 5 s."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, ("colors",))
    upstream = WatchedUpstream(predict)
    dataplane = DataPlane(CONFIG, upstream, metrics, executor)
    caller = Caller()
    calls = Calls(metrics, CONFIG.max_in_flight)
    outcomes = process_stream(
        dataplane, calls, caller.frames(), settings, time_remaining, idle_timeout_s
    )
    # An async generator (its signature says AsyncIterator): a caller may aclose() it.
    generator = cast(AsyncGenerator[FrameOut, None], outcomes)
    stream = Stream(upstream, caller, generator, registry, calls)

    async def body() -> None:
        async with asyncio.timeout(5):
            await dataplane.refresh()
            await test(stream)

    asyncio.run(body())
    return stream


def answered(outs: list[FrameOut]) -> list[tuple[int, str]]:
    return [(out.frame_id, outcome(out)) for out in outs]


# --- delivery order -----------------------------------------------------------------------------


def test_ordered_delivery_returns_frames_in_sent_order_when_they_finish_out_of_order(
    executor,
) -> None:
    gates = Gates()

    async def test(s: Stream) -> None:
        s.caller.send(frame(1), frame(2), frame(3))
        s.caller.close()
        reader = Reader(s.outcomes)
        await s.upstream.wait_sent(3)
        gates.open(3)
        await until(lambda: s.requests("OK") == 1)
        gates.open(2)
        await until(lambda: s.requests("OK") == 2)
        assert reader.seen == []  # frames 2 and 3 are done, and wait for frame 1
        gates.open(1)
        assert [out.frame_id for out in await reader.all()] == [1, 2, 3]
        assert gates.answered == [3, 2, 1]

    streamed(executor, StreamSettings(TASKS, ordered=True, window=3), test, gates.predict)


def test_as_ready_delivery_yields_frames_in_completion_order(executor) -> None:
    gates = Gates()

    async def test(s: Stream) -> None:
        s.caller.send(frame(1), frame(2), frame(3))
        s.caller.close()
        delivered = []
        for n in (3, 1, 2):  # only frame n can finish: the others wait at their gates
            gates.open(n)
            delivered.append((await anext(s.outcomes)).frame_id)
        assert delivered == [3, 1, 2]
        assert await anext(s.outcomes, None) is None

    streamed(executor, StreamSettings(TASKS, ordered=False, window=3), test, gates.predict)


# --- the window and drop-stale ----------------------------------------------------------------


def test_at_most_window_predicts_are_in_flight(executor) -> None:
    gates = Gates()

    async def test(s: Stream) -> None:
        s.caller.send(*(frame(n) for n in range(1, 9)))
        s.caller.close()
        reader = Reader(s.outcomes)
        await s.upstream.wait_sent(3)
        await until(lambda: s.frames_total("received") == 4)  # frame 4 waits for a place
        assert len(s.upstream.sent) == 3
        gates.open(*range(1, 9))
        assert len(await reader.all()) == 8
        assert s.upstream.most_in_flight == 3

    streamed(executor, StreamSettings(TASKS, window=3), test, gates.predict)


def test_drop_stale_serves_the_first_and_the_newest_frame_and_drops_those_between(
    executor,
) -> None:
    async def test(s: Stream) -> None:
        s.upstream.hold()
        reader = Reader(s.outcomes)
        s.caller.send(frame(1))
        await s.upstream.wait_sent(1)
        s.caller.send(frame(2), frame(3), frame(4), frame(5))
        s.caller.close()
        await until(lambda: s.frames_total("received") == 5)
        s.upstream.release()
        assert answered(await reader.all()) == [
            (1, "served"), (2, "dropped"), (3, "dropped"), (4, "dropped"), (5, "served"),
        ]  # fmt: skip

    stream = streamed(executor, StreamSettings(TASKS, drop_stale=True, window=1), test)
    assert [frame_of(sent.inputs) for sent in stream.upstream.sent] == [1, 5]


MIXED = StreamSettings(TASKS, drop_stale=True, window=1)


async def mixed(s: Stream) -> list[FrameOut]:
    """Frame 1 fails upstream (UNAVAILABLE), 2 is dropped as stale behind it, 3 is not an
    image, 4 is served."""
    s.upstream.hold()
    s.upstream.fail("send", unavailable())
    reader = Reader(s.outcomes)
    s.caller.send(frame(1))
    await s.upstream.wait_sent(1)
    s.caller.send(frame(2), frame(3, NOT_AN_IMAGE))
    await until(lambda: s.frames_total("received") == 3)
    s.upstream.release()
    await until(lambda: len(reader.seen) == 3)
    s.caller.send(frame(4))
    s.caller.close()
    return await reader.all()


def test_every_frame_is_answered_exactly_once(executor) -> None:
    async def test(s: Stream) -> None:
        assert answered(await mixed(s)) == [
            (1, "UNAVAILABLE"), (2, "dropped"), (3, "INVALID_ARGUMENT"), (4, "served"),
        ]  # fmt: skip

    streamed(executor, MIXED, test)


# --- per-frame errors ---------------------------------------------------------------------------


def test_a_frame_that_is_not_an_image_fails_alone_and_the_stream_goes_on(executor) -> None:
    async def test(s: Stream) -> None:
        s.caller.send(frame(1), frame(2, NOT_AN_IMAGE), frame(3))
        s.caller.close()
        outs = [out async for out in s.outcomes]
        assert answered(outs) == [(1, "served"), (2, "INVALID_ARGUMENT"), (3, "served")]
        assert outs[1].error is not None
        assert outs[1].error.message == (
            "the data is not an image in a supported format (JPEG, PNG, WEBP, BMP, GIF); "
            "first bytes: 6e6f7420616e2069"
        )

    streamed(executor, StreamSettings(TASKS), test)


def test_an_internal_error_in_a_frame_names_the_stream_and_frame_as_incident_id(
    executor,
) -> None:
    async def test(s: Stream) -> None:
        s.upstream.fail("send", RuntimeError("a bug in the gateway"))
        s.caller.send(frame(3))
        s.caller.close()
        (out,) = [out async for out in s.outcomes]
        assert out.error is not None
        assert (out.error.code, out.error.message) == (
            grpc.StatusCode.INTERNAL,
            "internal error (request id cam-7.3)",
        )

    streamed(executor, StreamSettings(TASKS, request_id="cam-7"), test)


def test_a_frames_predict_gets_what_is_left_of_the_callers_deadline(executor) -> None:
    async def test(s: Stream) -> None:
        s.caller.send(frame(1))
        s.caller.close()
        [out async for out in s.outcomes]

    stream = streamed(executor, StreamSettings(TASKS), test, time_remaining=lambda: 2.5)
    assert [sent.timeout for sent in stream.upstream.sent] == [2.5]


# --- cancellation -------------------------------------------------------------------------------


def test_closing_the_stream_cancels_the_frames_in_flight_and_their_sends(executor) -> None:
    gates = Gates(1)

    async def test(s: Stream) -> None:
        s.caller.send(frame(1), frame(2), frame(3))
        assert (await anext(s.outcomes)).frame_id == 1
        await s.upstream.wait_sent(3)
        await s.outcomes.aclose()
        assert s.upstream.cancelled == 2
        assert other_tasks() == set()

    streamed(executor, StreamSettings(TASKS, window=3), test, gates.predict)


def test_cancelling_the_reading_task_cancels_the_frames_in_flight_and_their_sends(
    executor,
) -> None:
    async def test(s: Stream) -> None:
        s.upstream.hold()
        s.caller.send(frame(1), frame(2), frame(3))
        reader = Reader(s.outcomes)
        await s.upstream.wait_sent(2)
        reader.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader.task
        assert s.upstream.cancelled == 2
        assert other_tasks() == set()

    streamed(executor, StreamSettings(TASKS, window=2), test)


def test_cancelling_a_drop_stale_stream_starts_none_of_its_waiting_frames(executor) -> None:
    async def test(s: Stream) -> None:
        s.upstream.hold()
        reader = Reader(s.outcomes)
        s.caller.send(frame(1))
        await s.upstream.wait_sent(1)
        s.caller.send(frame(2))  # waits for frame 1's place
        await until(lambda: s.frames_total("received") == 2)
        reader.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader.task
        assert other_tasks() == set()

    stream = streamed(executor, StreamSettings(TASKS, drop_stale=True, window=1), test)
    assert [frame_of(sent.inputs) for sent in stream.upstream.sent] == [1]


# --- metrics ------------------------------------------------------------------------------------


def test_stream_frame_metrics_equal_what_the_caller_saw(executor) -> None:
    seen: Counter[str] = Counter()

    async def test(s: Stream) -> None:
        seen.update(outcome(out) for out in await mixed(s))

    stream = streamed(executor, MIXED, test)
    frames = {o: stream.frames_total(o) for o in ("received", "served", "dropped", "failed")}
    assert frames == {
        "received": seen.total(),
        "served": seen["served"],
        "dropped": seen["dropped"],
        "failed": seen["UNAVAILABLE"] + seen["INVALID_ARGUMENT"],
    }
    codes = ("OK", "UNAVAILABLE", "INVALID_ARGUMENT")
    assert {code: stream.requests(code) for code in codes} == {
        "OK": seen["served"],
        "UNAVAILABLE": seen["UNAVAILABLE"],
        "INVALID_ARGUMENT": seen["INVALID_ARGUMENT"],
    }


def test_the_in_flight_gauge_counts_the_frames_in_flight_and_returns_to_zero(executor) -> None:
    async def test(s: Stream) -> None:
        s.upstream.hold()
        s.caller.send(frame(1), frame(2))
        s.caller.close()
        reader = Reader(s.outcomes)
        await s.upstream.wait_sent(2)
        assert s.in_flight() == 2
        s.upstream.release()
        await reader.all()
        assert s.in_flight() == 0

    streamed(executor, StreamSettings(TASKS, window=2), test)


def test_frames_cancelled_with_their_stream_count_as_cancelled_and_leave_no_place_held(
    executor,
) -> None:
    async def test(s: Stream) -> None:
        s.upstream.hold()
        s.caller.send(frame(1), frame(2))
        reader = Reader(s.outcomes)
        await s.upstream.wait_sent(2)
        reader.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader.task

    stream = streamed(executor, StreamSettings(TASKS, window=2), test)
    assert (stream.requests("CANCELLED"), stream.in_flight()) == (2.0, 0.0)
