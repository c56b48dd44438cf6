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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from gateway.choices import (
    Color,
    InputDType,
    Layout,
    ModelKind,
    Normalization,
    ResizeFilter,
    ResizeMode,
)
from gateway.labels import load_labels
from gateway.settings_loader import ConfigError as ConfigError  # re-exported: callers' import
from gateway.settings_loader import build, shown

ENV_PREFIX = "TFS_GATEWAY_"
Place = Callable[[str], str]  # a setting's key → where it came from, for error messages


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
    host: str = "[::]"
    port: int = 9000
    metrics_port: int = 9100  # -1: no metrics endpoint
    http_port: int = 8080  # HTTP/JSON API and web page; -1: off
    # The defaults add up to <= 1 GiB (DECISIONS 24): 32 calls x 16 MiB messages + 384 MiB of
    # decode memory + the baseline; see the README's limits table.
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
    max_http_connections: int = 512  # open connections per HTTP listener; beyond: 503, closed
    http_idle_timeout_s: float = 15.0  # no whole request header this long: connection closed
    http_body_timeout_s: float = 60.0  # the body must arrive this long after its header: 408
    max_multipart_fields: int = 1000  # fields in one multipart form; beyond: 400
    models: tuple[ModelSettings, ...] = ()

    def model(self, name: str) -> ModelSettings | None:
        return next((m for m in self.models if m.name == name), None)


Rule = tuple[str, Callable[[Any], bool], str]  # key, test, what the value must be


def _port(low: int) -> Callable[[int], bool]:
    return lambda v: low <= v <= 65535


