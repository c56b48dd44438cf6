"""Keep glibc from handing freed memory back to the kernel between requests.

Each request allocates and frees a few buffers the size of its tensor (0.6 MiB for a
224x224x3 float32 image). By default glibc trims the top of the heap after such frees, so the
next request page-faults the same memory in again: measured here, serialising one such
PredictRequest took 1.3-1.7 ms, nearly all page faults, and 0.06-0.09 ms with 16 MiB of padding
kept at the top of the heap (``M_TOP_PAD``, the same knob as ``MALLOC_TOP_PAD_``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
_M_TOP_PAD = -2  # from glibc's malloc.h


def keep_heap_top_pad(pad_bytes: int) -> bool:
    """Set glibc's M_TOP_PAD; False (and nothing changed) where the C library has no mallopt."""
    if pad_bytes <= 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("no glibc mallopt here; heap padding not set")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_TOP_PAD, pad_bytes))
