"""Reading an HTTP inference request: the body (raw or a multipart form, bounded in bytes and
fields, held in memory, never spooled to disk), its options with their ranges, and the caller's
timeout. Every problem is a GatewayError that names it."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.drawing import AnnotateSpec
from gateway.errors import InvalidRequestError, RequestTooLargeError
from gateway.inference import ImageRequest, Task
from gateway.tfserving.signatures import ModelRef

_INT64_MAX = 2**63 - 1
_PLAIN = ("", "identity")  # Content-Encoding values that leave Content-Length the body's size


def _number(options: dict[str, str], name: str, kind: type, default: Any) -> Any:
    if name not in options or options[name] == "":
        return default
    try:
        return kind(options[name])
    except ValueError:
        raise InvalidRequestError(
            f"{name} must be a {kind.__name__}, got {options[name]!r}"
        ) from None


def _bounded(
    options: dict[str, str], name: str, kind: type, default: Any, low: Any, high: Any,
    meaning: str = "",
) -> Any:  # fmt: skip
    value = _number(options, name, kind, default)
    if value is not None and not (low <= value <= high):  # NaN fails both comparisons
        raise InvalidRequestError(
            f"{name} must be in {low}..{high}{meaning}, got {options[name]!r}"
        )
    return value


def caller_timeout(request: web.Request) -> float | None:
    """The caller's timeout in seconds, from the ``X-Request-Timeout`` header and/or the
    ``timeout`` query parameter (the smaller wins); None: no deadline."""
    given = {
        "X-Request-Timeout": request.headers.get("X-Request-Timeout", ""),
        "timeout": request.query.get("timeout", ""),
    }
    timeouts = []
    for name, raw in given.items():
        if raw == "":
            continue
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (0 < value < math.inf):
            raise InvalidRequestError(f"{name} must be a number of seconds above 0, got {raw!r}")
        timeouts.append(value)
    return min(timeouts, default=None)


async def _read_form(
    request: web.Request, limit: int, max_fields: int
) -> tuple[bytes, dict[str, str]]:
    """A multipart form, read into memory part by part (aiohttp's ``post()`` would spool large
    files to a temporary directory, which a read-only root filesystem does not have)."""
    image, options, fields, size = b"", {}, 0, 0
    try:
        reader = await request.multipart()
        async for part in reader:
            fields += 1
            if fields > max_fields:
                raise InvalidRequestError(f"the multipart form has over {max_fields} fields")
            if not isinstance(part, BodyPartReader):
                raise InvalidRequestError("malformed multipart body: a nested multipart part")
            data = bytearray()
            while chunk := await part.read_chunk():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                data += chunk
            if part.name == "image":
                image = bytes(data)
            elif part.name:
                options[part.name] = data.decode("utf-8", errors="replace")
    except (ValueError, KeyError, AssertionError) as error:  # what aiohttp's reader raises
        raise InvalidRequestError(f"malformed multipart body: {error or 'no boundary'}") from None
    if fields == 0:
        raise InvalidRequestError("malformed multipart body: no parts")
    return image, options


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"the request body is over the gateway's limit of {limit} bytes")


def body_bytes(request: web.Request, limit: int) -> int:
    """The bytes a body may take once read, from its header alone: its ``Content-Length``, or
    ``limit`` when that does not say (chunked, or compressed: the limit applies to the
    decompressed bytes). Over ``limit``: RequestTooLargeError, before anything is read."""
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)  # said at once, without reading it
    if length is None or request.headers.get("Content-Encoding", "").lower() not in _PLAIN:
        return limit
    return length


async def read_image(
    request: web.Request, limit: int, max_fields: int
) -> tuple[bytes, dict[str, str]]:
    """The image and the options, from a raw body or a multipart form (options may be in the
    query string either way)."""
    too_large = _too_large(limit)
    body_bytes(request, limit)
    options = dict(request.query)
    try:
        if request.content_type == "multipart/form-data":
            image, fields = await _read_form(request, limit, max_fields)
            return image, {**options, **fields}
        return await request.read(), options
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except (web.RequestPayloadError, HttpProcessingError) as error:
        # e.g. a body that does not match its Content-Encoding
        encoding = request.headers.get("Content-Encoding", "none")
        reason = str(error).replace("\n", " ").split("message:")[-1].strip()
        raise InvalidRequestError(
            f"the request body cannot be read (Content-Encoding {encoding}): {reason}"
        ) from None


def image_request(
    name: str, image: bytes, options: dict[str, str], timeout: float | None
) -> ImageRequest:
    version = _bounded(options, "version", int, None, 0, _INT64_MAX)
    label = options.get("label") or None
    annotate = options.get("annotate", "").lower() in ("1", "true", "yes")
    default = " (0: the model's default)"
    task = Task(
        model=ModelRef(name, version, label, options.get("signature", "")),
        top_k=_bounded(options, "top_k", int, 0, 0, _INT64_MAX, default),
        min_score=_bounded(options, "min_score", float, 0.0, 0.0, 1.0),
        max_detections=_bounded(options, "max_detections", int, 0, 0, _INT64_MAX, default),
        annotate=AnnotateSpec(
            png=options.get("format", "").lower() == "png",
            jpeg_quality=_number(options, "quality", int, 0),
        )
        if annotate
        else None,
    )
    return ImageRequest(task, image, timeout)
