"""Stream frame counters tell the truth (issue 15, item 17): however a stream ends, every frame
it received is counted once more, by how it was answered or as cancelled —
received = served + failed + dropped + cancelled — and a frame cut by its stream's deadline is
a DEADLINE_EXCEEDED call. Transport-free first, then through a real gRPC server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio
import pytest
from prometheus_client import CollectorRegistry

from gateway.config import GatewayConfig, ModelSettings
from gateway.errors import InvalidRequestError, StreamIdleError
from gateway.metrics import FRAME_OUTCOMES
from gateway.server import GatewayServer, create_server
from gateway.streaming import StreamSettings
from tests.fakes import FakeUpstream, classifier
from tests.test_stream_limits import Stub, eventually, options, with_gateway
from tests.test_stream_limits import frame as frame_message
from tests.test_streams import (
    MIXED,
    NOT_AN_IMAGE,
    TASKS,
    Gates,
    Reader,
    Stream,
    answered,
    executor,
    frame,
    mixed,
    streamed,
    until,
)

__all__ = ["executor"]  # the fixture, shared with test_streams


def frames_total(registry: CollectorRegistry) -> dict[str, float | None]:
    """The frame counters, checking the identity they must always satisfy."""
    counts = {
        outcome: registry.get_sample_value("tfs_gateway_stream_frames_total", {"outcome": outcome})
        for outcome in FRAME_OUTCOMES
    }
    answers = [counts[outcome] or 0.0 for outcome in FRAME_OUTCOMES if outcome != "received"]
    assert counts["received"] == sum(answers), counts
    return counts


def frame_calls(registry: CollectorRegistry, code: str) -> float | None:
    labels = {"method": "StreamFrame", "model": "colors", "code": code}
    return registry.get_sample_value("tfs_gateway_requests_total", labels)


def counts(received: int, served: int = 0, failed: int = 0, dropped: int = 0, cancelled: int = 0):
    return {
        "received": received, "served": served, "failed": failed, "dropped": dropped,
        "cancelled": cancelled,
    }  # fmt: skip


# --- transport-free, one test per way a stream ends -------------------------------------------


def test_a_stream_its_caller_ends_counts_every_frame_by_its_answer(executor) -> None:
    async def test(s: Stream) -> None:
        assert answered(await mixed(s)) == [
            (1, "UNAVAILABLE"), (2, "dropped"), (3, "INVALID_ARGUMENT"), (4, "served"),
        ]  # fmt: skip

    stream = streamed(executor, MIXED, test)
    assert frames_total(stream.registry) == counts(4, served=1, failed=2, dropped=1)


def test_closing_a_stream_counts_frames_in_flight_answered_unread_and_unstarted_as_cancelled(
    executor,
) -> None:
    gates = Gates(1, 3)  # frame 2 never answers, so frame 3's answer waits behind it (ordered)

    async def test(s: Stream) -> None:
        s.caller.send(frame(1), frame(2), frame(3), frame(4))
        assert (await anext(s.outcomes)).frame_id == 1
        await until(lambda: s.frames_total("received") == 4)  # frame 4 waits for a place
        await until(lambda: s.requests("OK") == 2)  # frame 3 is answered, not delivered
        await s.outcomes.aclose()

    stream = streamed(executor, StreamSettings(TASKS, window=2), test, gates.predict)
    assert frames_total(stream.registry) == counts(4, served=1, cancelled=3)
    assert frame_calls(stream.registry, "CANCELLED") == 1.0  # frame 2; frame 4 never ran


def test_cancelling_a_drop_stale_stream_counts_its_waiting_and_undelivered_drops_as_cancelled(
    executor,
) -> None:
    async def test(s: Stream) -> None:
        s.upstream.hold()
        reader = Reader(s.outcomes)
        s.caller.send(frame(1))
        await s.upstream.wait_sent(1)
        s.caller.send(frame(2), frame(3))  # 2 is dropped for 3, which waits for 1's place
        await until(lambda: s.frames_total("received") == 3)
        reader.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader.task
        assert reader.seen == []  # frame 2's drop was queued behind frame 1, never delivered

    settings = StreamSettings(TASKS, drop_stale=True, window=1)
    stream = streamed(executor, settings, test)
    assert frames_total(stream.registry) == counts(3, cancelled=3)


def test_a_stream_ended_by_an_error_counts_the_frames_it_had_not_answered_as_cancelled(
    executor,
) -> None:
    gates = Gates(1)

    async def test(s: Stream) -> None:
        s.caller.send(frame(1), frame(2, NOT_AN_IMAGE), frame(3))
        reader = Reader(s.outcomes)
        await until(lambda: len(reader.seen) == 2)
        s.caller.fail(InvalidRequestError("options may only come as the first message"))
        with pytest.raises(InvalidRequestError):
            await reader.all()
        assert answered(reader.seen) == [(1, "served"), (2, "INVALID_ARGUMENT")]

    stream = streamed(executor, StreamSettings(TASKS, window=2), test, gates.predict)
    assert frames_total(stream.registry) == counts(3, served=1, failed=1, cancelled=1)


def test_an_idle_stream_delivers_its_answered_frames_before_it_ends(executor) -> None:
    async def test(s: Stream) -> None:
        s.caller.send(frame(1), frame(2))
        assert (await anext(s.outcomes)).frame_id == 1
        await until(lambda: s.requests("OK") == 2)  # frame 2 answered, not yet taken
        with pytest.raises(StreamIdleError):  # after 0.2 s of silence: the subject
            assert (await anext(s.outcomes)).frame_id == 2
            await anext(s.outcomes)

    stream = streamed(executor, StreamSettings(TASKS), test, idle_timeout_s=0.2)
    assert frames_total(stream.registry) == counts(2, served=2)


def test_a_frame_cut_when_its_streams_deadline_has_passed_is_a_deadline_exceeded_call(
    executor,
) -> None:
    deadline = time.monotonic() + 0.3  # the subject: the caller's deadline

    async def test(s: Stream) -> None:
        s.upstream.hold()
        s.caller.send(frame(1))
        reader = Reader(s.outcomes)
        await s.upstream.wait_sent(1)
        await asyncio.sleep(deadline - time.monotonic())
        reader.task.cancel()  # as the transport does once the deadline has passed
        with pytest.raises(asyncio.CancelledError):
            await reader.task

    time_remaining = lambda: deadline - time.monotonic()  # noqa: E731
    stream = streamed(executor, StreamSettings(TASKS), test, time_remaining=time_remaining)
    assert frame_calls(stream.registry, "DEADLINE_EXCEEDED") == 1.0
    assert frame_calls(stream.registry, "CANCELLED") is None
    assert frames_total(stream.registry) == counts(1, cancelled=1)


# --- through a real gRPC server -----------------------------------------------------------------


async def stream_ended(server: GatewayServer) -> None:
    active = lambda: server.registry.get_sample_value("tfs_gateway_streams_active")  # noqa: E731

    async def ended() -> bool:
        return active() == 0

    await eventually(ended, within=5.0)


def test_a_stream_its_grpc_caller_cancels_counts_every_frame_it_received() -> None:
    """The issue's case: 34 to 100 frames unaccounted after cancelled streams."""

    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        call = stub.Stream()
        await call.write(options())
        await call.write(frame_message(0))
        assert (await call.read()).result.frame_id == 0
        upstream.hold()
        for n in range(1, 6):
            await call.write(frame_message(n))
        await upstream.wait_sent(1 + 4)  # the window (4) full, frame 5 waiting for a place

        async def frame_5_read() -> bool:  # read off the wire, not only written by the caller
            received = {"outcome": "received"}
            value = server.registry.get_sample_value("tfs_gateway_stream_frames_total", received)
            return value == 6

        await eventually(frame_5_read, within=5.0)
        call.cancel()
        await stream_ended(server)

    registry = CollectorRegistry()
    with_gateway(test, registry=registry, stream_window=4)
    assert frames_total(registry) == counts(6, served=1, cancelled=5)
    assert frame_calls(registry, "CANCELLED") == 4.0


