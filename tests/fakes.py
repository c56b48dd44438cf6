"""An in-memory TF Serving behind the gateway's ``Upstream`` protocol, for in-process tests.

Hand a ``FakeUpstream`` to the code under test where an ``UpstreamClient`` or ``RestUpstream``
would go::

    upstream = FakeUpstream(classifier("colors"))   # [-1, 8, 8, 3] float in, scores [-1, 3] out

What it does, and the hooks a test uses:

- ``metadata`` answers with the latest ``ModelMetadata`` given for the model (or the one of
  the version asked for); ``status`` with ``upstream.statuses[name]``. ``publish(metadata)``
  adds a version and makes it AVAILABLE; set ``statuses[name]`` for any other states.
- ``prepare`` builds the real serialised PredictRequest (``build_predict_request``) and ``send``
  parses it back, so ``upstream.sent`` holds what TF Serving would have received: one
  :class:`SentRequest` per Predict (model spec, decoded inputs, output filter, timeout).
- Answers are computed from the input tensor by ``predict`` (default :func:`mean_colour`:
  ``scores[i]`` is image ``i``'s mean value per channel), so every row can be checked exactly.
  ``predict`` may be a coroutine function: awaiting an event per request, it lets a test
  finish requests in the order it chooses.
- ``fail(method, *errors)`` queues errors for ``"metadata"``, ``"status"`` or ``"send"``:
  each later call of that method raises the next one (see :func:`unavailable`).
- ``hold()`` / ``release()``: while held, ``send`` records its request, then waits.
  ``await wait_sent(n)`` returns once ``n`` requests have been sent (held or not).
- ``calls`` counts the calls of each method; ``closed`` tells whether ``close`` was called.

Its asyncio primitives bind to the first event loop that uses them: one fake per ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import grpc
import numpy as np

from gateway._proto.tfserving import predict_pb2, types_pb2
from gateway.errors import UpstreamError
from gateway.tfserving.client import PREDICT, build_predict_request
from gateway.tfserving.signatures import (
    DEFAULT_SIGNATURE,
    ModelMetadata,
    ModelRef,
    Prediction,
    Signature,
    TensorSpec,
    VersionState,
    VersionStatus,
)
from gateway.tfserving.tensors import DataType, make_ndarray

Method = Literal["metadata", "status", "send"]
Answer = dict[str, np.ndarray]
PredictFn = Callable[[Mapping[str, np.ndarray]], Answer | Awaitable[Answer]]


def tensor(alias: str, dtype: DataType, shape: tuple[int, ...] | None) -> TensorSpec:
    return TensorSpec(alias, f"{alias}:0", dtype, shape)


def classifier(
    name: str = "colors",
    version: int = 1,
    *,
    size: tuple[int, int] = (8, 8),
    classes: int = 3,
    input_dtype: DataType = types_pb2.DT_FLOAT,
    signatures: Sequence[str] = (DEFAULT_SIGNATURE,),
) -> ModelMetadata:
    """A classifier's metadata: input ``images [-1, height, width, 3]``, output
    ``scores [-1, classes]`` float, under each of ``signatures``."""
    height, width = size
    images = tensor("images", input_dtype, (-1, height, width, 3))
    scores = tensor("scores", types_pb2.DT_FLOAT, (-1, classes))
    return ModelMetadata(
        name,
        version,
        MappingProxyType(
            {
                signature: Signature(
                    signature,
                    "tensorflow/serving/predict",
                    MappingProxyType({"images": images}),
                    MappingProxyType({"scores": scores}),
                )
                for signature in signatures
            }
        ),
    )


def available(version: int) -> VersionStatus:
    return VersionStatus(version, VersionState.AVAILABLE, grpc.StatusCode.OK, "")


def unavailable(details: str = "connection refused", method: str = PREDICT) -> UpstreamError:
    """The error a TF Serving that is down (or restarting) gives."""
    return UpstreamError(grpc.StatusCode.UNAVAILABLE, details, method)


def mean_colour(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``scores[i, c]``: the mean of channel ``c`` of image ``i`` (NHWC, the only input)."""
    (images,) = inputs.values()
    return {"scores": images.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)}


