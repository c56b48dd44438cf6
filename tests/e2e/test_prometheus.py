"""A live Prometheus (Debian's) scraping a gateway: known traffic in, exact counters out; the
shipped config, rules and alert unit tests pass promtool; every panel of the shipped Grafana
dashboard is a query that succeeds and returns data."""

from __future__ import annotations

import json
import math
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway._proto import classify_pb2, classify_pb2_grpc
from tests import images
from tests.conftest import (
    ROOT,
    GatewayProcess,
    ModelServerProcess,
    free_port,
    require_tool,
    start_gateway,
)
from tests.waiting import wait_until

DEPLOY = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "tfs-gateway.json"


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", str(DEPLOY / "prometheus.yml")],
        ["check", "rules", str(DEPLOY / "rules.yml"), str(DEPLOY / "alerts.yml")],
        ["test", "rules", str(DEPLOY / "alerts_test.yml")],
    ],
    ids=["check config", "check rules", "test rules"],
)
def test_shipped_prometheus_files_pass_promtool(args: list[str]) -> None:
    result = subprocess.run(
        [require_tool("promtool"), *args], capture_output=True, text=True, cwd=DEPLOY
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    lines = (DEPLOY / "alerts.yml").read_text().splitlines()
    alerts = {
        line.split(":", 1)[1].strip() for line in lines if line.strip().startswith("- alert:")
    }
    tested = (DEPLOY / "alerts_test.yml").read_text()
    assert alerts and all(f"alertname: {a}" in tested for a in alerts)


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list[dict]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]


@pytest.fixture(scope="module")
def scraped(
    models_dir: Path, tfserving: ModelServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Prometheus, GatewayProcess]]:
    prometheus_bin = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "gateway.toml"
    config.write_text(
        f'upstream = "{tfserving.target}"\n'
        f'[models.colors]\nlabels = "{models_dir}/colors/labels.txt"\n'
        f'[models.shapes]\nlabels = "{models_dir}/shapes/label_map.pbtxt"\n'
    )
    gateway = start_gateway(config)
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{DEPLOY / 'rules.yml'}', '{DEPLOY / 'alerts.yml'}']\n"
        "scrape_configs:\n  - job_name: tfs-gateway\n"
        f"    static_configs: [{{targets: ['localhost:{gateway.metrics_port}']}}]\n"
    )
    process = subprocess.Popen(
        [prometheus_bin, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        prometheus = Prometheus(port)

        def ready() -> bool:
            urllib.request.urlopen(f"{prometheus.base}/-/ready", timeout=2).close()
            return True

        wait_until(ready, 30, 0.2, "prometheus did not become ready", ignoring=OSError)
        # A scrape before the traffic, so that rates see the traffic as an increase: the one
        # that sets up = 1 holds the pre-bound series (stage histograms, frames) at zero.
        wait_until(
            lambda: prometheus.query('up{job="tfs-gateway"} == 1'),
            30,
            0.2,
            "prometheus never scraped the gateway",
        )
        _send_known_traffic(gateway)
        wait_until(
            lambda: prometheus.query('tfs_gateway_requests_total{method="Stream"} == 1'),
            30,
            0.2,
            "prometheus never scraped the traffic",
        )

        def rates_over_the_traffic_exist() -> bool:
            # The Stream series is the last the traffic created: once it has a second sample,
            # every series has two. The dashboard also reads a series recorded by a rule.
            stream = 'count_over_time(tfs_gateway_requests_total{method="Stream"}[1m]) >= 2'
            return bool(prometheus.query(stream)) and bool(
                prometheus.query("tfs_gateway:errors:ratio_rate5m")
            )

        wait_until(
            rates_over_the_traffic_exist, 30, 0.2, "prometheus never had rates over the traffic"
        )
        yield prometheus, gateway
    finally:
        process.terminate()
        process.wait(timeout=10)
        gateway.stop()


def _send_known_traffic(gateway: GatewayProcess) -> None:
    with grpc.insecure_channel(gateway.target) as channel:
        stub = classify_pb2_grpc.ImageGatewayStub(channel)

        def classify(image: bytes, **model) -> None:
            stub.Classify(
                classify_pb2.ClassifyRequest(model=model or {"name": "colors"}, image=image),
                timeout=30,
            )

        for colour in ("red", "green", "blue"):
            classify(images.solid(colour))
        stub.Detect(
            classify_pb2.DetectRequest(
                model={"name": "shapes"}, image=images.encode(images.scene(), "PNG")
            )
        )
        for bad in (lambda: classify(b"not an image"), lambda: classify(b"GIF89a broken"),
                    lambda: classify(images.solid("red"), name="resnet"),
                    lambda: classify(images.solid("red"), name="colors", version=9)):  # fmt: skip
            with pytest.raises(grpc.RpcError):
                bad()
        task = classify_pb2.ModelTask(model=classify_pb2.ModelRef(name="colors"))
        messages = [
            classify_pb2.StreamRequest(options=classify_pb2.StreamOptions(tasks=[task]))
        ] + [
            classify_pb2.StreamRequest(
                frame=classify_pb2.Frame(frame_id=i, image=images.solid("red"))
            )
            for i in range(4)
        ]
        assert len(list(stub.Stream(iter(messages), timeout=30))) == 4


def test_prometheus_scrapes_the_gateway(scraped) -> None:
    prometheus, _ = scraped
    [up] = prometheus.query('up{job="tfs-gateway"}')
    assert up["value"][1] == "1"


def test_request_counters_equal_the_calls_made(scraped) -> None:
    prometheus, _ = scraped
    counts = {
        (s["metric"]["method"], s["metric"]["model"], s["metric"]["code"]): float(s["value"][1])
        for s in prometheus.query("tfs_gateway_requests_total")
    }
    assert counts == {
        ("Classify", "colors", "OK"): 3,
        ("Detect", "shapes", "OK"): 1,
        ("Classify", "colors", "INVALID_ARGUMENT"): 2,
        ("Classify", "_unknown", "NOT_FOUND"): 1,
        ("Classify", "colors", "NOT_FOUND"): 1,
        ("Stream", "colors", "OK"): 1,
        ("StreamFrame", "colors", "OK"): 4,  # each frame is a call of its own
    }
    frames = {
        s["metric"]["outcome"]: float(s["value"][1])
        for s in prometheus.query("tfs_gateway_stream_frames_total")
    }
    assert frames == {"received": 4, "served": 4, "failed": 0, "dropped": 0, "cancelled": 0}
    [upstream] = prometheus.query("tfs_gateway_upstream_errors_total")
    assert (upstream["metric"]["model"], upstream["metric"]["code"], upstream["value"][1]) == (
        "colors",
        "NOT_FOUND",
        "1",
    )


@pytest.mark.parametrize("stage", ["decode", "preprocess", "upstream", "postprocess"])
def test_stage_quantiles_are_finite(scraped, stage: str) -> None:
    prometheus, _ = scraped
    buckets = f'tfs_gateway_stage_duration_seconds_bucket{{stage="{stage}"}}'
    result = prometheus.query(f"histogram_quantile(0.9, sum by (le) (rate({buckets}[1m])))")
    assert len(result) == 1
    value = float(result[0]["value"][1])
    assert math.isfinite(value) and value > 0


def test_every_dashboard_panel_query_returns_data(scraped) -> None:
    prometheus, _ = scraped
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for title, expr in exprs:
        concrete = expr.replace("$__rate_interval", "1m").replace("$model", ".+")
        assert prometheus.query(concrete), f"panel {title!r}: no data for {concrete}"