def test_a_grpc_stream_past_its_deadline_counts_its_frames_deadline_exceeded() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        upstream.hold()
        call = stub.Stream(timeout=0.5)  # the subject: the stream's deadline
        await call.write(options())
        await call.write(frame_message(1))
        await call.write(frame_message(2))
        await upstream.wait_sent(2)
        assert await call.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await stream_ended(server)

    registry = CollectorRegistry()
    with_gateway(test, registry=registry)
    assert frame_calls(registry, "DEADLINE_EXCEEDED") == 2.0
    assert frames_total(registry) == counts(2, cancelled=2)


# --- shutdown (issue 15, item 11) ---------------------------------------------------------------


def at_shutdown(test: Callable[[GatewayServer, FakeUpstream, Stub], Awaitable[None]]) -> None:
    """Run ``test`` against a gateway that the test itself stops."""

    async def main() -> None:
        upstream = FakeUpstream(classifier("colors"))
        config = GatewayConfig(
            host="127.0.0.1", port=0, http_port=-1, metrics_port=-1, status_poll_s=3600,
            models=(ModelSettings("colors"),),
        )  # fmt: skip
        server = create_server(config, registry=CollectorRegistry(), upstream=upstream)
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await test(server, upstream, Stub(channel))

    asyncio.run(main())


