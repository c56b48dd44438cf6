"""Waiting in the end-to-end tests: poll for a condition the test can observe (a log line, a
metric, a health status), never sleep for a guessed time that a loaded machine outruns."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "the condition never held",
    ignoring: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` every ``interval`` s until it returns something true, and return that.
    After ``timeout`` s fail with ``message`` (a callable is called only then, so it can read
    logs or the last value seen). Exceptions of the ``ignoring`` types mean "not yet"; the last
    one is named in the failure."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if result := condition():
                return result
        except ignoring as error:
            last_error = error
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = message() if callable(message) else message
            text = f"{text} (waited {timeout:g} s)"
            if last_error is not None:
                text += f"; last error: {last_error!r}"
            raise AssertionError(text) from last_error
        time.sleep(min(interval, remaining))
