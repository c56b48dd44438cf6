"""Every HTTP response (API, page, errors, metrics) carries the security headers, names no
versions in ``Server`` and no CORS; the page has no inline script or style for the
Content-Security-Policy to refuse (issue 14)."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from email.message import Message
from importlib import resources
from pathlib import Path

import pytest

from gateway.server import GatewayServer
from gateway.transport.http_headers import SECURITY_HEADERS
from tests.test_server import config_with, run


def _headers(url: str) -> tuple[int, Message]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


@pytest.mark.parametrize(
    ("listener", "path", "status"),
    [("http", "/", 200), ("http", "/page.js", 200), ("http", "/page.css", 200),
     ("http", "/v1/models", 200), ("http", "/no/such/path", 404), ("http", "/readyz", 200),
     ("metrics", "/metrics", 200)],
)  # fmt: skip
def test_every_response_carries_the_security_headers(
    tmp_path: Path, listener: str, path: str, status: int
) -> None:
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")

    async def test(server: GatewayServer) -> None:
        port = server.http_port if listener == "http" else server.metrics_port
        got, headers = await asyncio.to_thread(_headers, f"http://127.0.0.1:{port}{path}")
        assert got == status
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value, name
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert not [name for name in headers if name.lower().startswith("access-control-")]

    run(config_with(tmp_path / "labels.txt"), test)


def test_the_server_header_names_no_version() -> None:
    assert not re.search(r"\d", SECURITY_HEADERS["Server"])


def test_the_page_has_no_inline_script_style_or_handlers() -> None:
    html = resources.files("gateway").joinpath("static/index.html").read_text()
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/page.js">']
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html)  # onclick= … would need 'unsafe-inline'
