"""A key prefix of one test's own on the shared Redis at 127.0.0.1:6379: the test skips without a
Redis, and every key under the prefix is deleted afterwards (the shared server is never flushed)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from uuid import uuid4

import pytest
import redis

SHARED_REDIS = "redis://127.0.0.1:6379/0"


@contextlib.contextmanager
def scratch_prefix(name: str) -> Iterator[str]:
    prefix = f"t-{name}-{uuid4().hex[:8]}"
    client = redis.Redis.from_url(SHARED_REDIS, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        pytest.skip("no Redis at 127.0.0.1:6379")
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
