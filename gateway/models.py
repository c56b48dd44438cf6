"""The models a gateway serves, as it knows them from its config and from TF Serving: label
files, signatures of the latest version, how each signature is fed and read (its binding), and
readiness, refreshed by polling TF Serving."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from google.protobuf import text_format

from gateway.choices import Color, ResizeMode
from gateway.config import ConfigError, GatewayConfig, ModelSettings
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    ProfileError,
)
from gateway.labels import load_labels
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


def _labels_of(settings: ModelSettings) -> dict[int, str]:
    if settings.labels is None:
        return {}
    try:
        return load_labels(settings.labels)
    except (OSError, ValueError, text_format.ParseError) as error:
        raise ConfigError(f"models.{settings.name}.labels: {settings.labels}: {error}") from None


class ModelCatalog:
    def __init__(self, config: GatewayConfig, upstream: Upstream, metrics: Metrics) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        self.reconfigure(config)

    def reconfigure(self, config: GatewayConfig) -> None:
        """Adopt new settings (SIGHUP): models, their label files and profiles, all or nothing:
        a label file that cannot be read, or a profile that does not fit a model whose
        signature is known, raises ConfigError and nothing changes. A model that stays keeps
        its TF Serving metadata; calls in flight finish with what they started with."""
        models = {}
        for settings in config.models:
            served = ServedModel(settings, _labels_of(settings))
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
            served.failures += 1
            served.status_message = error.message
            if served.metadata is None or served.failures >= self.config.unready_after_failures:
                served.ready = False
            if isinstance(error, ProfileError):
                served.ready = False
        else:
            served.failures, served.ready, served.status_message = 0, True, "ready"
        self.metrics.model_ready.labels(served.name).set(1 if served.ready else 0)
