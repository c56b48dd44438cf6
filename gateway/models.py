"""The models a gateway serves, as it knows them from its config and from TF Serving: label
files, signatures of the latest version, how each signature is fed and read (its binding), and
readiness, refreshed by polling TF Serving."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc

from gateway.choices import Color, ResizeMode
from gateway.config import ConfigError, GatewayConfig, ModelSettings
from gateway.config_checks import labels_of
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    ProfileError,
    UpstreamError,
)
from gateway.metrics import Metrics
from gateway.outputs import OutputSelection, select_outputs
from gateway.profiles import PreprocessProfile, infer_profile
from gateway.tfserving.client import Upstream
from gateway.tfserving.signatures import ModelMetadata, ModelRef, TensorSpec, VersionState
from gateway.tfserving.tensors import dtype_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SignatureBinding:
    """How one signature of a model is fed and read."""

    signature_name: str
    profile: PreprocessProfile
    outputs: OutputSelection
    input_spec: TensorSpec

    @property
    def batchable(self) -> bool:
        """Tensors of this binding can be stacked: a free batch dimension and one fixed size."""
        shape = self.input_spec.shape
        fixed_size = self.profile.encoded or self.profile.resize_mode != ResizeMode.NONE
        return shape is not None and len(shape) > 0 and shape[0] == -1 and fixed_size


@dataclass
class ServedModel:
    settings: ModelSettings
    labels: dict[int, str]
    metadata: ModelMetadata | None = None
    bindings: dict[str, SignatureBinding] = field(default_factory=dict)
    ready: bool = False
    failures: int = 0
    status_message: str = "not checked yet"

    @property
    def name(self) -> str:
        return self.settings.name

    def binding(self, signature_name: str = "") -> SignatureBinding:
        name = signature_name or self.settings.signature_name or "serving_default"
        if name not in self.bindings:
            if self.metadata is None:
                raise ModelNotReadyError(f"model {self.name!r} is not ready: {self.status_message}")
            signature = self.metadata.signature(name)
            try:
                profile = infer_profile(signature, self.settings.preprocess)
                outputs = select_outputs(signature, self.settings)
                spec = signature.inputs[profile.input_name]
                check_profile_fits(profile, spec)
            except ProfileError as error:
                raise ProfileError(
                    f"model {self.name!r}, signature {name!r}: {error.message}"
                ) from None
            self.bindings[name] = SignatureBinding(name, profile, outputs, spec)
        return self.bindings[name]


def check_profile_fits(profile: PreprocessProfile, spec: TensorSpec) -> None:
    """The tensors a profile makes must fit the signature (dtype, rank, fixed dims): checked once
    per model, so a misconfigured profile fails at load with a clear message, not per request."""
    if profile.encoded:
        return
    if profile.dtype != spec.dtype:
        raise ProfileError(
            f"the profile makes {dtype_name(profile.dtype)} tensors, the input {spec.alias!r} "
            f"takes {dtype_name(spec.dtype)}"
        )
    channels = 1 if profile.color == Color.GRAYSCALE else 3
    h, w = profile.height or -1, profile.width or -1
    made = (1, channels, h, w) if profile.layout == "NCHW" else (1, h, w, channels)
    if spec.shape is not None and (
        len(spec.shape) != 4
        or any(
            want >= 0 and got >= 0 and want != got
            for want, got in zip(spec.shape, made, strict=True)
        )
    ):
        shown = [n if n >= 0 else "any" for n in made]
        raise ProfileError(
            f"the profile makes tensors of shape {shown}, the input {spec.alias!r} takes "
            f"{list(spec.shape)}"
        )


class ModelCatalog:
    def __init__(self, config: GatewayConfig, upstream: Upstream, metrics: Metrics) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        # Set whenever a model's readiness changes between polls (a failed call, the channel,
        # a probe): the server then publishes readiness at once.
        self.changed = asyncio.Event()
        self.reconfigure(config)

    def reconfigure(self, config: GatewayConfig) -> None:
        """Adopt new settings (SIGHUP): models, their label files and profiles, all or nothing:
        a label file that cannot be read, or a profile that does not fit a model whose
        signature is known, raises ConfigError and nothing changes. A model that stays keeps
        its TF Serving metadata; calls in flight finish with what they started with."""
        models = {}
        for settings in config.models:
            served = ServedModel(settings, labels_of(settings))
            old = self.models.get(settings.name)
            if old is not None:
                served.metadata, served.ready = old.metadata, old.ready
                served.status_message = old.status_message
                if served.metadata is not None:
                    try:
                        served.binding()
                    except ProfileError as error:
                        raise ConfigError(error.message) from None
            models[settings.name] = served
        for name in set(self.models) - set(models):
            self.metrics.model_ready.remove(name)
        self.config = config
        self.models = models
        self.metrics.add_models(tuple(models))

    def model(self, name: str) -> ServedModel:
        if not name:
            raise InvalidRequestError("model.name is required")
        served = self.models.get(name)
        if served is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelNotFoundError(
                f"model {name!r} is not served by this gateway (models: {known})"
            )
        return served

    async def refresh(self) -> None:
        """Ask TF Serving about every model; load signatures of new versions; update readiness."""
        await asyncio.gather(*(self._refresh(m) for m in self.models.values()))

    async def _refresh(self, served: ServedModel) -> None:
        try:
            statuses = await self.upstream.status(ModelRef(served.name))
            available = [s.version for s in statuses if s.state == VersionState.AVAILABLE]
            if not available:
                raise ModelNotReadyError("TF Serving has no AVAILABLE version")
            if served.metadata is None or served.metadata.version != max(available):
                metadata = await self.upstream.metadata(ModelRef(served.name))
                served.metadata, served.bindings = metadata, {}
                log.info(
                    "model %s: loaded the signature of version %s", served.name, metadata.version
                )
            served.binding()  # the default signature must be usable
        except GatewayError as error:
            self._failed(served, error, at_once=isinstance(error, ProfileError))
        else:
            self._set(served, True, "ready")

    async def probe(self, timeout: float) -> None:
        """A light check of every model (its status only), for readiness between polls: a
        model TF Serving cannot be reached for is not ready at once; one that is ready again is
        refreshed in full (its signature may have changed while it was away)."""
        await asyncio.gather(*(self._probe(m, timeout) for m in self.models.values()))

    async def _probe(self, served: ServedModel, timeout: float) -> None:
        if not served.ready:
            await self._refresh(served)
            return
        try:
            statuses = await self.upstream.status(ModelRef(served.name), timeout)
            if not any(s.state == VersionState.AVAILABLE for s in statuses):
                raise ModelNotReadyError("TF Serving has no AVAILABLE version")
        except UpstreamError as error:
            unreachable = error.code == grpc.StatusCode.UNAVAILABLE
            self._failed(served, error, at_once=unreachable)
        except GatewayError as error:
            self._failed(served, error)
        else:
            served.failures = 0

    def call_failed(self, name: str, error: UpstreamError) -> None:
        """A call to TF Serving for this model failed with UNAVAILABLE: one more failure
        towards the threshold (TF Serving also answers UNAVAILABLE when its queue is full)."""
        served = self.models.get(name)
        if served is not None:
            self._failed(served, error)

    def unreachable(self, error: GatewayError) -> None:
        """TF Serving cannot be reached at all (the channel cannot connect): no model is ready."""
        for served in self.models.values():
            self._failed(served, error, at_once=True)

    def _failed(self, served: ServedModel, error: GatewayError, at_once: bool = False) -> None:
        served.failures += 1
        if not served.ready and served.status_message != error.message:  # a new reason
            log.info("model %s: not ready: %s", served.name, error.logged)
        served.status_message = error.message
        threshold = served.failures >= self.config.unready_after_failures
        if at_once or threshold or served.metadata is None:
            self._set(served, False, error.message, logged=error.logged)

    def _set(self, served: ServedModel, ready: bool, message: str, logged: str = "") -> None:
        """``message``: what callers see (ModelInfo, errors); ``logged``: the log's version."""
        if ready:
            served.failures = 0
        if served.ready != ready:
            state = "ready" if ready else f"not ready: {logged or message}"
            log.info("model %s: %s", served.name, state)
            self.changed.set()
        served.ready, served.status_message = ready, message
        self.metrics.model_ready.labels(served.name).set(1 if ready else 0)
