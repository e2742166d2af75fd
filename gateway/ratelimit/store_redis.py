"""The limiter's and the key registry's Redis operations, mixed into `RedisStore` (their in-process
twins are in `store_memory.py`; same names, same semantics, one round trip each).

Direct calls: `rl_reserve` (admit), `keys_version`, `keys_load`, `key_load`, `key_save` (admin API and
the key refresher). Batch op: `queue_rl_settle`, the Redis side of `LIMITS_SETTLE` (store.py), queued with
every other stage's settle writes.

All limiter keys share the `{rl}` hash tag: the script touches every scope of a request at once,
and Redis Cluster runs a multi-key script only when all its keys live in one slot."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.ratelimit.core import WINDOW_MS, Decision, ScopeLimits, day_left_ms, day_of, decode
from gateway.ratelimit.lua import SCRIPT
from gateway.store import Once
from gateway.store.resp import RequestConnection
from gateway.store.scripts import REDIS_FAILURES, CommandBatch, ScriptOps, unavailable

LIMIT_TAG = "rl"
KEYS_TAG = "keys"
# A runtime key's name is released only by the key that holds it.
_RELEASE_NAME = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


class RedisLimitOps(ScriptOps):
    """Mixed into RedisStore, which provides `client`, `timeout` and `key()`."""

    client: Any
    request_connection: RequestConnection | None
    timeout: float
    _follow_master: Callable[[], Awaitable[None]]

    _rl_key_cache: dict[tuple[tuple[ScopeLimits, ...], int], list[str]] | None = None

    def _rl_keys(self, scopes: tuple[ScopeLimits, ...], day: int) -> list[str]:
        cache = self._rl_key_cache
        if cache is None:
            cache = self._rl_key_cache = {}
        keys = cache.get((scopes, day))
        if keys is not None:
            return keys
        keys = []
        for scope in scopes:
            keys += [self.key(scope.id, "log", tag=LIMIT_TAG), self.key(scope.id, "tok", tag=LIMIT_TAG),
                     self.key(scope.id, "lease", tag=LIMIT_TAG), self.key(scope.id, "day", str(day), tag=LIMIT_TAG)]
        if len(cache) > 10_000:
            cache.clear()
        cache[(scopes, day)] = keys
        return keys

    @staticmethod
    def _rl_args(mode: str, scopes: tuple[ScopeLimits, ...], rid: str, now_ms: int, tokens: int, lease_ms: int,
                 actual: int, release: bool) -> list[Any]:
        args: list[Any] = [mode, now_ms, rid, tokens, WINDOW_MS, lease_ms, day_left_ms(now_ms), len(scopes),
                           actual, 1 if release else 0]
        for scope in scopes:
            args.extend(scope.values)
        return args

    async def rl_reserve(self, scopes: tuple[ScopeLimits, ...], rid: str, now_ms: int, tokens: int,
                         lease_ms: int) -> Decision:
        keys = self._rl_keys(scopes, day_of(now_ms))
        args = self._rl_args("reserve", scopes, rid, now_ms, tokens, lease_ms, 0, False)
        try:
            async with asyncio.timeout(self.timeout):
                raw = await self.run_script(SCRIPT, keys, args)
        except REDIS_FAILURES as exc:
            await self._follow_master()
            raise unavailable(exc) from None
        return decode(raw)

    def queue_rl_settle(self, pipe: CommandBatch, once: Once | None, scopes: tuple[ScopeLimits, ...], rid: str,
                        at_ms: int, reserved: int, actual: int, release: bool) -> None:
        keys = self._rl_keys(scopes, day_of(at_ms))
        args = self._rl_args("settle", scopes, rid, at_ms, reserved, 0, actual, release)
        self.queue_script(pipe, SCRIPT, len(keys), *keys, *args)

    # --- gateway keys (admin API) ---

    async def _keys_call(self, build: Any) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        build(pipe)
        result: list[Any] = await self.call(pipe.execute())
        return result

    async def keys_version(self) -> int:
        (version,) = await self._keys_call(lambda p: p.get(self.key("version", tag=KEYS_TAG)))
        return int(version or 0)

    async def keys_load(self) -> tuple[int, dict[str, bytes]]:
        version, records = await self._keys_call(lambda p: (
            p.get(self.key("version", tag=KEYS_TAG)), p.hgetall(self.key("records", tag=KEYS_TAG))))
        return int(version or 0), {k.decode(): v for k, v in records.items()}

    async def key_load(self, key_id: str) -> bytes | None:
        (record,) = await self._keys_call(lambda p: p.hget(self.key("records", tag=KEYS_TAG), key_id))
        return record  # type: ignore[no-any-return]

    async def key_name_claim(self, name: str, key_id: str) -> str:
        names = self.key("names", tag=KEYS_TAG)
        _, owner = await self._keys_call(lambda p: (p.hsetnx(names, name, key_id), p.hget(names, name)))
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def key_name_release(self, name: str, key_id: str) -> None:
        names = self.key("names", tag=KEYS_TAG)
        await self.call(self.run_script(_RELEASE_NAME, [names], [name, key_id]))

    async def key_save(self, key_id: str, record: bytes) -> int:
        _, version = await self._keys_call(lambda p: (
            p.hset(self.key("records", tag=KEYS_TAG), key_id, record), p.incr(self.key("version", tag=KEYS_TAG))))
        return int(version)
