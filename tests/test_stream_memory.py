"""A stream's unread responses are bounded in bytes (issue 15, item 8): a caller that stops
reading stops the gateway from reading its frames once the responses it has not taken (and the
frames in flight, at the largest response's size) would pass ``max_unread_bytes``."""

from __future__ import annotations

import asyncio
import dataclasses

from PIL import Image

from gateway.drawing import AnnotateSpec
from gateway.inference import Task
from gateway.stream_flow import FrameIn, response_bytes
from gateway.streaming import StreamSettings
from gateway.tfserving.signatures import ModelRef
from tests.images import encode
from tests.test_streams import Stream, executor, streamed, until

__all__ = ["executor"]  # the fixture, shared with test_streams

IMAGE = encode(Image.new("RGB", (8, 8), (9, 9, 9)), "PNG")
ANNOTATING = StreamSettings([Task(ModelRef("colors"), annotate=AnnotateSpec(png=True))], window=8)
FRAMES = 20


def frames(count: int) -> list[FrameIn]:
    return [FrameIn(n, IMAGE) for n in range(count)]  # one image: every response one size


def one_response_size(executor) -> int:
    sizes: list[int] = []

    async def test(s: Stream) -> None:
        s.caller.send(*frames(1))
        sizes.append(response_bytes(await anext(s.outcomes)))
        s.caller.close()

    streamed(executor, ANNOTATING, test)
    return sizes[0]


def test_a_slow_reader_holds_no_more_unread_bytes_than_the_limit(executor) -> None:
    size = one_response_size(executor)
    settings = dataclasses.replace(ANNOTATING, max_unread_bytes=3 * size)

    async def test(s: Stream) -> None:
        s.caller.send(*frames(FRAMES))
        s.caller.close()
        taken = [await anext(s.outcomes)]
        await until(lambda: s.requests("OK") == 4)  # 1 taken, 3 made and unread: the limit
        for _ in range(200):  # loop turns (not time): a fifth frame would be sent by now
            await asyncio.sleep(0)
        assert (s.requests("OK"), len(s.upstream.sent)) == (4, 4)
        while len(taken) < FRAMES:  # read one at a time: never more than 3 made and unread
            assert (s.requests("OK") or 0) - len(taken) <= 3
            taken.append(await anext(s.outcomes))
        assert [out.frame_id for out in taken] == list(range(FRAMES))
        assert all(out.results and out.results[0].annotated for out in taken)

    streamed(executor, settings, test)
