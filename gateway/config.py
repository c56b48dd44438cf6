"""Settings: one typed object built from a TOML file, environment variables and flags (in that
order of precedence, lowest first), validated once at start-up.

A config file looks like::

    upstream = "localhost:8500"        # TF Serving's gRPC target (dns:///name:port for replicas)
    port = 9000

    [models.colors]
    labels = "colors/labels.txt"       # paths are relative to the config file
    top_k = 3

    [models.colors.preprocess]         # anything not set is inferred from the model's signature
    resize_mode = "letterbox"

Every top-level setting can also come from ``TFS_GATEWAY_<NAME>`` (``TFS_GATEWAY_UPSTREAM`` ...).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "TFS_GATEWAY_"


class ConfigError(ValueError):
    """A setting that is missing, misspelt or of the wrong type; the message names it."""


@dataclass(frozen=True, slots=True)
class PreprocessSettings:
    """Overrides of the preprocessing inferred from a model's signature (None: infer)."""

    input_name: str | None = None
    width: int | None = None
    height: int | None = None
    resize_mode: str | None = None
    resize_filter: str | None = None
    shorter_side: int | None = None
    pad_value: int | None = None
    color: str | None = None
    background: tuple[int, int, int] | None = None
    normalization: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    dtype: str | None = None
    layout: str | None = None


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """One model the gateway serves, and how to read its outputs."""

    name: str
    labels: Path | None = None
    signature_name: str = ""
    kind: str | None = None  # "classification" | "detection"; None: infer from the outputs
    scores_output: str | None = None
    logits: bool = False  # True: apply softmax to the scores output
    label_offset: int = 0  # added to an output index to get the label id
    top_k: int = 5
    max_detections: int = 100
    min_score: float = 0.0
    batch_max_size: int = 0  # > 1: merge concurrent single-image Predicts, up to this many
    batch_max_wait_ms: float = 2.0  # how long the first image of a batch waits for others
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    upstream: str = "localhost:8500"
    host: str = "[::]"
    port: int = 9000
    metrics_port: int = 9100  # -1: no metrics endpoint
    http_port: int = 8080  # HTTP/JSON API and web page; -1: off
    max_in_flight: int = 128
    max_message_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    stream_window: int = 4  # frames of one stream in flight, unless the stream asks otherwise
    max_stream_window: int = 32
    allowed_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
    decode_threads: int = max(os.cpu_count() or 1, 1)
    upstream_timeout_s: float = 30.0
    status_poll_s: float = 10.0
    unready_after_failures: int = 3
    shutdown_grace_s: float = 10.0  # how long calls in flight may take to finish
    shutdown_delay_s: float = 0.0  # NOT_SERVING this long before new calls are refused
    heap_top_pad_bytes: int = 16 * 1024 * 1024  # glibc M_TOP_PAD; 0: leave malloc alone
    models: tuple[ModelSettings, ...] = ()

    def model(self, name: str) -> ModelSettings | None:
        return next((m for m in self.models if m.name == name), None)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML / env value into the annotated type, or say which setting is wrong."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is types.UnionType or origin is typing.Union:
        if value is None:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if origin is tuple:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0]
        return tuple(_coerce(item, item_type, where) for item in value)
    try:
        if annotation is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if annotation is Path:
            return Path(value)
        if annotation in (int, float, str):
            if annotation is not str and isinstance(value, bool):
                raise ValueError(value)
            if annotation is int and isinstance(value, float):
                raise ValueError(value)
            return annotation(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
    raise ConfigError(f"{where}: unsupported setting type {annotation}")


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    return cls(
        **{k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    )


def _model(name: str, table: Mapping[str, Any], base: Path) -> ModelSettings:
    if not isinstance(table, Mapping):
        raise ConfigError(f"models.{name}: expected a table")
    values = dict(table)
    preprocess = values.pop("preprocess", {})
    settings = _build(ModelSettings, {"name": name, **values}, f"models.{name}")
    if settings.labels is not None and not settings.labels.is_absolute():
        settings = dataclasses.replace(settings, labels=base / settings.labels)
    pre = _build(PreprocessSettings, preprocess, f"models.{name}.preprocess")
    return dataclasses.replace(settings, preprocess=pre)


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """File, then ``TFS_GATEWAY_*`` variables, then explicit overrides (flags); None values skip."""
    values: dict[str, Any] = {}
    models: tuple[ModelSettings, ...] = ()
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"config file {path}: {error}") from None
        model_tables = data.pop("models", {})
        models = tuple(_model(n, t, path.parent) for n, t in model_tables.items())
        values.update(data)
    environment = os.environ if env is None else env
    for f in dataclasses.fields(GatewayConfig):
        if f.name != "models" and (raw := environment.get(ENV_PREFIX + f.name.upper())):
            values[f.name] = raw
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    config = _build(GatewayConfig, values, "")
    config = dataclasses.replace(config, models=models)
    _validate(config)
    return config


def _validate(config: GatewayConfig) -> None:
    if config.max_in_flight < 1:
        raise ConfigError("max_in_flight: must be at least 1")
    if config.max_image_pixels < 1:
        raise ConfigError("max_image_pixels: must be at least 1")
    for model in config.models:
        if model.labels is not None and not model.labels.is_file():
            raise ConfigError(f"models.{model.name}.labels: no such file {model.labels}")
        if model.kind not in (None, "classification", "detection"):
            raise ConfigError(
                f"models.{model.name}.kind: classification or detection, not {model.kind!r}"
            )
