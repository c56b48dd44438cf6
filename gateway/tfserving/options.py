"""How the gateway reaches TF Serving over gRPC: the target (one server, a DNS name, or a list
of replicas), deadlines, message limits, keepalive, reconnect backoff, and the retry policy —
all expressed as gRPC channel options and service config, not as loops."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """How to reach TF Serving: ``host:port``, ``dns:///name:port`` (every address the name
    resolves to), or ``host1:port,host2:port`` (replicas, resolved once). Calls are balanced
    round robin over the replicas that are up; a replica that goes down is skipped until it
    reconnects. Predict and the metadata calls are idempotent, so UNAVAILABLE is retried
    (on the next replica, within the caller's deadline), under a retry budget that stops
    retries from multiplying load during an outage."""

    target: str
    timeout_s: float = 30.0
    max_message_bytes: int = 256 * 1024 * 1024
    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 10_000
    retry_attempts: int = 3
    retry_initial_backoff_ms: int = 20  # doubles per attempt, up to the max; randomised by gRPC
    retry_max_backoff_ms: int = 500
    # After a lost connection gRPC reconnects after 1 s, then 1.6 times longer each time, never
    # waiting more than the max: a TF Serving that comes back is found within ~5 s (gRPC's
    # own default max is 120 s). The min bounds each connect attempt's own timeout.
    reconnect_initial_backoff_ms: int = 1000
    reconnect_max_backoff_ms: int = 5000
    extra_channel_options: tuple[tuple[str, object], ...] = field(default=())

    def channel_target(self) -> str:
        return replica_target(self.target)

    def service_config(self) -> dict[str, object]:
        config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
        if self.retry_attempts > 1:
            config["methodConfig"] = [
                {
                    "name": [
                        {"service": "tensorflow.serving.PredictionService"},
                        {"service": "tensorflow.serving.ModelService"},
                    ],
                    "retryPolicy": {
                        "maxAttempts": self.retry_attempts,
                        "initialBackoff": f"{self.retry_initial_backoff_ms / 1000}s",
                        "maxBackoff": f"{self.retry_max_backoff_ms / 1000}s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
            # The budget: each failure costs a token, each success returns 0.1; below half the
            # tokens, no retries. An outage thus cannot triple the load on what is left.
            config["retryThrottling"] = {"maxTokens": 10, "tokenRatio": 0.1}
        return config

    def channel_options(self) -> list[tuple[str, object]]:
        service_config = self.service_config()
        return [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.service_config", json.dumps(service_config)),
            ("grpc.initial_reconnect_backoff_ms", self.reconnect_initial_backoff_ms),
            ("grpc.max_reconnect_backoff_ms", self.reconnect_max_backoff_ms),
            ("grpc.min_reconnect_backoff_ms", self.reconnect_initial_backoff_ms),
            *self.extra_channel_options,
        ]


def replica_target(target: str) -> str:
    """A gRPC target for a comma-separated list of ``host:port`` replicas: their addresses,
    resolved now, as one ``ipv4:``/``ipv6:`` target for the round-robin balancer. A single
    target is returned as it is (``dns:///`` names are re-resolved by gRPC itself)."""
    if "," not in target:
        return target
    v4: list[str] = []
    v6: list[str] = []
    for item in target.split(","):
        host, _, port = item.strip().rpartition(":")
        for family, _, _, _, sockaddr in socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM
        ):
            if family == socket.AF_INET and f"{sockaddr[0]}:{port}" not in v4:
                v4.append(f"{sockaddr[0]}:{port}")
            elif family == socket.AF_INET6 and f"[{sockaddr[0]}]:{port}" not in v6:
                v6.append(f"[{sockaddr[0]}]:{port}")
    return "ipv4:" + ",".join(v4) if v4 else "ipv6:" + ",".join(v6)
