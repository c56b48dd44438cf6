"""The gateway's life around TF Serving: readiness that follows the upstream, UNAVAILABLE when
TF Serving is gone, load shedding at the in-flight limit, and a SIGTERM that drains calls."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto import classify_pb2, classify_pb2_grpc
from tests import images
from tests.conftest import (
    GatewayProcess,
    ModelServerProcess,
    free_port,
    gateway_metric,
    start_gateway,
    start_test_server,
)
from tests.waiting import wait_until

SLOW_MS = 1500


def _config(tmp_path: Path, models_dir: Path, upstream: str, **extra: object) -> Path:
    lines = [f'upstream = "{upstream}"', "status_poll_s = 0.3", "unready_after_failures = 1"]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    lines += ["[models.colors]", f'labels = "{models_dir}/colors/labels.txt"']
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _health(target: str, service: str = "") -> str:
    with grpc.insecure_channel(target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def _wait_for(target: str, status: str, service: str = "", within: float = 20) -> None:
    wait_until(
        lambda: _health(target, service) == status,
        within,
        message=f"health of {service!r} never became {status}",
    )


def _wait_in_flight(gateway: GatewayProcess, count: int) -> None:
    """Until the gateway holds ``count`` calls (admitted, not yet answered)."""
    wait_until(
        lambda: gateway_metric(gateway.metrics_port, "tfs_gateway_in_flight_requests") == count,
        10,
        message=f"the gateway never had {count} calls in flight",
    )


def _classify(target: str, timeout: float = 30) -> classify_pb2.ClassifyResponse:
    with grpc.insecure_channel(target) as channel:
        return classify_pb2_grpc.ImageGatewayStub(channel).Classify(
            classify_pb2.ClassifyRequest(model={"name": "colors"}, image=images.solid("red")),
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def slow_tfserving(models_dir: Path) -> Iterator[ModelServerProcess]:
    """A test server whose every Predict takes SLOW_MS."""
    server = start_test_server(models_dir / "models.config", "--test_latency_ms", str(SLOW_MS))
    yield server
    server.stop()


def test_readiness_follows_tf_serving_and_liveness_does_not(
    tmp_path: Path, models_dir: Path
) -> None:
    port = free_port()
    gateway = start_gateway(_config(tmp_path, models_dir, f"localhost:{port}"))
    try:
        assert _health(gateway.target) == "NOT_SERVING"
        assert _health(gateway.target, "model/colors") == "NOT_SERVING"
        assert _health(gateway.target, "liveness") == "SERVING"
        with pytest.raises(grpc.RpcError) as caught:
            _classify(gateway.target)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details().startswith("model 'colors' is not ready: upstream: ")

        tfserving = start_test_server(models_dir / "models.config", "--port", str(port))
        try:
            _wait_for(gateway.target, "SERVING")
            assert _health(gateway.target, "model/colors") == "SERVING"
            assert _classify(gateway.target).classifications[0].label == "red"
        finally:
            tfserving.stop()
        _wait_for(gateway.target, "NOT_SERVING")
        assert _health(gateway.target, "liveness") == "SERVING"
        with pytest.raises(grpc.RpcError) as caught:
            _classify(gateway.target)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        assert gateway.stop() == 0


def test_requests_over_the_in_flight_limit_are_shed_at_once(
    tmp_path: Path, models_dir: Path, slow_tfserving: ModelServerProcess
) -> None:
    gateway = start_gateway(
        _config(tmp_path, models_dir, slow_tfserving.target), "--max-in-flight", "1"
    )
    try:
        _wait_for(gateway.target, "SERVING")
        first: dict[str, object] = {}
        thread = threading.Thread(target=lambda: first.update(r=_classify(gateway.target)))
        thread.start()
        _wait_in_flight(gateway, 1)  # the first call is now waiting on the slow model
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            _classify(gateway.target)
        shed_after = time.monotonic() - started
        thread.join()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert caught.value.details() == "the gateway is at its limit of 1 requests in flight"
        assert shed_after < SLOW_MS / 1000 / 2  # refused without waiting for the model
        assert first["r"].classifications[0].label == "red"
    finally:
        gateway.stop()


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_shed_calls_are_refused_before_their_messages_are_read(
    tmp_path: Path, models_dir: Path, slow_tfserving: ModelServerProcess
) -> None:
    """DECISIONS 24: bytes being received stay within max_in_flight messages. 24 callers sending
    15 MiB each while the only place is taken must not make the gateway hold 360 MiB."""
    gateway = start_gateway(
        _config(tmp_path, models_dir, slow_tfserving.target), "--max-in-flight", "1"
    )
    try:
        _wait_for(gateway.target, "SERVING")
        thread = threading.Thread(target=lambda: _classify(gateway.target))
        thread.start()
        _wait_in_flight(gateway, 1)
        before = _peak_rss_mib(gateway.process.pid)
        big = classify_pb2.ClassifyRequest(model={"name": "colors"}, image=b"\xff" * (15 << 20))
        codes: list[grpc.StatusCode] = []

        def send() -> None:
            options = [("grpc.max_send_message_length", 16 << 20)]
            with grpc.insecure_channel(gateway.target, options=options) as channel:
                try:
                    classify_pb2_grpc.ImageGatewayStub(channel).Classify(big, timeout=30)
                except grpc.RpcError as error:
                    codes.append(error.code())

        senders = [threading.Thread(target=send) for _ in range(24)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        grown = _peak_rss_mib(gateway.process.pid) - before
        thread.join()
        assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 24
        # Reading them all would take 24 x 15 MiB (706 MiB measured before the fix); unread, only
        # what HTTP/2 flow control buffers per connection remains (55-109 MiB measured).
        assert grown < 250, f"the gateway's peak RSS grew {grown:.0f} MiB for shed calls"
    finally:
        gateway.stop()


def test_sigterm_drains_calls_in_flight(
    tmp_path: Path, models_dir: Path, slow_tfserving: ModelServerProcess
) -> None:
    config = _config(tmp_path, models_dir, slow_tfserving.target, shutdown_delay_s=1.0)
    gateway: GatewayProcess = start_gateway(config)
    _wait_for(gateway.target, "SERVING")
    result: dict[str, object] = {}

    def call() -> None:
        try:
            result["response"] = _classify(gateway.target)
        except grpc.RpcError as error:
            result["error"] = error

    thread = threading.Thread(target=call)
    thread.start()
    _wait_in_flight(gateway, 1)
    gateway.process.send_signal(signal.SIGTERM)
    # The gateway prints this line as it handles SIGTERM, before it yields to answer any call.
    wait_until(
        lambda: any("draining calls in flight" in line for line in gateway.log),
        10,
        message="the gateway never began draining after SIGTERM",
    )
    assert _health(gateway.target) == "NOT_SERVING"  # answers, during shutdown_delay_s
    thread.join()
    assert "error" not in result
    assert result["response"].classifications[0].label == "red"
    assert gateway.process.wait(timeout=15) == 0
    assert any("draining calls in flight" in line for line in gateway.log)
    gateway.stop()


def test_gateway_follows_tf_serving_to_a_new_model_version(
    tmp_path: Path, models_dir: Path
) -> None:
    base = tmp_path / "colors"
    shutil.copytree(models_dir / "colors" / "1", base / "1")
    tfserving = start_test_server(
        None, "--model_name", "colors", "--model_base_path", str(base),
        "--file_system_poll_wait_seconds", "0.3",
    )  # fmt: skip
    gateway = start_gateway(_config(tmp_path, models_dir, tfserving.target))
    image = images.framed("red", "blue")

    def ask() -> tuple[int, str]:
        with grpc.insecure_channel(gateway.target) as channel:
            response = classify_pb2_grpc.ImageGatewayStub(channel).Classify(
                classify_pb2.ClassifyRequest(model={"name": "colors"}, image=image), timeout=30
            )
        return response.model.version, response.classifications[0].label

    try:
        _wait_for(gateway.target, "SERVING")
        assert ask() == (1, "red")
        shutil.copytree(models_dir / "colors" / "2", tmp_path / "incoming")
        (tmp_path / "incoming").rename(base / "2")  # appears whole, as a deployment would do it
        answers: list[tuple[int, str]] = []

        def answers_version_2() -> bool:
            answers.append(ask())
            return answers[-1] == (2, "blue")

        wait_until(answers_version_2, 20, 0.2, lambda: f"still answering {answers[-1]}")

        def described_version() -> int:
            with grpc.insecure_channel(gateway.target) as channel:
                return (
                    classify_pb2_grpc.ImageGatewayStub(channel)
                    .DescribeModel(classify_pb2.DescribeModelRequest(name="colors"), timeout=10)
                    .version
                )

        # The gateway reloads the signature within one status poll of TF Serving's switch.
        wait_until(
            lambda: described_version() == 2, 10, message="the gateway kept version 1's signature"
        )
    finally:
        gateway.stop()
        tfserving.stop()


def test_sighup_reloads_config_and_labels_without_a_restart(
    tmp_path: Path, models_dir: Path, tfserving: ModelServerProcess
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text((models_dir / "colors" / "labels.txt").read_text())
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'upstream = "{tfserving.target}"\n[models.colors]\nlabels = "{labels}"\ntop_k = 3\n'
    )
    gateway = start_gateway(config)
    try:
        _wait_for(gateway.target, "SERVING")
        assert [c.label for c in _classify(gateway.target).classifications] == [
            "red",
            "black",
            "yellow",
        ]
        labels.write_text(labels.read_text().replace("red", "rouge"))
        config.write_text(config.read_text().replace("top_k = 3", "top_k = 1"))
        gateway.process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: [c.label for c in _classify(gateway.target).classifications] == ["rouge"],
            10,
            message="the reload never took effect",
        )
        assert _health(gateway.target) == "SERVING"
        config.write_text("prot = 1\n")  # a broken config is refused; the old one stays
        gateway.process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: any("config reload refused" in line for line in gateway.log),
            10,
            message="the gateway never refused the broken config",
        )
        assert [c.label for c in _classify(gateway.target).classifications] == ["rouge"]
        assert any("config reload refused" in line for line in gateway.log)
    finally:
        assert gateway.stop() == 0
