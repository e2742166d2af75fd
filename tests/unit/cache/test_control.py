from __future__ import annotations

import pytest

from gateway.cache.control import DEFAULT, Controls, parse_controls


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, DEFAULT),
    ({"cache-control": "no-cache"}, Controls(read=False)),
    ({"cache-control": "No-Store"}, Controls(write=False)),
    ({"cache-control": "no-cache, no-store"}, Controls(read=False, write=False)),
    ({"cache-control": "max-age=30"}, Controls(max_age=30.0)),
    ({"cache-control": 'max-age="5", no-store'}, Controls(write=False, max_age=5.0)),
    ({"cache-control": "max-age=oops"}, DEFAULT),
    ({"x-gateway-cache-ttl": "90"}, Controls(ttl=90.0)),
    ({"x-gateway-cache-ttl": "5m"}, Controls(ttl=300.0)),
    ({"x-gateway-cache-ttl": "0"}, Controls(write=False)),
    ({"x-gateway-cache-ttl": "soon"}, DEFAULT),
])
def test_parse_controls(headers: dict[str, str], expected: Controls) -> None:
    assert parse_controls(headers) == expected