_GATEWAY_RULES: tuple[Rule, ...] = (
    ("port", _port(0), "in 0..65535 (0: any free port)"),
    ("metrics_port", _port(-1), "in -1..65535 (-1: off, 0: any free port)"),
    ("http_port", _port(-1), "in -1..65535 (-1: off, 0: any free port)"),
    ("max_in_flight", lambda v: v >= 1, "at least 1"),
    ("max_message_bytes", lambda v: v >= 1, "at least 1"),
    ("max_image_pixels", lambda v: v >= 1, "at least 1"),
    ("stream_window", lambda v: v >= 1, "at least 1"),
    ("decode_threads", lambda v: v >= 1, "at least 1"),
    ("upstream_timeout_s", lambda v: v > 0, "above 0"),
    ("upstream_keepalive_time_ms", lambda v: v >= 1, "at least 1"),
    ("upstream_keepalive_timeout_ms", lambda v: v >= 1, "at least 1"),
    # gRPC caps a retry policy's maxAttempts at 5; the REST upstream keeps to the same.
    ("upstream_retry_attempts", lambda v: 1 <= v <= 5, "in 1..5 (1: no retries)"),
    ("upstream_retry_initial_backoff_ms", lambda v: v >= 1, "at least 1"),
    ("status_poll_s", lambda v: v > 0, "above 0"),
    ("unready_after_failures", lambda v: v >= 1, "at least 1"),
    ("shutdown_grace_s", lambda v: v >= 0, "at least 0"),
    ("shutdown_delay_s", lambda v: v >= 0, "at least 0"),
    ("heap_top_pad_bytes", lambda v: v >= 0, "at least 0"),
    ("retry_after_ms", lambda v: 0 <= v <= 3_600_000, "in 0..3600000 (at most an hour)"),
    # streams, connections and readiness
    ("max_connection_age_s", lambda v: 1 <= v <= 2_000_000, "in 1..2000000 (gRPC takes int ms)"),
    ("max_streams", lambda v: v >= 1, "at least 1"),
    ("max_streams_per_connection", lambda v: v >= 1, "at least 1"),
    ("stream_idle_timeout_s", lambda v: v > 0, "above 0"),
    ("upstream_reconnect_initial_backoff_ms", lambda v: v >= 100, "at least 100"),
    ("upstream_reconnect_max_backoff_ms", lambda v: v >= 100, "at least 100"),
    ("upstream_probe_s", lambda v: v > 0, "above 0"),
    # memory
    ("max_decode_bytes_in_flight", lambda v: v >= 1024 * 1024, "at least 1 MiB (1048576)"),
    ("max_tasks", lambda v: v >= 1, "at least 1"),
    ("max_stream_unread_bytes", lambda v: v >= 1, "at least 1"),
    # HTTP listeners
    ("max_http_connections", lambda v: v >= 1, "at least 1"),
    ("http_idle_timeout_s", lambda v: v > 0, "above 0"),
    ("http_body_timeout_s", lambda v: v > 0, "above 0"),
    ("max_multipart_fields", lambda v: v >= 1, "at least 1"),
)
_MODEL_RULES: tuple[Rule, ...] = (
    ("top_k", lambda v: v >= 1, "at least 1"),
    ("max_detections", lambda v: v >= 1, "at least 1"),
    ("min_score", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("batch_max_size", lambda v: v >= 0, "at least 0"),
    ("batch_max_wait_ms", lambda v: v >= 0, "at least 0"),
)
_PREPROCESS_RULES: tuple[Rule, ...] = (  # only for values that are set
    ("width", lambda v: v > 0, "above 0"),
    ("height", lambda v: v > 0, "above 0"),
    ("shorter_side", lambda v: v > 0, "above 0"),
    ("pad_value", lambda v: 0 <= v <= 255, "in 0..255"),
    ("background", lambda v: len(v) == 3 and all(0 <= c <= 255 for c in v), "3 values in 0..255"),
    ("std", lambda v: all(s > 0 for s in v), "above 0, every value"),
)


def _check(settings: object, rules: Iterable[Rule], place: Place) -> None:
    for key, test, rule in rules:
        value = getattr(settings, key)
        if value is not None and not test(value):
            raise ConfigError(f"{place(key)}: must be {rule}, not {shown(value)}")


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
    _validate(config, place)
    sources: dict[str, str] = {}
    for model, source in models:
        if model.name in sources:
            raise ConfigError(
                f"{source}: models.{model.name}: configured twice (also in {sources[model.name]})"
            )
        sources[model.name] = source
        _validate_model(model, source)
    return config


def _validate(config: GatewayConfig, place: Place) -> None:
    _check(config, _GATEWAY_RULES, place)
    if config.max_stream_window < config.stream_window:
        raise ConfigError(
            f"{place('max_stream_window')}: must be at least stream_window "
            f"({config.stream_window}), not {config.max_stream_window}"
        )
    if config.upstream_retry_max_backoff_ms < config.upstream_retry_initial_backoff_ms:
        raise ConfigError(
            f"{place('upstream_retry_max_backoff_ms')}: must be at least "
            f"upstream_retry_initial_backoff_ms ({config.upstream_retry_initial_backoff_ms}), "
            f"not {config.upstream_retry_max_backoff_ms}"
        )
    if config.upstream_reconnect_max_backoff_ms < config.upstream_reconnect_initial_backoff_ms:
        raise ConfigError(
            f"{place('upstream_reconnect_max_backoff_ms')}: must be at least "
            "upstream_reconnect_initial_backoff_ms "
            f"({config.upstream_reconnect_initial_backoff_ms}), "
            f"not {config.upstream_reconnect_max_backoff_ms}"
        )


def _validate_model(model: ModelSettings, source: str) -> None:
    where = f"{source}: models.{model.name}"
    _check(model, _MODEL_RULES, lambda k: f"{where}.{k}")
    _check(model.preprocess, _PREPROCESS_RULES, lambda k: f"{where}.preprocess.{k}")
    if model.labels is not None:
        # Read now, so a reload with a broken label file is refused before anything changes.
        try:
            load_labels(model.labels)
        except OSError as error:
            raise ConfigError(
                f"{where}.labels: cannot read {model.labels}: {error.strerror}"
            ) from None
        except (ValueError, text_format.ParseError) as error:
            raise ConfigError(
                f"{where}.labels: {model.labels} is not a label file: {error}"
            ) from None
