"""Settings from file, environment and flags, validated at load: enumerated settings become enums,
numbers are range-checked, label files are read, and every error names where the bad value came
from, the key and what is allowed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.choices import (
    Color,
    InputDType,
    Layout,
    ModelKind,
    Normalization,
    ResizeFilter,
    ResizeMode,
)
from gateway.config import ConfigError, GatewayConfig, ModelSettings, load_config
from gateway.server import build_upstream
from gateway.tfserving.rest import RestUpstream, RetryPolicy
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def refused(
    path: Path,
    env: dict[str, str] | None = None,
    overrides: dict[str, object] | None = None,
    extra_models: tuple[ModelSettings, ...] = (),
) -> str:
    """The message load_config refuses the file with (no TFS_GATEWAY_* unless given)."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env or {}, overrides=overrides, extra_models=extra_models)
    return str(caught.value)


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    path = write(
        tmp_path,
        'upstream = "tfs:8500"\nport = 9001\nmax_in_flight = 10\n'
        '[models.m]\nlabels = "labels.txt"\ntop_k = 2\n'
        '[models.m.preprocess]\nresize_mode = "letterbox"\nmean = [0.5, 0.5, 0.5]\n',
    )
    config = load_config(
        path,
        env={"TFS_GATEWAY_PORT": "9002", "TFS_GATEWAY_ALLOWED_FORMATS": "JPEG,PNG"},
        overrides={"max_in_flight": 3, "host": None},
    )
    assert (config.upstream, config.port, config.max_in_flight, config.host) == (
        "tfs:8500", 9002, 3, GatewayConfig().host,
    )  # fmt: skip
    assert config.allowed_formats == ("JPEG", "PNG")
    [model] = config.models
    assert (model.name, model.labels, model.top_k) == ("m", labels, 2)
    assert model.preprocess.resize_mode is ResizeMode.LETTERBOX
    assert model.preprocess.mean == (0.5, 0.5, 0.5)


def test_every_enumerated_setting_is_an_enum_after_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[models.m]\nkind = "detection"\n[models.m.preprocess]\nresize_mode = "center_crop"\n'
        'resize_filter = "lanczos"\ncolor = "bgr"\nnormalization = "caffe"\ndtype = "float16"\n'
        'layout = "NCHW"\n',
    )
    [model] = load_config(path, env={}).models
    pre = model.preprocess
    assert (model.kind, pre.resize_mode, pre.resize_filter, pre.color) == (
        ModelKind.DETECTION, ResizeMode.CENTER_CROP, ResizeFilter.LANCZOS, Color.BGR,
    )  # fmt: skip
    assert (pre.normalization, pre.dtype, pre.layout) == (
        Normalization.CAFFE, InputDType.FLOAT16, Layout.NCHW,
    )  # fmt: skip
    assert all(
        type(value) is not str
        for value in (model.kind, pre.resize_mode, pre.resize_filter, pre.color,
                      pre.normalization, pre.dtype, pre.layout)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "written", "expected"),
    [
        ("dtype", "DT_UINT8", InputDType.UINT8),
        ("dtype", "DT_FLOAT", InputDType.FLOAT32),
        ("dtype", "DT_HALF", InputDType.FLOAT16),
        ("layout", "nchw", Layout.NCHW),
        ("layout", "Nhwc", Layout.NHWC),
    ],
)
def test_tf_dtype_names_and_any_case_layouts_are_still_read(
    tmp_path: Path, key: str, written: str, expected: object
) -> None:
    path = write(tmp_path, f'[models.m.preprocess]\n{key} = "{written}"\n')
    [model] = load_config(path, env={}).models
    assert getattr(model.preprocess, key) is expected


