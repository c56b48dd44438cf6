"""Streams of video frames, transport-free: a per-stream window of frames in flight, ordered or
as-ready delivery, and a real-time policy that drops stale frames, reporting every one.

Memory stays bounded whatever the caller does: at most ``window`` frames run, at most one waits
(drop-stale) and the output queue is bounded in frames and in bytes (``max_unread_bytes``: the
responses made and not yet taken by the caller, plus the frames in flight at the size of the
largest response so far), so a caller that reads slowly stops the gateway from reading its
frames (gRPC flow control then slows the sender) instead of filling memory.
Cancelling the stream cancels the frames in flight and their calls to TF Serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.calls import Calls, deadline_after
from gateway.dataplane import DataPlane
from gateway.errors import ShuttingDownError, StreamIdleError
from gateway.inference import Task
from gateway.stream_flow import Emitter, FrameIn, FrameOut, Unread, Window

FIRST = asyncio.FIRST_COMPLETED
STREAM_FRAME = "StreamFrame"  # the method frames are counted under, beside their "Stream"
T = TypeVar("T")


async def first_message(messages: AsyncIterator[T], idle_timeout_s: float) -> T | None:
    """A stream's first message (its options), None if it ends first; StreamIdleError if it
    sends nothing for ``idle_timeout_s``."""
    try:
        return await asyncio.wait_for(anext(aiter(messages), None), idle_timeout_s)
    except TimeoutError:
        raise StreamIdleError(
            f"the stream sent no options for {idle_timeout_s:g} s (stream_idle_timeout_s)"
        ) from None


@dataclass(frozen=True, slots=True)
class StreamSettings:
    tasks: Sequence[Task]
    ordered: bool = True
    drop_stale: bool = False
    window: int = 4
    request_id: str = ""  # the caller's; a frame's incident id is "<request_id>.<frame_id>"
    max_unread_bytes: int = 32 * 1024 * 1024

    @property
    def annotates(self) -> bool:
        return any(task.annotate is not None for task in self.tasks)

    @property
    def model(self) -> str:
        """The model the stream's metrics are counted under: its first task's."""
        return self.tasks[0].model.name if self.tasks else ""


async def process_stream(
    dataplane: DataPlane,
    calls: Calls,
    frames: AsyncIterator[FrameIn],
    settings: StreamSettings,
    time_remaining: Callable[[], float | None] = lambda: None,
    idle_timeout_s: float | None = None,
) -> AsyncIterator[FrameOut]:
    """Run ``settings.tasks`` on every frame; yield one FrameOut per frame. With
    ``idle_timeout_s``, a stream that sends no frame for that long while none of its frames
    is in flight (or was answered in that time) ends with StreamIdleError. Once
    ``calls.draining`` starts (shutdown) it reads no more frames and ends when it has answered
    those it read, or with ShuttingDownError, naming how many it did not, at the drain deadline.

    Every frame read is counted ``received`` and, once, by its answer when that is handed to
    the caller (served, failed, dropped), or ``cancelled`` when the stream ends without
    answering it: in flight, waiting (drop-stale), or answered but not yet taken."""
    metrics = dataplane.metrics
    counted = metrics.frames
    received = delivered = 0
    loop = asyncio.get_running_loop()
    last_activity = loop.time()
    out: asyncio.Queue[FrameOut | None] = asyncio.Queue(maxsize=settings.window + 2)
    emitter = Emitter(out, settings.ordered)
    window = Window(settings.window)
    unread = Unread(settings.max_unread_bytes, settings.annotates, window)
    running: set[asyncio.Task[None]] = set()
    waiting: list[tuple[int, FrameIn]] = []  # drop-stale: the newest frame not yet started

    async def outcome_of(frame: FrameIn) -> FrameOut:
        request_id = f"{settings.request_id}.{frame.frame_id}" if settings.request_id else ""
        results = None
        remaining = time_remaining()  # the stream's deadline is each of its frames' deadline
        deadline = deadline_after(remaining)
        observed = calls.observe(STREAM_FRAME, settings.model, request_id, deadline=deadline)
        with observed as call, calls.admitted():
            results = await dataplane.run(frame.image, settings.tasks, remaining)
        return FrameOut(frame.frame_id, frame.timestamp_us, results=results, error=call.error)

    async def work(seq: int, frame: FrameIn) -> None:
        nonlocal last_activity
        try:
            outcome = await outcome_of(frame)
            unread.made(outcome)
            await emitter.emit(seq, outcome)  # the place is held until emitted
        finally:
            last_activity = loop.time()
            window.give()
            if waiting:  # drop-stale: the newest waiting frame takes the freed place
                start(*waiting.pop())

    def start(seq: int, frame: FrameIn) -> None:
        window.take()
        metrics.stream_in_flight.observe(window.used)
        task = asyncio.ensure_future(work(seq, frame))
        running.add(task)
        task.add_done_callback(running.discard)

    async def next_frame(iterator: AsyncIterator[FrameIn]) -> FrameIn | None:
        """The next frame, or None once the caller ends the stream or the gateway drains."""
        pending = asyncio.ensure_future(anext(iterator, None))
        try:
            while True:
                left = None
                if idle_timeout_s is not None:
                    busy = window.used > 0 or bool(waiting)
                    idle = last_activity + idle_timeout_s - loop.time()
                    left = max(idle_timeout_s if busy else idle, 0)
                await asyncio.wait({pending, stopping}, timeout=left, return_when=FIRST)
                if pending.done():
                    return pending.result()
                if stopping.done():
                    return None
                if (
                    idle_timeout_s is not None
                    and not (window.used > 0 or waiting)
                    and loop.time() - last_activity >= idle_timeout_s
                ):
                    raise StreamIdleError(
                        f"the stream sent nothing for {idle_timeout_s:g} s (stream_idle_timeout_s)"
                    )
        finally:
            pending.cancel()

    async def read() -> None:
        nonlocal last_activity, received
        seq = 0
        iterator = aiter(frames)
        while (frame := await next_frame(iterator)) is not None:
            last_activity = loop.time()
            received += 1
            counted["received"].inc()
            if not settings.drop_stale:
                await window.until(unread.room)
                start(seq, frame)
            elif unread.room():
                start(seq, frame)
            else:
                if waiting:
                    stale_seq, stale = waiting.pop()
                    dropped = FrameOut(stale.frame_id, stale.timestamp_us, dropped=True)
                    unread.made(dropped)
                    await emitter.emit(stale_seq, dropped)
                waiting.append((seq, frame))
            seq += 1
        await window.until(lambda: window.used == 0 and not waiting)
        await out.put(None)

    stopping = asyncio.ensure_future(calls.draining.started.wait())
    cutoff = asyncio.ensure_future(calls.draining.passed())
    reader = asyncio.ensure_future(read())
    getter: asyncio.Future[FrameOut | None] | None = None
    try:
        while True:
            getter = asyncio.ensure_future(out.get())
            await asyncio.wait({getter, reader, cutoff}, return_when=FIRST)
            if getter.done():
                item = getter.result()
            else:
                getter.cancel()
                if not out.empty():  # answers already made go out first
                    item = out.get_nowait()
                elif reader.done():  # it ends by putting None (above) or by raising
                    raise reader.exception()  # type: ignore[misc]
                else:  # shutdown's grace is running out: say what is left unanswered
                    raise ShuttingDownError(
                        f"the gateway is shutting down; {received - delivered} frames were "
                        "not answered"
                    )
            if item is None:
                return
            unread.taken(item)
            counted[item.outcome].inc()
            delivered += 1
            yield item
    finally:
        # Nothing of the stream outlives it: not its pending read of the output queue, and not
        # a waiting frame (drop-stale), which a cancelled frame would otherwise start.
        waiting.clear()
        pending: list[asyncio.Future[Any]] = [reader, stopping, cutoff, *running]
        if getter is not None:
            pending.append(getter)
        for task in pending:
            task.cancel()
        counted["cancelled"].inc(received - delivered)  # the reader can receive no more now
        with contextlib.suppress(BaseException):
            await asyncio.gather(*pending, return_exceptions=True)
