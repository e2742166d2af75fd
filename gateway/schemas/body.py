"""Request bodies as they arrive: decompressed within the size bound, and parsed as JSON no deeper than
the gateway can handle."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from gateway.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

# Deepest nesting a request body may have. orjson writes at most 254 levels and the gateway wraps a
# client's values in a few levels of its own (provider translation, cache keys); real bodies (tool
# schemas included) stay far below this.
MAX_JSON_DEPTH = 128

_GZIP = 16 + zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or a 400 for bad JSON and for nesting past MAX_JSON_DEPTH."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json") from None
    # A body with fewer brackets than the bound cannot nest past it: the walk is for the rest.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise InvalidRequestError(f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.",
                                  code="invalid_json")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                pending.append((child, depth + 1))
    return False


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """A body sent with `Content-Encoding` (gzip or deflate), decompressed to at most `limit` bytes:
    past it a 413, never more memory than the limit."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = _GZIP
    elif coding == "deflate":
        # RFC 9110's deflate is zlib-wrapped; some clients send the raw stream.
        wbits = zlib.MAX_WBITS if body[:1] and (body[0] & 0x0F) == 8 and int.from_bytes(body[:2]) % 31 == 0 \
            else _RAW_DEFLATE
    else:
        raise UnsupportedMediaTypeError(f"Content-Encoding '{encoding}' is not supported: send gzip, deflate "
                                        "or an uncompressed body.")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InvalidRequestError(f"The request body is not valid {coding} data.",
                                  code="invalid_content_encoding") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes once decompressed.")
    if not inflater.eof:
        raise InvalidRequestError(f"The request body ends before its {coding} data does.",
                                  code="invalid_content_encoding")
    return out
