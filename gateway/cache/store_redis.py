"""The response cache's operations for Redis (mixed into RedisStore; their in-process twins are in
`store_memory.py`). A lookup is one script call (the entry, or else the stampede lock taken); the
settle-time writes queue one script call each on the shared settle batch (store/scripts.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.store import Once
from gateway.store.scripts import REDIS_FAILURES, CommandBatch, RedisClient, ScriptOps, unavailable

_LOOKUP = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if ARGV[1] == '' then return {0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
"""

_STORE = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

_RELEASE = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCacheOps(ScriptOps):
    client: RedisClient

    async def cache_lookup(self, entry_key: str, lock_key: str, token: str, lock_ms: int) -> tuple[bytes | None, bool]:
        """(the entry or None, whether this caller now holds the lock). An empty token asks for no lock."""
        result = await self.call(self.run_script(_LOOKUP, [entry_key, lock_key], [token, lock_ms]))
        if result[0] == 1:
            return bytes(result[1]), False
        return None, result[0] == 2

    async def cache_poll(self, entry_key: str, lock_key: str) -> tuple[bytes | None, bool]:
        """(the entry or None, whether the lock is still held): one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(entry_key)
        pipe.exists(lock_key)
        value, locked = await self.call(pipe.execute())
        return (bytes(value) if value is not None else None), bool(locked)

    async def cache_purge(self, pattern: str) -> int:
        """Delete every entry matching a MATCH pattern (admin; SCAN, never KEYS)."""
        deleted = 0
        batch: list[Any] = []
        try:
            async with asyncio.timeout(max(self.timeout, 30.0)):
                async for key in self.client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        deleted += int(await self.client.unlink(*batch))
                        batch.clear()
                if batch:
                    deleted += int(await self.client.unlink(*batch))
        except REDIS_FAILURES as exc:
            raise unavailable(exc) from None
        return deleted

    def queue_cache_store(self, pipe: CommandBatch, once: Once | None, entry_key: str, lock_key: str, token: str,
                          value: bytes, ttl_ms: int) -> None:
        self.queue_script(pipe, _STORE, 2, entry_key, lock_key, token, value, ttl_ms)

    def queue_cache_release(self, pipe: CommandBatch, once: Once | None, lock_key: str, token: str) -> None:
        self.queue_script(pipe, _RELEASE, 1, lock_key, token)
