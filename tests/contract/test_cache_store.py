"""The cache's store operations, one suite for every store: MemoryStore, RedisStore on fakeredis
(Lua through lupa) and RedisStore on the real Redis at 6379 (unique key prefix, never flushed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest

from gateway.cache.keys import entry_key, lock_key, purge_pattern
from gateway.cache.store import CACHE_RELEASE, CACHE_STORE
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from tests.contract.stores import discard, on_fakeredis

REAL_REDIS = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "fakeredis", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    prefix = f"t-cache-{uuid4().hex[:8]}"
    if request.param == "memory":
        memory = MemoryStore()
        memory.cache_clock = Clock()  # type: ignore[assignment]
        memory.prefix = prefix  # type: ignore[attr-defined]
        yield memory
        return
    url = request.getfixturevalue("redis_cluster_url") if request.param == "cluster" else REAL_REDIS
    redis_store = RedisStore(url, timeout=2.0, key_prefix=prefix)
    if request.param == "fakeredis":
        await on_fakeredis(redis_store)
    try:
        yield redis_store
    finally:
        await discard(redis_store)


def keys(store: Any, digest: str = "d1", alias: str = "a1", scope: str = "k1") -> tuple[str, str]:
    return entry_key(store.prefix, digest, alias, scope), lock_key(store.prefix, digest)


async def test_miss_takes_the_lock_once(store: Any) -> None:
    entry, lock = keys(store)
    assert await store.cache_lookup(entry, lock, "tok-1", 5000) == (None, True)
    assert await store.cache_lookup(entry, lock, "tok-2", 5000) == (None, False)
    assert await store.cache_poll(entry, lock) == (None, True)
    # No token: a lookup that does not want the lock leaves it alone.
    assert await store.cache_lookup(entry, lock, "", 5000) == (None, False)


async def test_store_then_hit_and_the_lock_is_released(store: Any) -> None:
    entry, lock = keys(store)
    await store.cache_lookup(entry, lock, "tok-1", 5000)
    await store.run_batch([CACHE_STORE(entry, lock, "tok-1", b"\x00value\xff", 60_000)])
    assert await store.cache_lookup(entry, lock, "tok-2", 5000) == (b"\x00value\xff", False)
    assert await store.cache_poll(entry, lock) == (b"\x00value\xff", False)


async def test_release_only_drops_the_callers_own_lock(store: Any) -> None:
    entry, lock = keys(store)
    await store.cache_lookup(entry, lock, "tok-1", 5000)
    await store.run_batch([CACHE_RELEASE(lock, "someone-else")])
    assert await store.cache_poll(entry, lock) == (None, True)
    await store.run_batch([CACHE_RELEASE(lock, "tok-1")])
    assert await store.cache_poll(entry, lock) == (None, False)
    # A store by a request that never held the lock (token "") leaves another's lock in place.
    await store.cache_lookup(entry, lock, "tok-3", 5000)
    await store.run_batch([CACHE_STORE(entry, lock, "", b"v", 60_000)])
    assert await store.cache_poll(entry, lock) == (b"v", True)


async def test_purge_by_alias_and_scope(store: Any) -> None:
    # Each entry with its own digest's lock key: one hash tag, one Cluster slot per script call.
    pairs = {(alias, scope): keys(store, f"d-{alias}-{scope}", alias, scope)
             for alias in ("a1", "a2") for scope in ("k1", "t1")}
    await store.run_batch([CACHE_STORE(key, lock, "", b"v", 60_000) for key, lock in pairs.values()])
    assert await store.cache_purge(purge_pattern(store.prefix, "a1", "k1")) == 1
    assert await store.cache_purge(purge_pattern(store.prefix, None, "t1")) == 2
    assert await store.cache_purge(purge_pattern(store.prefix, "a2", None)) == 1
    assert await store.cache_purge(purge_pattern(store.prefix, None, None)) == 0
    for key, lock in pairs.values():
        assert await store.cache_poll(key, lock) == (None, False)


async def test_entries_and_locks_expire(store: Any) -> None:
    entry, lock = keys(store)
    if isinstance(store, MemoryStore):
        await store.cache_lookup(entry, lock, "tok", 1000)
        await store.run_batch([CACHE_STORE(entry, "other-lock", "", b"v", 2000)])
        store.cache_clock.now += 1.5  # type: ignore[attr-defined]
        assert await store.cache_poll(entry, lock) == (b"v", False)
        store.cache_clock.now += 1.0  # type: ignore[attr-defined]
        assert await store.cache_poll(entry, lock) == (None, False)
        return
    await store.cache_lookup(entry, lock, "tok", 1000)
    other_lock = lock.replace(":lock", ":other-lock")  # same hash tag: one Cluster slot
    await store.run_batch([CACHE_STORE(entry, other_lock, "", b"v", 2000)])
    assert 0 < await store.client.pttl(entry) <= 2000
    assert 0 < await store.client.pttl(lock) <= 1000
