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
Everything is checked here, before a server (or a reload) uses any of it: enumerated settings
become enums, numbers are range-checked and label files are read; an error names where the bad
value came from (file, environment variable or flag) and the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.choices import (
    Color,
    InputDType,
    Layout,
    ModelKind,
    Normalization,
    ResizeFilter,
    ResizeMode,
)
from gateway.config_checks import validate, validate_model
from gateway.settings_loader import ConfigError as ConfigError  # re-exported: callers' import
from gateway.settings_loader import build

ENV_PREFIX = "TFS_GATEWAY_"


@dataclass(frozen=True, slots=True)
class PreprocessSettings:
    """Overrides of the preprocessing inferred from a model's signature (None: infer)."""

    input_name: str | None = None
    width: int | None = None
    height: int | None = None
    resize_mode: ResizeMode | None = None
    resize_filter: ResizeFilter | None = None
    shorter_side: int | None = None
    pad_value: int | None = None
    color: Color | None = None
    background: tuple[int, int, int] | None = None
    normalization: Normalization | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    dtype: InputDType | None = None
    layout: Layout | None = None


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """One model the gateway serves, and how to read its outputs."""

    name: str
    labels: Path | None = None
    signature_name: str = ""
    kind: ModelKind | None = None  # None: infer from the outputs
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
    host: str = "127.0.0.1"  # every listener; loopback unless set (DECISIONS 23)
    port: int = 9000
    metrics_port: int = 9100  # -1: no metrics endpoint
    http_port: int = 8080  # HTTP/JSON API and web page; -1: off
    # The defaults add up to <= 1 GiB (DECISIONS 24): 512 MiB of messages being received (32
    # calls x 16 MiB) + 384 MiB of decode memory + the baseline; see the README's limits table.
    max_in_flight: int = 32
    max_message_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 24_000_000
    stream_window: int = 4  # frames of one stream in flight, unless the stream asks otherwise
    max_stream_window: int = 32
    allowed_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
    decode_threads: int = max(os.cpu_count() or 1, 1)
    upstream_timeout_s: float = 30.0
    upstream_keepalive_time_ms: int = 30_000  # gRPC pings an idle upstream connection this often
    upstream_keepalive_timeout_ms: int = 10_000  # and drops it when a ping is unanswered this long
    upstream_retry_attempts: int = 3  # UNAVAILABLE is retried (gRPC and REST); 1: no retries
    upstream_retry_initial_backoff_ms: int = 20  # doubling per attempt, randomised
    upstream_retry_max_backoff_ms: int = 500
    status_poll_s: float = 10.0
    unready_after_failures: int = 3
    shutdown_grace_s: float = 10.0  # how long calls in flight may take to finish
    shutdown_delay_s: float = 0.0  # NOT_SERVING this long before new calls are refused
    heap_top_pad_bytes: int = 16 * 1024 * 1024  # glibc M_TOP_PAD; 0: leave malloc alone
    # Memory (DECISIONS 24; the README's limits table adds it up)
    max_decode_bytes_in_flight: int = 384 * 1024 * 1024  # decoded pixels + tensors, gateway-wide
    max_receive_bytes_in_flight: int = 512 * 1024 * 1024  # requests being read and handled
    max_tasks: int = 16  # models one Analyze request or stream may ask for
    max_stream_unread_bytes: int = 32 * 1024 * 1024  # responses a stream's reader has not taken
    # Shed callers are told to come back after this long (gRPC's grpc-retry-pushback-ms
    # trailer; HTTP's Retry-After, in whole seconds).
    retry_after_ms: int = 1000
    # Streams and connections
    max_connection_age_s: float = 300.0  # GOAWAY after this: new calls rebalance, streams go on
    max_streams: int = 256  # streams open at once, over all connections
    max_streams_per_connection: int = 100  # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
    stream_idle_timeout_s: float = 60.0  # a stream that sends nothing this long is ended
    # Following TF Serving's health
    upstream_reconnect_initial_backoff_ms: int = 1000  # gRPC upstream: first reconnect pause
    upstream_reconnect_max_backoff_ms: int = 5000  # and the longest, however long the outage
    upstream_probe_s: float = 1.0  # REST upstream: GET /v1/models/NAME this often, for readiness
    # HTTP listeners (API and metrics)
    metrics_host: str | None = None  # the metrics listener's address; None: ``host``
    reflection: bool = True  # gRPC server reflection (grpcurl); the k8s manifests turn it off
    max_http_connections: int = 512  # open connections per HTTP listener; beyond: 503, closed
    http_idle_timeout_s: float = 15.0  # no whole request header this long: connection closed
    http_body_timeout_s: float = 60.0  # the body must arrive this long after its header: 408
    max_multipart_fields: int = 1000  # fields in one multipart form; beyond: 400
    models: tuple[ModelSettings, ...] = ()

    def model(self, name: str) -> ModelSettings | None:
        return next((m for m in self.models if m.name == name), None)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def _model(name: str, table: object, source: str, base: Path) -> ModelSettings:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: models.{name}: expected a table")
    values = dict(table)
    preprocess = values.pop("preprocess", {})
    if not isinstance(preprocess, Mapping):
        raise ConfigError(f"{source}: models.{name}.preprocess: expected a table")
    settings = build(
        ModelSettings, {"name": name, **values}, lambda k: f"{source}: models.{name}.{k}"
    )
    if settings.labels is not None and not settings.labels.is_absolute():
        settings = dataclasses.replace(settings, labels=base / settings.labels)
    pre = build(PreprocessSettings, preprocess, lambda k: f"{source}: models.{name}.preprocess.{k}")
    return dataclasses.replace(settings, preprocess=pre)


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    extra_models: Sequence[ModelSettings] = (),
) -> GatewayConfig:
    """File, then ``TFS_GATEWAY_*`` variables, then explicit overrides (flags, None values skip),
    plus ``extra_models`` (``--model`` flags); all of it validated, label files included."""
    values: dict[str, Any] = {}
    places: dict[str, str] = {}
    models: list[tuple[ModelSettings, str]] = []
    if path is not None:
        data = _read_toml(path)
        tables = data.pop("models", {})
        if not isinstance(tables, Mapping):
            raise ConfigError(f"{path}: models: expected a table of models")
        models += [(_model(n, t, str(path), path.parent), str(path)) for n, t in tables.items()]
        values.update(data)
        places.update({k: f"{path}: {k}" for k in data})
    environment = os.environ if env is None else env
    for f in dataclasses.fields(GatewayConfig):
        if f.name != "models" and (raw := environment.get(ENV_PREFIX + f.name.upper())):
            values[f.name] = raw
            places[f.name] = ENV_PREFIX + f.name.upper()
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            places[key] = "--" + key.replace("_", "-")
    models += [(m, "--model") for m in extra_models]

    def place(key: str) -> str:
        return places.get(key, key)

    config = build(GatewayConfig, values, place)
    config = dataclasses.replace(config, models=tuple(m for m, _ in models))
    validate(config, place)
    sources: dict[str, str] = {}
    for model, source in models:
        if model.name in sources:
            raise ConfigError(
                f"{source}: models.{model.name}: configured twice (also in {sources[model.name]})"
            )
        sources[model.name] = source
        validate_model(model, source)
    return config