@pytest.mark.parametrize(
    ("setting", "allowed"),
    [
        ('preprocess.resize_mode = "leterbox"',
         "none, stretch, letterbox, center_crop, shorter_side_crop"),
        ('preprocess.resize_filter = "cubic"', "nearest, bilinear, bicubic, lanczos, box, hamming"),
        ('preprocess.color = "rbg"', "rgb, bgr, grayscale"),
        ('preprocess.normalization = "imagenet"', "raw, unit, symmetric, mean_std, caffe"),
        ('preprocess.dtype = "float64"', "uint8, float32, float16"),
        ('preprocess.layout = "NWHC"', "NHWC, NCHW"),
        ('kind = "segmentation"', "classification, detection"),
    ],
)  # fmt: skip
def test_a_misspelt_choice_names_the_file_the_key_and_the_allowed_values(
    tmp_path: Path, setting: str, allowed: str
) -> None:
    path = write(tmp_path, f"[models.colors]\n{setting}\n")
    key, _, value = setting.partition(" = ")
    assert refused(path) == f"{path}: models.colors.{key}: {value} is not one of {allowed}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1", "prot: unknown setting (known: allowed_formats, decode_threads, "),
        ('port = "x"', 'port: expected int, got "x"'),
        ("[models.m]\ntop_k = 1.5", "models.m.top_k: expected int, got 1.5"),
        ("[models.m.preprocess]\nwidht = 3", "models.m.preprocess.widht: unknown setting (known: "),
        ("models = 3", "models: expected a table of models"),
        ("[models]\nm = 3", "models.m: expected a table"),
    ],
)  # fmt: skip
def test_a_setting_of_the_wrong_name_or_type_is_named(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    assert refused(path).startswith(f"{path}: {message}")


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "port = ")
    assert refused(path) == f"{path}: not valid TOML: Invalid value (at end of document)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = -1", "port: must be in 0..65535 (0: any free port), not -1"),
        ("http_port = 65536",
         "http_port: must be in -1..65535 (-1: off, 0: any free port), not 65536"),
        ("metrics_port = -2",
         "metrics_port: must be in -1..65535 (-1: off, 0: any free port), not -2"),
        ("max_in_flight = 0", "max_in_flight: must be at least 1, not 0"),
        ("max_message_bytes = 0", "max_message_bytes: must be at least 1, not 0"),
        ("max_image_pixels = 0", "max_image_pixels: must be at least 1, not 0"),
        ("stream_window = 0", "stream_window: must be at least 1, not 0"),
        ("decode_threads = 0", "decode_threads: must be at least 1, not 0"),
        ("upstream_timeout_s = 0", "upstream_timeout_s: must be above 0, not 0.0"),
        ("status_poll_s = -1", "status_poll_s: must be above 0, not -1.0"),
        ("unready_after_failures = 0", "unready_after_failures: must be at least 1, not 0"),
        ("shutdown_grace_s = -1", "shutdown_grace_s: must be at least 0, not -1.0"),
        ("upstream_keepalive_time_ms = 0", "upstream_keepalive_time_ms: must be at least 1, not 0"),
        ("retry_after_ms = -1", "retry_after_ms: must be in 0..3600000 (at most an hour), not -1"),
        ("upstream_retry_attempts = 6",
         "upstream_retry_attempts: must be in 1..5 (1: no retries), not 6"),
        ("upstream_retry_initial_backoff_ms = 0",
         "upstream_retry_initial_backoff_ms: must be at least 1, not 0"),
        ("[models.m]\ntop_k = 0", "models.m.top_k: must be at least 1, not 0"),
        ("[models.m]\nmax_detections = 0", "models.m.max_detections: must be at least 1, not 0"),
        ("[models.m]\nmin_score = 1.5", "models.m.min_score: must be in [0, 1], not 1.5"),
        ("[models.m]\nbatch_max_size = -1", "models.m.batch_max_size: must be at least 0, not -1"),
        ("[models.m]\nbatch_max_wait_ms = -1",
         "models.m.batch_max_wait_ms: must be at least 0, not -1.0"),
        ("[models.m.preprocess]\nwidth = 0", "models.m.preprocess.width: must be above 0, not 0"),
        ("[models.m.preprocess]\nheight = -3",
         "models.m.preprocess.height: must be above 0, not -3"),
        ("[models.m.preprocess]\npad_value = 256",
         "models.m.preprocess.pad_value: must be in 0..255, not 256"),
        ("[models.m.preprocess]\nbackground = [0, 0]",
         "models.m.preprocess.background: must be 3 values in 0..255, not [0, 0]"),
        ("[models.m.preprocess]\nbackground = [0, 300, 0]",
         "models.m.preprocess.background: must be 3 values in 0..255, not [0, 300, 0]"),
        ("[models.m.preprocess]\nstd = [0.2, 0.0, 0.2]",
         "models.m.preprocess.std: must be above 0, every value, not [0.2, 0.0, 0.2]"),
    ],
)  # fmt: skip
def test_a_number_out_of_range_is_refused_with_its_range(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    assert refused(path) == f"{path}: {message}"


def test_max_stream_window_must_cover_stream_window(tmp_path: Path) -> None:
    path = write(tmp_path, "stream_window = 8\nmax_stream_window = 4\n")
    assert refused(path) == f"{path}: max_stream_window: must be at least stream_window (8), not 4"


def test_the_receive_budget_must_hold_a_whole_message(tmp_path: Path) -> None:
    path = write(tmp_path, "max_message_bytes = 2097152\nmax_receive_bytes_in_flight = 1048576\n")
    assert refused(path) == (
        f"{path}: max_receive_bytes_in_flight: must be at least max_message_bytes (2097152), "
        "not 1048576"
    )
    path = write(tmp_path, "max_receive_bytes_in_flight = 1000\n")
    assert refused(path) == (
        f"{path}: max_receive_bytes_in_flight: must be at least 1 MiB (1048576), not 1000"
    )


def test_max_backoff_must_cover_initial_backoff(tmp_path: Path) -> None:
    path = write(tmp_path, "upstream_retry_initial_backoff_ms = 100\n")
    assert refused(path, env={"TFS_GATEWAY_UPSTREAM_RETRY_MAX_BACKOFF_MS": "50"}) == (
        "TFS_GATEWAY_UPSTREAM_RETRY_MAX_BACKOFF_MS: must be at least "
        "upstream_retry_initial_backoff_ms (100), not 50"
    )


def test_a_bad_value_from_the_environment_names_its_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9001\n")
    assert refused(path, env={"TFS_GATEWAY_PORT": "70000"}) == (
        "TFS_GATEWAY_PORT: must be in 0..65535 (0: any free port), not 70000"
    )


def test_a_bad_value_from_a_flag_names_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert refused(path, overrides={"http_port": -5}) == (
        "--http-port: must be in -1..65535 (-1: off, 0: any free port), not -5"
    )


def test_a_missing_label_file_names_the_model_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[models.colors]\nlabels = "missing.txt"\n')
    assert refused(path) == (
        f"{path}: models.colors.labels: cannot read {tmp_path / 'missing.txt'}: "
        "No such file or directory"
    )


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("label_map.pbtxt", b"item {\n  id: one\n}\n",
         "2:7 : '  id: one': Couldn't parse integer: one"),
        ("labels.txt", b"\xff\xfe",
         "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    ],
)  # fmt: skip
def test_a_malformed_label_file_names_the_model_and_the_file(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    (tmp_path / name).write_bytes(content)
    path = write(tmp_path, f'[models.shapes]\nlabels = "{name}"\n')
    assert refused(path) == (
        f"{path}: models.shapes.labels: {tmp_path / name} is not a label file: {reason}"
    )


def test_a_model_named_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[models.colors]\ntop_k = 3\n")
    assert refused(path, extra_models=(ModelSettings("colors"),)) == (
        f"--model: models.colors: configured twice (also in {path})"
    )


def test_upstream_keepalive_and_retry_settings_reach_the_grpc_channel(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'upstream = "tfs:8500"\nupstream_keepalive_time_ms = 15000\n'
        "upstream_keepalive_timeout_ms = 4000\nupstream_retry_attempts = 4\n"
        "upstream_retry_initial_backoff_ms = 5\nupstream_retry_max_backoff_ms = 250\n",
    )
    config = load_config(path, env={})

    async def built() -> tuple[dict, dict]:
        upstream = build_upstream(config)
        try:
            options = upstream.options
            return dict(options.channel_options()), options.service_config()
        finally:
            await upstream.close()

    channel, service = asyncio.run(built())
    assert (channel["grpc.keepalive_time_ms"], channel["grpc.keepalive_timeout_ms"]) == (
        15000, 4000,
    )  # fmt: skip
    assert service["methodConfig"][0]["retryPolicy"] == {
        "maxAttempts": 4,
        "initialBackoff": "0.005s",
        "maxBackoff": "0.25s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }


def test_upstream_retry_settings_reach_the_rest_retry_policy(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'upstream = "http://tfs:8501"\nupstream_retry_attempts = 2\n'
        "upstream_retry_initial_backoff_ms = 5\nupstream_retry_max_backoff_ms = 100\n",
    )
    upstream = build_upstream(load_config(path, env={}))
    assert isinstance(upstream, RestUpstream)
    assert upstream.retry == RetryPolicy(attempts=2, initial_backoff_s=0.005, max_backoff_s=0.1)


def test_check_config_exits_0_with_a_summary_or_2_with_the_error(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("red\ngreen\n")
    good = tmp_path / "gateway.toml"
    good.write_text(
        'upstream = "tfs:8500"\n[models.colors]\nlabels = "labels.txt"\n[models.shapes]\n'
    )
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.colors.preprocess]\nresize_mode = "leterbox"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFS_GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    # -X importtime lists every module imported: the check must not start (or import) a server.
    ok = run("-X", "importtime", "-m", "gateway", "check-config", "gateway.toml")
    assert (ok.returncode, ok.stdout) == (
        0, "gateway.toml: valid\nupstream: tfs:8500 (gRPC)\nmodels: colors, shapes\n",
    )  # fmt: skip
    imported = [line.rsplit("|", 1)[-1].strip() for line in ok.stderr.splitlines()]
    assert "gateway.config" in imported
    assert "gateway.server" not in imported
    assert not [name for name in imported if name.startswith("tensorflow")]
    failed = run("-m", "gateway", "check-config", "bad.toml")
    assert (failed.returncode, failed.stdout, failed.stderr) == (
        2, "",
        'tfs-gateway: config: bad.toml: models.colors.preprocess.resize_mode: "leterbox" is not '
        "one of none, stretch, letterbox, center_crop, shorter_side_crop\n",
    )  # fmt: skip
