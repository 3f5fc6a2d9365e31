"""Request and response bodies: read within the size limit, Content-Type checked, gzip/deflate
decompressed within the limit, responses compressed when the client accepts it."""

from __future__ import annotations

import gzip
import zlib

from onnxforge.runtime.errors import InputError

__all__ = ["read_body", "check_content_type", "decompress", "compress", "DRAIN_BYTES", "BODY_TYPES"]

COMPRESS_MIN_BYTES = 1024
DRAIN_BYTES = 64 << 20  # past the body limit, read (and drop) this much so the client sees the 400
# Content-Types an inference body may declare (or none, as Triton's clients send): JSON and the
# binary extension. The types a browser may send cross-site without asking first (text/plain,
# application/x-www-form-urlencoded, multipart/form-data) are refused, so no other site's page
# can make a visitor's browser run inference here.
BODY_TYPES = ("application/json", "application/octet-stream")


def check_content_type(value: str | None) -> None:
    media = (value or "").split(";")[0].strip().lower()
    if media and media not in BODY_TYPES:
        raise InputError(f"Content-Type {(value or '')[:80]!r} is not an inference request; send application/json, "
                         f"or application/octet-stream with an Inference-Header-Content-Length header "
                         f"(curl: -H 'Content-Type: application/json')")


async def read_body(request, limit: int, limit_mb: float) -> bytes:
    """The body, refused once it passes ``limit`` bytes; nothing past the limit is kept. A body
    over the limit is still read (and dropped) for up to :data:`DRAIN_BYTES` more, so the client
    gets the 400 instead of a reset connection; a Content-Length beyond even that is refused
    before any of the body is read."""
    raw = request.headers.get("content-length") or ""
    declared = (int(raw) if len(raw) <= 18 else 10**18) if raw.isascii() and raw.isdigit() else None
    if declared is not None and declared > limit + DRAIN_BYTES:
        raise InputError(f"the request body is {raw} bytes, over the limit of {limit_mb:g} MB (--max-body-mb)")
    keep = declared is None or declared <= limit
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if keep and size <= limit:
            chunks.append(chunk)
        elif size > limit + DRAIN_BYTES:
            break
    if size > limit or not keep:
        shown = raw if declared is not None else f"more than {size}"
        raise InputError(f"the request body is {shown} bytes, over the limit of {limit_mb:g} MB (--max-body-mb)")
    return b"".join(chunks)


def decompress(body: bytes, encoding: str | None, limit: int, limit_mb: float) -> bytes:
    """``body`` inflated (gzip or deflate), never past ``limit`` bytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise InputError(f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib framing, detected from the header
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InputError(f"the {encoding} body cannot be decompressed: {exc}") from None
    if len(out) > limit:
        raise InputError(f"the decompressed request body is over the limit of {limit_mb:g} MB (--max-body-mb)")
    if not inflater.eof:
        raise InputError(f"the {encoding} body is truncated")
    return out


def compress(payload: bytes, accept: str | None, headers: dict) -> bytes:
    """``payload`` gzip- or deflate-compressed when ``accept`` (Accept-Encoding) offers one and
    it is worth it; sets Content-Encoding in ``headers``."""
    if not accept or len(payload) < COMPRESS_MIN_BYTES:
        return payload
    offered = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if "gzip" in offered:
        headers["Content-Encoding"] = "gzip"
        return gzip.compress(payload, compresslevel=1)
    if "deflate" in offered:
        headers["Content-Encoding"] = "deflate"
        return zlib.compress(payload, 1)
    return payload