def test_draining_a_stream_reads_no_more_frames_and_ends_once_those_it_read_are_answered(
    executor,
) -> None:
    async def test(s: Stream) -> None:
        s.upstream.hold()
        s.caller.send(frame(1), frame(2))
        reader = Reader(s.outcomes)
        await s.upstream.wait_sent(2)
        s.calls.draining.begin(time.monotonic() + 5.0)
        for _ in range(50):  # loop turns (not time): the stream sees the drain begin
            await asyncio.sleep(0)
        s.caller.send(frame(3))  # never read; and the caller never ends the stream
        s.upstream.release()
        assert answered(await reader.all()) == [(1, "served"), (2, "served")]

    stream = streamed(executor, StreamSettings(TASKS, window=2), test)
    assert frames_total(stream.registry) == counts(2, served=2)


def test_at_shutdown_a_grpc_stream_answers_every_frame_it_accepted_and_ends_ok() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        upstream.hold()
        call = stub.Stream()
        await call.write(options())
        for n in range(3):
            await call.write(frame_message(n))
        await upstream.wait_sent(3)
        stopping = asyncio.ensure_future(server.stop(grace=5.0))
        await until(server.calls.draining.started.is_set)
        await call.write(frame_message(3))  # as shutdown begins: read and answered, or not read
        upstream.release()
        ids = [response.result.frame_id async for response in call]
        assert ids in ([0, 1, 2], [0, 1, 2, 3])
        assert await call.code() == grpc.StatusCode.OK
        await stopping
        assert frames_total(server.registry) == counts(len(ids), served=len(ids))

    at_shutdown(test)


def test_when_the_grace_runs_out_a_stream_ends_unavailable_naming_the_frames_not_answered() -> None:
    async def test(server: GatewayServer, upstream: FakeUpstream, stub: Stub) -> None:
        call = stub.Stream()
        await call.write(options())
        await call.write(frame_message(0))
        assert (await call.read()).result.frame_id == 0
        upstream.hold()  # and never released: the grace runs out
        for n in range(1, 4):
            await call.write(frame_message(n))
        await upstream.wait_sent(4)
        await server.stop(grace=0.6)
        assert await call.code() == grpc.StatusCode.UNAVAILABLE
        assert await call.details() == "the gateway is shutting down; 3 frames were not answered"
        assert frames_total(server.registry) == counts(4, served=1, cancelled=3)

    at_shutdown(test)
