"""What every setting must be, checked when the config is loaded (and on a reload, before any of
it is applied): number ranges, settings that depend on each other, and label files that must
read. Each error names where the value came from and the key."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from google.protobuf import text_format

from gateway.labels import load_labels
from gateway.settings_loader import ConfigError, shown

if TYPE_CHECKING:
    from gateway.config import GatewayConfig, ModelSettings

Place = Callable[[str], str]  # a setting's key → where it came from, for error messages


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
    ("max_receive_bytes_in_flight", lambda v: v >= 1024 * 1024, "at least 1 MiB (1048576)"),
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


def validate(config: GatewayConfig, place: Place) -> None:
    _check(config, _GATEWAY_RULES, place)
    if config.max_stream_window < config.stream_window:
        raise ConfigError(
            f"{place('max_stream_window')}: must be at least stream_window "
            f"({config.stream_window}), not {config.max_stream_window}"
        )
    if config.max_receive_bytes_in_flight < config.max_message_bytes:
        raise ConfigError(
            f"{place('max_receive_bytes_in_flight')}: must be at least max_message_bytes "
            f"({config.max_message_bytes}), not {config.max_receive_bytes_in_flight}"
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


def validate_model(model: ModelSettings, source: str) -> None:
    where = f"{source}: models.{model.name}"
    _check(model, _MODEL_RULES, lambda k: f"{where}.{k}")
    _check(model.preprocess, _PREPROCESS_RULES, lambda k: f"{where}.preprocess.{k}")
    # Read now, so a reload with a broken label file is refused before anything changes.
    labels_of(model, where)


def labels_of(model: ModelSettings, where: str = "") -> dict[int, str]:
    """The model's label file read, or ConfigError naming ``where`` it is configured."""
    if model.labels is None:
        return {}
    where = where or f"models.{model.name}"
    try:
        return load_labels(model.labels)
    except OSError as error:
        raise ConfigError(f"{where}.labels: cannot read {model.labels}: {error.strerror}") from None
    except (ValueError, text_format.ParseError) as error:
        raise ConfigError(f"{where}.labels: {model.labels} is not a label file: {error}") from None
