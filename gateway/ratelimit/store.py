"""What the rate limiter and the key registry need of a store, and the limiter's settle write.

Both stores declare `LimitStore` and `KeyStore` (gateway.store.protocol.Store); their operations are
in `store_memory.py` (the embedded store) and `store_redis.py` (Redis: one Lua script, `lua.py`)."""

from __future__ import annotations

from typing import Protocol

from gateway.ratelimit.core import Decision, ScopeLimits
from gateway.ratelimit.store_memory import MemoryLimitOps
from gateway.ratelimit.store_redis import RedisLimitOps
from gateway.store import BatchWrite


class LimitStore(Protocol):
    async def rl_reserve(self, scopes: tuple[ScopeLimits, ...], rid: str, now_ms: int, tokens: int,
                         lease_ms: int) -> Decision:
        """Reserve one request (and `tokens`) in every scope at once, or refuse (nothing consumed)."""
        ...


class KeyStore(Protocol):
    async def keys_version(self) -> int: ...
    async def keys_load(self) -> tuple[int, dict[str, bytes]]: ...
    async def key_load(self, key_id: str) -> bytes | None: ...
    async def key_save(self, key_id: str, record: bytes) -> int: ...

    async def key_name_claim(self, name: str, key_id: str) -> str:
        """Claim `name` for `key_id` unless another key holds it; the id of the key holding it now."""
        ...

    async def key_name_release(self, name: str, key_id: str) -> None:
        """Give up `name`, if `key_id` holds it."""
        ...


# (scopes, reservation id, reserved at (ms), tokens reserved, tokens used, release the lease): the
# reservation replaced by what the call used.
LIMITS_SETTLE = BatchWrite("limits_settle", memory=MemoryLimitOps.apply_rl_settle,
                           redis=RedisLimitOps.queue_rl_settle)
