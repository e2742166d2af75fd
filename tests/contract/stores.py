"""Store factories for contract tests: MemoryStore, RedisStore on fakeredis, RedisStore on the real
Redis at 127.0.0.1:6379 (skipped when absent; a unique key prefix per store, its keys deleted after), and
RedisStore on a private 3-master Redis Cluster started for the session (tests/support/redis_topologies.py)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from uuid import uuid4

import fakeredis

from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore

REAL_REDIS = "redis://127.0.0.1:6379/0"
STORE_KINDS = ("memory", "fakeredis", "redis", "cluster")


def real_redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.2):
            return True
    except OSError:
        return False


def prefix() -> str:
    return f"t-limits-{uuid4().hex[:8]}"


async def on_fakeredis(store: RedisStore, server: fakeredis.FakeServer | None = None) -> RedisStore:
    """`store` talking to an in-memory fakeredis (a fresh one, or `server`'s) instead of its URL's
    Redis; through redis-py only, since fakeredis cannot serve the request connection."""
    await store.client.aclose()
    store.client = fakeredis.FakeAsyncRedis(server=server) if server is not None else fakeredis.FakeAsyncRedis()
    store.request_connection = None
    return store


async def discard(store: RedisStore) -> None:
    """Delete every key under the store's prefix, then close it."""
    keys = [k async for k in store.client.scan_iter(match=store.prefix + ":*", count=500)]
    if keys:
        await store.client.delete(*keys)
    await store.close()


@asynccontextmanager
async def open_store(kind: str, url: str = REAL_REDIS) -> AsyncIterator[Any]:
    """`url`: the Redis to use for the "redis" and "cluster" kinds."""
    if kind == "memory":
        yield MemoryStore()
        return
    if kind == "fakeredis":
        store = await on_fakeredis(RedisStore("redis://127.0.0.1:1/0", timeout=1.0, key_prefix=prefix()))
        try:
            yield store
        finally:
            await store.close()
        return
    store = RedisStore(url, timeout=2.0, key_prefix=prefix())
    try:
        yield store
    finally:
        await discard(store)


StoreFactory = Callable[[], AbstractAsyncContextManager[Any]]
