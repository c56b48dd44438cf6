"""Settings from file, environment and flags, and the errors that name the bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig, load_config


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    path = tmp_path / "gateway.toml"
    path.write_text(
        'upstream = "tfs:8500"\nport = 9001\nmax_in_flight = 10\n'
        '[models.m]\nlabels = "labels.txt"\ntop_k = 2\n'
        '[models.m.preprocess]\nresize_mode = "letterbox"\nmean = [0.5, 0.5, 0.5]\n'
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
    assert model.preprocess.resize_mode == "letterbox"
    assert model.preprocess.mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1", "unknown setting 'prot'"),
        ('port = "x"', "port: expected int, got 'x'"),
        ("[models.m]\ntop_k = 1.5", "models.m.top_k: expected int, got 1.5"),
        ('[models.m]\nlabels = "missing.txt"', "models.m.labels: no such file"),
        ('[models.m]\nkind = "segmentation"', "models.m.kind: classification or detection"),
        ("[models.m.preprocess]\nwidht = 3", "models.m.preprocess: unknown setting 'widht'"),
        ("max_in_flight = 0", "max_in_flight: must be at least 1"),
        ("port = ", "config file"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(path, env={})
