"""DECISIONS 35: every setting is in the README's configuration block, with its default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from gateway.config import GatewayConfig, ModelSettings, PreprocessSettings

README = Path(__file__).resolve().parent.parent / "README.md"


def config_block() -> str:
    text = README.read_text()
    section = text[text.index("## Configuration") :]
    return section[section.index("```toml") : section.index("```\n", section.index("```toml") + 7)]


def test_every_setting_is_in_the_readmes_configuration_block() -> None:
    block = config_block()
    documented = set(re.findall(r"^#?\s*([a-z_]+)\s*=", block, re.MULTILINE))
    documented |= set(re.findall(r";\s*([a-z_]+)\s*=", block))  # "mean = …; std = …"
    documented |= set(re.findall(r",\s*([a-z_]+)\s*=", block))  # "width = 224, height = 224"
    settings = [GatewayConfig, ModelSettings, PreprocessSettings]
    names = {f.name for cls in settings for f in dataclasses.fields(cls)}
    names -= {"models", "name", "preprocess"}  # tables and their keys, not settings
    assert sorted(names - documented) == []


def test_the_readme_states_the_defaults_of_the_limits() -> None:
    block = config_block()
    defaults = GatewayConfig()
    for name in ("max_in_flight", "max_message_bytes", "max_image_pixels", "max_tasks",
                 "max_decode_bytes_in_flight", "max_receive_bytes_in_flight", "max_streams",
                 "max_stream_unread_bytes",
                 "max_http_connections", "retry_after_ms"):  # fmt: skip
        value = getattr(defaults, name)
        assert re.search(rf"^{name} = {value}\b", block, re.MULTILINE), name
