"""Headers every HTTP response carries, API, page and metrics alike (issue 14): a strict
Content-Security-Policy (the page's script and style are files of this origin; the annotated
image arrives as a ``data:`` URL), no MIME sniffing, no framing, no referrer, and a ``Server``
header that names no versions. CORS stays off: no ``Access-Control-*`` header is sent."""

from __future__ import annotations

from aiohttp import web

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Server": "tfs-gateway",  # aiohttp's default names Python's and its own versions
}


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


def add_security_headers(app: web.Application) -> web.Application:
    """Every response ``app`` prepares gets :data:`SECURITY_HEADERS`."""
    app.on_response_prepare.append(_add_security_headers)
    return app
