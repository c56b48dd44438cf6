"""Memory is admitted like calls are: each image reserves the bytes its decode will need, read
from the header before any pixel is decoded, against one budget for the whole gateway.

What a decode costs was measured (``bench/decode_memory.py``, results in
``bench/results-memory.md``): Pillow keeps RGB as 4 bytes a pixel, and the gateway's path to an
RGB image adds copies. Peak bytes per pixel above the RSS before the decode, at full size:

=================================  ======
lossless or lossy WebP             16-24   (libwebp's own buffer, then Pillow's copy)
PNG / GIF / BMP with alpha         16      (decoded RGBA, a background, the composite, RGB)
JPEG CMYK                          8
RGB or palette, any format         4-5
=================================  ======

The budget is fair to ordinary images: an image that needs more than half the budget is refused
(it could starve everything else), and "large" images (over an eighth) together may hold at most
half, so the other half always serves ordinary ones. An image that does not fit now is shed at
once (RESOURCE_EXHAUSTED, retry later) rather than queued behind a slow one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from gateway.decode import ImageHeader
from gateway.errors import GatewayError, ImageTooLargeError, MemoryBudgetError

MIB = 1024 * 1024
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "F"})  # 16-bit → 8-bit conversions


def decode_bytes(header: ImageHeader) -> int:
    """Peak bytes decoding this image to RGB at full size may take (measured, rounded up)."""
    if header.format == "WEBP":
        per_pixel = 24
    elif header.mode in _ALPHA_MODES or header.mode in _WIDE_MODES or header.transparency:
        per_pixel = 16
    elif header.mode == "CMYK":
        per_pixel = 8
    else:
        per_pixel = 5
    return header.width * header.height * per_pixel


class Reservation:
    """Bytes held against the budget until :meth:`release` (idempotent) or the ``with`` ends."""

    def __init__(self, budget: MemoryBudget, nbytes: int, large: bool) -> None:
        self.budget = budget
        self.nbytes = nbytes
        self.large = large
        self.held = True

    def release(self) -> None:
        self.keep(0)

    def keep(self, nbytes: int) -> None:
        """Give back all but ``nbytes`` (e.g. the decode's share once the tensors are built)."""
        if self.held and nbytes < self.nbytes:
            self.budget._give(self, self.nbytes - nbytes)
            self.nbytes = nbytes
            self.held = nbytes > 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class MemoryBudget:
    """Bytes in flight against one gateway-wide limit (thread-safe): decoded pixels and tensors
    (:meth:`reserve`), or HTTP request bodies being received and handled (:meth:`hold`)."""

    def __init__(self, limit: int, retry_after_ms: int = 1000) -> None:
        self.limit = limit
        self.retry_after_ms = retry_after_ms  # what a shed caller is told (pushback)
        self.used = 0
        self.used_by_large = 0
        self._lock = threading.Lock()

    @property
    def per_image_limit(self) -> int:
        return self.limit // 2

    def reserve(self, nbytes: int, what: str) -> Reservation:
        """Hold ``nbytes`` for ``what`` (e.g. "the 7000x7000 WEBP image"), or raise:
        ImageTooLargeError if it could never fit, MemoryBudgetError if it does not fit now."""
        if nbytes > self.per_image_limit:
            raise ImageTooLargeError(
                f"{what} needs ~{mib(nbytes)} MiB to decode, over the gateway's per-image "
                f"limit of {mib(self.per_image_limit)} MiB (half of max_decode_bytes_in_flight)"
            )
        large = nbytes > self.limit // 8
        with self._lock:
            fits = self.used + nbytes <= self.limit
            if large:
                fits = fits and self.used_by_large + nbytes <= self.limit // 2
            if not fits:
                share = "large images' half of " if large else ""
                raise MemoryBudgetError(
                    f"the gateway's decode memory is in use ({share}{mib(self.limit)} MiB "
                    f"max_decode_bytes_in_flight); {what} needs ~{mib(nbytes)} MiB: retry later",
                    self.retry_after_ms,
                )
            self.used += nbytes
            if large:
                self.used_by_large += nbytes
        return Reservation(self, nbytes, large)

    def hold(self, nbytes: int, refused: Callable[[], GatewayError]) -> Reservation:
        """Hold ``nbytes`` if they fit now, without :meth:`reserve`'s per-image rules, or raise
        ``refused()``."""
        with self._lock:
            if self.used + nbytes > self.limit:
                raise refused()
            self.used += nbytes
        return Reservation(self, nbytes, large=False)

    def _give(self, reservation: Reservation, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes
            if reservation.large:
                self.used_by_large -= nbytes


def mib(nbytes: int) -> str:
    return f"{nbytes / MIB:.0f}" if nbytes >= 10 * MIB else f"{nbytes / MIB:.1f}"
