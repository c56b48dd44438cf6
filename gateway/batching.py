"""Micro-batching: concurrent single-image Predicts for one model (same version and signature)
merged into one Predict, bounded by a maximum batch size and a maximum wait, then split back.

Only for signatures whose batch dimension is free and whose tensors all have one shape
(``SignatureBinding.batchable``); never for batch-1 models such as TF Object Detection API exports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from gateway.metrics import Metrics
from gateway.tfserving.client import Upstream
from gateway.tfserving.signatures import ModelRef, Prediction
from gateway.tfserving.tensors import DataType


@dataclass
class _Waiting:
    tensor: np.ndarray
    future: asyncio.Future[Prediction]
    enqueued: float
    deadline: float | None


@dataclass
class _Queue:
    items: list[_Waiting] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """One per model; queues are kept per (version, label, signature)."""

    def __init__(
        self,
        model: str,
        upstream: Upstream,
        executor: Executor,
        metrics: Metrics,
        max_size: int,
        max_wait_s: float,
    ) -> None:
        self.model = model
        self.upstream = upstream
        self.executor = executor
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._size = metrics.batch_size.labels(model)
        self._wait = metrics.batch_wait_seconds.labels(model)
        self._queues: dict[tuple[ModelRef, str, DataType, tuple[str, ...]], _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def predict(
        self,
        ref: ModelRef,
        input_name: str,
        tensor: np.ndarray,
        dtype: DataType,
        output_filter: Sequence[str],
        timeout: float | None,
    ) -> Prediction:
        """Predict one tensor (batch of 1) as part of the next batch; its own outputs come back."""
        loop = asyncio.get_running_loop()
        key = (ref, input_name, dtype, tuple(output_filter))
        queue = self._queues.setdefault(key, _Queue())
        now = time.monotonic()
        waiting = _Waiting(
            tensor, loop.create_future(), now, None if timeout is None else now + timeout
        )
        queue.items.append(waiting)
        if len(queue.items) >= self.max_size:
            self._flush(key)
        elif queue.timer is None:
            queue.timer = loop.call_later(self.max_wait_s, self._flush, key)
        return await waiting.future

    def _flush(self, key: tuple[ModelRef, str, DataType, tuple[str, ...]]) -> None:
        queue = self._queues.pop(key, None)
        if queue is None:
            return
        if queue.timer is not None:
            queue.timer.cancel()
        items = [w for w in queue.items if not w.future.done()]  # callers gone: not sent
        if items:
            task = asyncio.ensure_future(self._run(key, items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(
        self, key: tuple[ModelRef, str, DataType, tuple[str, ...]], items: list[_Waiting]
    ) -> None:
        ref, input_name, dtype, output_filter = key
        now = time.monotonic()
        for item in items:
            self._wait.observe(now - item.enqueued)
        self._size.observe(len(items))
        deadlines = [w.deadline for w in items if w.deadline is not None]
        timeout = max(min(deadlines) - now, 0.0) if deadlines else None
        try:
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(
                self.executor,
                lambda: self.upstream.prepare(
                    ref, {input_name: np.concatenate([w.tensor for w in items])},
                    output_filter, {input_name: dtype},
                ),
            )  # fmt: skip
            prediction = await self.upstream.send(prepared, ref, timeout)
        except asyncio.CancelledError:
            for item in items:
                item.future.cancel()
            raise
        except Exception as error:  # every waiting caller gets the failure
            for item in items:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        for index, item in enumerate(items):
            if not item.future.done():
                item.future.set_result(_split(prediction, index, len(items)))


def _split(prediction: Prediction, index: int, size: int) -> Prediction:
    outputs = {
        alias: array[index : index + 1] if array.ndim and array.shape[0] == size else array
        for alias, array in prediction.outputs.items()
    }
    return Prediction(prediction.model, prediction.version, prediction.signature_name, outputs)
