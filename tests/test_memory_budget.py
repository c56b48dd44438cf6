"""The decode memory budget (gateway/memory_budget.py) and the task cap, in process: what an
image is charged, that every reservation is given back (success, error, cancellation), what a
shed or refused caller reads, and that a huge image never starves an ordinary one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from gateway.config import GatewayConfig, ModelSettings
from gateway.decode import ImageHeader
from gateway.drawing import AnnotateSpec
from gateway.errors import ImageTooLargeError, InvalidRequestError, MemoryBudgetError
from gateway.inference import ImageRequest, Task
from gateway.memory_budget import MemoryBudget, Reservation, decode_bytes
from gateway.tfserving.signatures import ModelRef
from tests.fakes import FakeUpstream, unavailable
from tests.images import encode
from tests.test_dataplane import COLORS, Gateway, colors_model, png, serve

MIB = 1024 * 1024
ANNOTATED = Task(ModelRef("colors"), annotate=AnnotateSpec(png=True))
SMALL_PNG_COST = 8 * 8 * 5 + 2 * 8 * 8 * 3  # decode at 5 B/px + the uint8 tensor, twice
TINY_BUDGET = GatewayConfig(models=(ModelSettings("colors"),), max_decode_bytes_in_flight=MIB)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def fill(budget: MemoryBudget, nbytes: int) -> list[Reservation]:
    """Hold ``nbytes`` as ordinary images do: in pieces of an eighth of the budget at most."""
    piece = budget.limit // 8
    sizes = [piece] * (nbytes // piece) + ([nbytes % piece] if nbytes % piece else [])
    return [budget.reserve(size, "another image") for size in sizes]


def header(fmt: str, mode: str, transparency: bool = False) -> ImageHeader:
    return ImageHeader(fmt, 1000, 2000, 1, mode, transparency)


@pytest.mark.parametrize(
    ("fmt", "mode", "transparency", "per_pixel"),
    [
        ("WEBP", "RGB", False, 24),
        ("PNG", "RGBA", False, 16),
        ("GIF", "P", True, 16),
        ("PNG", "I;16", False, 16),
        ("JPEG", "CMYK", False, 8),
        ("JPEG", "RGB", False, 5),
        ("GIF", "P", False, 5),
    ],
)
def test_an_image_is_charged_its_measured_decode_peak_per_pixel(
    fmt: str, mode: str, transparency: bool, per_pixel: int
) -> None:
    assert decode_bytes(header(fmt, mode, transparency)) == 2_000_000 * per_pixel


def test_a_reservation_is_given_back_once_however_often_it_is_released() -> None:
    budget = MemoryBudget(100 * MIB)
    with budget.reserve(MIB, "a") as first:
        second = budget.reserve(2 * MIB, "b")
        assert budget.used == 3 * MIB
        first.release()
        assert budget.used == 2 * MIB
    second.release()
    second.release()
    assert (budget.used, budget.used_by_large) == (0, 0)


def test_large_images_share_half_the_budget_and_leave_the_rest_to_ordinary_ones() -> None:
    budget = MemoryBudget(80 * MIB)
    huge = budget.reserve(40 * MIB, "the huge image")  # large: over 10 MiB
    with pytest.raises(MemoryBudgetError) as shed:
        budget.reserve(11 * MIB, "the 2000x2000 PNG image")
    assert shed.value.message == (
        "the gateway's decode memory is in use (large images' half of 80 MiB "
        "max_decode_bytes_in_flight); the 2000x2000 PNG image needs ~11 MiB: retry later"
    )
    ordinary = [budget.reserve(10 * MIB, "an ordinary image") for _ in range(4)]
    assert budget.used == 80 * MIB
    with pytest.raises(MemoryBudgetError, match=r"^the gateway.s decode memory is in use \(80 MiB"):
        budget.reserve(1, "one more")
    for reservation in [huge, *ordinary]:
        reservation.release()
    assert budget.used == 0


def test_an_image_over_half_the_budget_is_refused_as_too_large() -> None:
    with pytest.raises(ImageTooLargeError) as refused:
        MemoryBudget(80 * MIB).reserve(41 * MIB, "the 7000x7000 WEBP image")
    assert refused.value.message == (
        "the 7000x7000 WEBP image needs ~41 MiB to decode, over the gateway's per-image limit "
        "of 40 MiB (half of max_decode_bytes_in_flight)"
    )


# --- through the data plane -------------------------------------------------------------------


def test_pixels_are_given_back_when_the_tensor_is_built_the_tensor_at_the_end(executor) -> None:
    async def test(gateway: Gateway) -> None:
        gateway.upstream.hold()
        call = asyncio.ensure_future(gateway.dataplane.run(png((1, 2, 3)), [COLORS]))
        await gateway.upstream.wait_sent(1)
        assert gateway.dataplane.budget.used == 2 * 8 * 8 * 3  # no pixels: the tensor, twice
        gateway.upstream.release()
        await call
        assert gateway.dataplane.budget.used == 0

    serve(executor, GatewayConfig(models=(ModelSettings("colors"),)), test)


def test_an_annotating_call_holds_its_exact_charge_until_it_is_drawn(executor) -> None:
    async def test(gateway: Gateway) -> None:
        budget = gateway.dataplane.budget
        gateway.upstream.hold()
        call = asyncio.ensure_future(gateway.dataplane.run(png((1, 2, 3)), [ANNOTATED]))
        await gateway.upstream.wait_sent(1)
        assert budget.used == SMALL_PNG_COST
        gateway.upstream.release()
        [result] = await call
        assert result.annotated is not None
        assert budget.used == 0

    serve(executor, GatewayConfig(models=(ModelSettings("colors"),)), test)


def test_the_budget_is_given_back_when_the_call_fails_or_is_cancelled(executor) -> None:
    async def test(gateway: Gateway) -> None:
        budget = gateway.dataplane.budget
        gateway.upstream.fail("send", unavailable())
        with pytest.raises(Exception, match="cannot connect to TF Serving"):
            await gateway.dataplane.run(png((1, 2, 3)), [ANNOTATED])
        assert budget.used == 0
        gateway.upstream.hold()
        call = asyncio.ensure_future(gateway.dataplane.run(png((1, 2, 3)), [ANNOTATED]))
        await gateway.upstream.wait_sent(2)
        assert budget.used == SMALL_PNG_COST
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert budget.used == 0

    serve(executor, GatewayConfig(models=(ModelSettings("colors"),)), test)


def test_a_webp_bomb_is_refused_from_its_header_before_decoding(executor) -> None:
    bomb = encode(Image.new("RGBA", (300, 300), (1, 2, 3, 4)), "WEBP", lossless=True)

    async def test(gateway: Gateway) -> None:
        with pytest.raises(ImageTooLargeError) as refused:
            await gateway.dataplane.run(bomb, [COLORS])
        assert refused.value.message == (
            "the 300x300 WEBP image needs ~2.1 MiB to decode, over the gateway's per-image "
            "limit of 0.5 MiB (half of max_decode_bytes_in_flight)"
        )
        assert gateway.upstream.sent == []

    serve(executor, TINY_BUDGET, test)


def test_an_ordinary_image_is_served_while_huge_ones_hold_their_half(executor) -> None:
    huge = encode(Image.new("RGBA", (150, 150), (1, 2, 3, 4)), "PNG")  # 360,000 B to decode

    async def test(gateway: Gateway) -> None:
        budget = gateway.dataplane.budget
        holding = budget.reserve(400_000, "a huge image in flight")
        with pytest.raises(MemoryBudgetError, match=r"the 150x150 PNG image needs ~0\.3 MiB"):
            await gateway.dataplane.run(huge, [COLORS])
        [result] = await gateway.dataplane.run(png((1, 2, 3)), [COLORS])
        assert result.model == "colors"
        holding.release()
        await gateway.dataplane.run(huge, [COLORS])
        assert budget.used == 0

    serve(executor, TINY_BUDGET, test)


def test_more_tasks_than_max_tasks_are_refused_before_any_work(executor) -> None:
    async def test(gateway: Gateway) -> None:
        with pytest.raises(InvalidRequestError) as refused:
            await gateway.dataplane.run(png((1, 2, 3)), [COLORS] * 17)
        assert refused.value.message == "17 tasks is over the gateway's max_tasks of 16"
        assert len(await gateway.dataplane.run(png((1, 2, 3)), [COLORS] * 16)) == 16

    upstream = FakeUpstream(colors_model())
    serve(executor, GatewayConfig(models=(ModelSettings("colors"),)), test, upstream)


def test_each_tasks_tensor_counts_against_the_budget(executor) -> None:
    config = GatewayConfig(models=(ModelSettings("colors"),), max_decode_bytes_in_flight=MIB)

    async def test(gateway: Gateway) -> None:
        budget = gateway.dataplane.budget
        others = fill(budget, MIB - SMALL_PNG_COST - 384)  # room for two tensors, not three
        await gateway.dataplane.run(png((1, 2, 3)), [COLORS, COLORS])
        with pytest.raises(MemoryBudgetError):
            await gateway.dataplane.run(png((1, 2, 3)), [COLORS, COLORS, COLORS])
        for reservation in others:
            reservation.release()
        assert budget.used == 0

    serve(executor, config, test)


def test_classify_reads_the_same_budget(executor) -> None:
    async def test(gateway: Gateway) -> None:
        fill(gateway.dataplane.budget, MIB)
        with pytest.raises(MemoryBudgetError):
            await gateway.dataplane.classify(ImageRequest(COLORS, png((1, 2, 3))))

    serve(executor, TINY_BUDGET, test)
