"""Every Prometheus metric the gateway exports, defined in one place on a registry the caller
owns (tests make their own). Label values come only from bounded sets: configured model names
(anything else counts as ``_unknown``), RPC methods, status codes and stages."""

from __future__ import annotations

import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

UNKNOWN_MODEL = "_unknown"
STAGES = ("decode", "preprocess", "upstream", "postprocess")
# Millisecond work: 0.25 ms .. 10 s.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BYTES_BUCKETS = tuple(float(1 << n) for n in range(10, 28, 2))  # 1 KiB .. 128 MiB
PIXELS_BUCKETS = (1e4, 1e5, 3e5, 1e6, 2e6, 4e6, 8e6, 1.6e7, 5e7, 1e8)
# received = served + failed + dropped + cancelled, always (README, "Limits and guarantees").
FRAME_OUTCOMES = ("received", "served", "failed", "dropped", "cancelled")


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """One model's pre-bound children, so the hot path does no label lookups."""

    stages: dict[str, Histogram]
    image_bytes: Histogram
    image_pixels: Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry, models: tuple[str, ...]) -> None:
        self.registry = registry
        self.requests = Counter(
            "tfs_gateway_requests",
            "Requests handled, by RPC method, model and gRPC status code.",
            ["method", "model", "code"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "tfs_gateway_request_duration_seconds",
            "Time from receiving a request to answering it, by RPC method and model.",
            ["method", "model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "tfs_gateway_stage_duration_seconds",
            "Time spent in each stage of a request (decode, preprocess, upstream, postprocess).",
            ["stage", "model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "tfs_gateway_in_flight_requests",
            "Requests being processed now.",
            registry=registry,
        )
        self.in_flight_limit = Gauge(
            "tfs_gateway_in_flight_limit",
            "The in-flight limit beyond which requests are shed with RESOURCE_EXHAUSTED.",
            registry=registry,
        )
        self.receive_bytes = Gauge(
            "tfs_gateway_receive_bytes_in_flight",
            "Bytes of requests (HTTP bodies, gRPC messages) held now, being received or their "
            "calls running, against max_receive_bytes_in_flight.",
            registry=registry,
        )
        self.upstream_errors = Counter(
            "tfs_gateway_upstream_errors",
            "Errors returned by TF Serving (or reaching it), by model and gRPC status code.",
            ["model", "code"],
            registry=registry,
        )
        self.image_bytes = Histogram(
            "tfs_gateway_image_size_bytes",
            "Size of the encoded images received.",
            ["model"],
            buckets=BYTES_BUCKETS,
            registry=registry,
        )
        self.image_pixels = Histogram(
            "tfs_gateway_image_pixels",
            "Pixels of the images received (width x height, from the header).",
            ["model"],
            buckets=PIXELS_BUCKETS,
            registry=registry,
        )
        self.model_ready = Gauge(
            "tfs_gateway_model_ready",
            "1 when the model is available upstream and its signature is loaded, else 0.",
            ["model"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "tfs_gateway_batch_size",
            "Images per micro-batched Predict, by model.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=registry,
        )
        self.batch_wait_seconds = Histogram(
            "tfs_gateway_batch_queue_wait_seconds",
            "Time an image waited for its micro-batch to be sent, by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.streams_active = Gauge(
            "tfs_gateway_streams_active", "Streams open now.", registry=registry
        )
        self.stream_frames = Counter(
            "tfs_gateway_stream_frames",
            "Stream frames received, and each once by how it was answered: served, failed, "
            "dropped (stale) or cancelled (its stream ended before it was answered).",
            ["outcome"],
            registry=registry,
        )
        self.streams_idle_ended = Counter(
            "tfs_gateway_streams_idle_timeouts",
            "Streams ended with DEADLINE_EXCEEDED because they sent nothing for "
            "stream_idle_timeout_s.",
            registry=registry,
        )
        self.stream_in_flight = Histogram(
            "tfs_gateway_stream_frames_in_flight",
            "Frames of one stream in flight, observed each time a frame starts.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        # Pre-bound, and so every outcome is exported from the start, at 0.
        self.frames = {outcome: self.stream_frames.labels(outcome) for outcome in FRAME_OUTCOMES}
        self._per_model = {UNKNOWN_MODEL: self._bind(UNKNOWN_MODEL)}
        self.models: frozenset[str] = frozenset()
        self.add_models(models)

    def add_models(self, models: tuple[str, ...]) -> None:
        """Start counting under these model names (at start-up, and on a config reload)."""
        for name in models:
            if name not in self._per_model:
                self._per_model[name] = self._bind(name)
                self.model_ready.labels(name).set(0)
        self.models = self.models | frozenset(models)

    def _bind(self, model: str) -> ModelMetrics:
        return ModelMetrics(
            stages={stage: self.stage_seconds.labels(stage, model) for stage in STAGES},
            image_bytes=self.image_bytes.labels(model),
            image_pixels=self.image_pixels.labels(model),
        )

    def model_label(self, name: str) -> str:
        return name if name in self.models else UNKNOWN_MODEL

    def record_request(self, method: str, model: str, code: str, started: float) -> None:
        """Count one finished request and its duration since ``started`` (perf_counter)."""
        label = self.model_label(model) if model else ""
        self.requests.labels(method, label, code).inc()
        self.request_seconds.labels(method, label).observe(time.perf_counter() - started)

    def for_model(self, name: str) -> ModelMetrics:
        return self._per_model[self.model_label(name)]
