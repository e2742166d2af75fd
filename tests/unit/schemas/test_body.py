"""Request bodies: compressed bodies decode to what was compressed, never past the limit; JSON nesting
is bounded at parse time."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from gateway.schemas.body import MAX_JSON_DEPTH, decode_body, parse_json

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "deflate": zlib.compress, "raw-deflate": lambda b: zlib.compress(b, wbits=-15)}


@given(st.binary(max_size=4096), st.sampled_from(sorted(CODECS)), st.integers(min_value=0, max_value=5000))
def test_a_decoded_body_is_what_was_compressed_or_a_413(data: bytes, codec: str, limit: int) -> None:
    header = "deflate" if codec == "raw-deflate" else codec
    if len(data) <= limit:
        assert decode_body(CODECS[codec](data), header, limit) == data
    else:
        with pytest.raises(PayloadTooLargeError):
            decode_body(CODECS[codec](data), header, limit)


@pytest.mark.parametrize("header", ["identity", "", " Identity "])
def test_identity_is_the_body_itself(header: str) -> None:
    assert decode_body(b"{}", header, 10) == b"{}"


@pytest.mark.parametrize(("header", "body", "error"), [
    ("br", b"x", UnsupportedMediaTypeError), ("gzip, gzip", gzip.compress(gzip.compress(b"{}")),
                                               UnsupportedMediaTypeError),
    ("gzip", b"plain", InvalidRequestError), ("gzip", gzip.compress(b"{}" * 100)[:-9], InvalidRequestError),
])
def test_what_cannot_be_decoded_is_refused(header: str, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_body(body, header, 1 << 20)


def nest(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


@given(st.integers(min_value=1, max_value=MAX_JSON_DEPTH + 40), st.sampled_from(["list", "dict"]))
def test_nesting_past_the_bound_is_a_400_and_within_it_parses(depth: int, kind: str) -> None:
    raw = orjson.dumps({"model": "m", "x": nest(depth - 1, kind)})
    if depth <= MAX_JSON_DEPTH:
        assert parse_json(raw)["model"] == "m"
    else:
        with pytest.raises(InvalidRequestError) as refused:
            parse_json(raw)
        assert refused.value.code == "invalid_json"


def test_many_brackets_side_by_side_are_not_depth() -> None:
    raw = orjson.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "["}]}] * 500})
    assert len(parse_json(raw)["messages"]) == 500


def test_bad_json_is_a_400() -> None:
    with pytest.raises(InvalidRequestError):
        parse_json(b"{nope")
