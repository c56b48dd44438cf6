"""The flow of one stream's frames, transport-free: what goes in and comes out per frame, the
window of frames in flight, the bytes of responses not yet read, and the emitter that delivers
outcomes (in frame order when asked). ``streaming.process_stream`` puts them together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.inference import Detections, InferenceResult


@dataclass(frozen=True, slots=True)
class FrameIn:
    frame_id: int
    image: bytes
    timestamp_us: int = 0


@dataclass(frozen=True, slots=True)
class FrameOut:
    """Exactly one per frame: results, a drop, or an error."""

    frame_id: int
    timestamp_us: int
    results: list[InferenceResult] | None = None
    dropped: bool = False
    error: GatewayError | None = None

    @property
    def outcome(self) -> str:
        """How the frame was answered, as ``tfs_gateway_stream_frames_total`` counts it."""
        if self.dropped:
            return "dropped"
        return "served" if self.error is None else "failed"


class Window:
    """Frames of one stream in flight, and waiting for a free place."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self.changed = asyncio.Event()

    @property
    def full(self) -> bool:
        return self.used >= self.size

    def take(self) -> None:
        self.used += 1

    def give(self) -> None:
        self.used -= 1
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()


def response_bytes(out: FrameOut) -> int:
    """What a response holds, estimated: the annotated images and ~64 bytes per label or box."""
    size = 256
    for result in out.results or ():
        outputs = result.outputs
        found = outputs.detections if isinstance(outputs, Detections) else outputs.labels
        size += 256 + 64 * len(found)
        if result.annotated is not None:
            size += len(result.annotated.data)
    return size


class Unread:
    """Bytes of responses made and not yet taken by the caller, and the largest one so far
    (until one is known, an annotating stream assumes the worst: one frame at a time)."""

    def __init__(self, limit: int, annotates: bool, window: Window) -> None:
        self.limit = limit
        self.window = window
        self.bytes = 0
        self.largest: int | None = None if annotates else 0

    def made(self, out: FrameOut) -> None:
        size = response_bytes(out)
        self.bytes += size
        self.largest = max(self.largest or 0, size)

    def taken(self, out: FrameOut) -> None:
        self.bytes -= response_bytes(out)
        self.window.changed.set()

    def room(self) -> bool:
        """Whether one more frame may start: the window has a place and the bytes of unread
        responses plus those of frames in flight stay within the limit (one frame always may,
        when nothing else is held: a single response may be larger than the limit)."""
        if self.window.used == 0 and self.bytes == 0:
            return True
        if self.window.full or self.largest is None:
            return False
        return self.bytes + (self.window.used + 1) * self.largest <= self.limit


class Emitter:
    """Puts outcomes on the bounded output queue, in frame order when asked."""

    def __init__(self, out: asyncio.Queue[FrameOut | None], ordered: bool) -> None:
        self.out = out
        self.ordered = ordered
        self.held: dict[int, FrameOut] = {}
        self.next = 0
        self.lock = asyncio.Lock()

    async def emit(self, seq: int, outcome: FrameOut) -> None:
        if not self.ordered:
            await self.out.put(outcome)
            return
        async with self.lock:
            self.held[seq] = outcome
            while self.next in self.held:
                await self.out.put(self.held.pop(self.next))
                self.next += 1
