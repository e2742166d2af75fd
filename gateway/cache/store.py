"""What the response cache needs of a store, and its settle writes.

Both stores declare `CacheStore` (gateway.store.protocol.Store); the operations are in
`store_memory.py` (the embedded store, bounded in bytes) and `store_redis.py` (one script call
each)."""

from __future__ import annotations

from typing import Protocol

from gateway.cache.store_memory import MemoryCacheOps
from gateway.cache.store_redis import RedisCacheOps
from gateway.store import BatchWrite


class CacheStore(Protocol):
    async def cache_lookup(self, entry_key: str, lock_key: str, token: str,
                           lock_ms: int) -> tuple[bytes | None, bool]:
        """(the entry or None, whether this caller now holds the lock). An empty token asks for no lock."""
        ...

    async def cache_poll(self, entry_key: str, lock_key: str) -> tuple[bytes | None, bool]:
        """(the entry or None, whether the lock is still held)."""
        ...

    async def cache_purge(self, pattern: str) -> int:
        """Delete every entry matching a Redis MATCH pattern; how many."""
        ...


# (entry key, lock key, lock token, value, ttl in ms): the entry stored, the lock released if held.
CACHE_STORE = BatchWrite("cache_store", memory=MemoryCacheOps.apply_cache_store,
                         redis=RedisCacheOps.queue_cache_store)
# (lock key, lock token): the stampede lock released, if this token still holds it.
CACHE_RELEASE = BatchWrite("cache_release", memory=MemoryCacheOps.apply_cache_release,
                           redis=RedisCacheOps.queue_cache_release)
