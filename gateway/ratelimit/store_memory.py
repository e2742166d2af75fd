"""The limiter's and the key registry's operations for `MemoryStore` (the twins of
`store_redis.py`)."""

from __future__ import annotations

from gateway.ratelimit.core import Decision, MemoryLimiter, ScopeLimits


class MemoryLimitOps:
    """Mixed into MemoryStore."""

    _limiter: MemoryLimiter | None = None
    _key_records: dict[str, bytes] | None = None
    _keys_version: int = 0
    _key_names: dict[str, str] | None = None  # runtime key name → the id of the key that holds it

    @property
    def limiter(self) -> MemoryLimiter:
        if self._limiter is None:
            self._limiter = MemoryLimiter()
        return self._limiter

    async def rl_reserve(self, scopes: tuple[ScopeLimits, ...], rid: str, now_ms: int, tokens: int,
                         lease_ms: int) -> Decision:
        return self.limiter.reserve(scopes, rid, now_ms, tokens, lease_ms)

    def apply_rl_settle(self, scopes: tuple[ScopeLimits, ...], rid: str, at_ms: int, reserved: int, actual: int,
                     release: bool) -> int:
        self.limiter.settle(scopes, rid, at_ms, reserved, actual, release)
        return 1

    def _records(self) -> dict[str, bytes]:
        if self._key_records is None:
            self._key_records = {}
        return self._key_records

    async def keys_version(self) -> int:
        return self._keys_version

    async def keys_load(self) -> tuple[int, dict[str, bytes]]:
        return self._keys_version, dict(self._records())

    async def key_load(self, key_id: str) -> bytes | None:
        return self._records().get(key_id)

    def _names(self) -> dict[str, str]:
        if self._key_names is None:
            self._key_names = {}
        return self._key_names

    async def key_name_claim(self, name: str, key_id: str) -> str:
        return self._names().setdefault(name, key_id)

    async def key_name_release(self, name: str, key_id: str) -> None:
        names = self._names()
        if names.get(name) == key_id:
            del names[name]

    async def key_save(self, key_id: str, record: bytes) -> int:
        self._records()[key_id] = record
        self._keys_version += 1
        return self._keys_version