@dataclass(frozen=True, slots=True)
class SentRequest:
    """One Predict as TF Serving would receive it, decoded from the serialised request."""

    model: ModelRef
    inputs: Mapping[str, np.ndarray]
    output_filter: tuple[str, ...]
    timeout: float | None

    @property
    def rows(self) -> int:
        """The batch size: the first dimension of the (first) input."""
        return next(iter(self.inputs.values())).shape[0]


class FakeUpstream:
    """TF Serving in memory: see the module docstring for what a test can set and observe."""

    def __init__(self, *models: ModelMetadata, predict: PredictFn = mean_colour) -> None:
        self.versions: dict[str, dict[int, ModelMetadata]] = {}
        self.statuses: dict[str, list[VersionStatus]] = {}
        self.predict = predict
        self.sent: list[SentRequest] = []
        self.calls: Counter[str] = Counter()
        self.closed = False
        self._errors: dict[Method, deque[Exception]] = {
            "metadata": deque(),
            "status": deque(),
            "send": deque(),
        }
        self._open = asyncio.Event()
        self._open.set()
        self._sent_changed = asyncio.Condition()
        for metadata in models:
            self.publish(metadata)

    # --- hooks for tests --------------------------------------------------------------------

    def publish(self, metadata: ModelMetadata) -> None:
        """Serve this version (AVAILABLE) with these signatures."""
        assert metadata.version is not None, "a published version has a number"
        self.versions.setdefault(metadata.name, {})[metadata.version] = metadata
        statuses = self.statuses.setdefault(metadata.name, [])
        statuses[:] = [s for s in statuses if s.version != metadata.version]
        statuses.append(available(metadata.version))

    def fail(self, method: Method, *errors: Exception) -> None:
        """The next calls of ``method`` raise these errors, one each, in order."""
        self._errors[method].extend(errors)

    def hold(self) -> None:
        """Sends wait (after being recorded in ``sent``) until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def wait_sent(self, count: int) -> None:
        """Return once ``count`` Predicts have been sent in all."""
        async with self._sent_changed:
            await self._sent_changed.wait_for(lambda: len(self.sent) >= count)

    # --- the Upstream protocol ----------------------------------------------------------------

    async def metadata(self, model: ModelRef, timeout: float | None = None) -> ModelMetadata:
        self.calls["metadata"] += 1
        self._raise_queued("metadata")
        versions = self._versions(model)
        return versions[model.version if model.version is not None else max(versions)]

    async def status(self, model: ModelRef, timeout: float | None = None) -> list[VersionStatus]:
        self.calls["status"] += 1
        self._raise_queued("status")
        self._versions(model)
        return list(self.statuses[model.name])

    def prepare(
        self,
        model: ModelRef,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        dtypes: Mapping[str, DataType],
    ) -> bytes:
        return build_predict_request(model, inputs, output_filter, dtypes)

    async def send(self, prepared: bytes, model: ModelRef, timeout: float | None) -> Prediction:
        self.calls["send"] += 1
        request = predict_pb2.PredictRequest.FromString(prepared)
        spec = request.model_spec
        sent = SentRequest(
            model=ModelRef(
                spec.name,
                spec.version.value if spec.HasField("version") else None,
                spec.version_label or None,
                spec.signature_name,
            ),
            inputs={alias: make_ndarray(t) for alias, t in request.inputs.items()},
            output_filter=tuple(request.output_filter),
            timeout=timeout,
        )
        async with self._sent_changed:
            self.sent.append(sent)
            self._sent_changed.notify_all()
        await self._open.wait()
        self._raise_queued("send")
        outputs = self.predict(sent.inputs)
        if inspect.isawaitable(outputs):
            outputs = await outputs
        if sent.output_filter:
            outputs = {alias: outputs[alias] for alias in sent.output_filter}
        versions = self._versions(sent.model)
        return Prediction(
            model=sent.model.name,
            version=sent.model.version if sent.model.version is not None else max(versions),
            signature_name=sent.model.signature_name or DEFAULT_SIGNATURE,
            outputs=outputs,
        )

    async def close(self) -> None:
        self.closed = True

    # ------------------------------------------------------------------------------------------

    def _raise_queued(self, method: Method) -> None:
        if self._errors[method]:
            raise self._errors[method].popleft()

    def _versions(self, model: ModelRef) -> dict[int, ModelMetadata]:
        versions = self.versions.get(model.name)
        if not versions:
            raise UpstreamError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Latest({model.name})",
                PREDICT,
            )
        return versions
