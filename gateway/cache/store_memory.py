"""The response cache's operations for the embedded store (mixed into MemoryStore).

Entries live in an insertion-ordered dict kept in least-recently-used order (a hit moves its entry to
the end) and bounded to `cache_max_bytes` (keys and values plus a per-entry overhead; the least
recently used go first). They expire by `cache_clock` (monotonic seconds; tests may replace it)."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable

# What an entry costs beyond its key and value: the dict slot, the tuple, the objects' headers.
ENTRY_OVERHEAD = 200


def entry_size(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


class MemoryCacheOps:
    cache_max_bytes = 128 * 1024 * 1024
    cache_clock: Callable[[], float] = staticmethod(time.monotonic)
    _cache_bytes = 0

    def _cache_tables(self) -> tuple[dict[str, tuple[bytes, float]], dict[str, tuple[str, float]]]:
        """Created on first use, so the mixin needs no constructor of its own."""
        state = self.__dict__
        return state.setdefault("_cache_entries", {}), state.setdefault("_cache_locks", {})

    def _cache_drop(self, entries: dict[str, tuple[bytes, float]], key: str) -> None:
        value, _ = entries.pop(key)
        self._cache_bytes -= entry_size(key, value)

    def _cache_get(self, key: str, now: float) -> bytes | None:
        entries, _ = self._cache_tables()
        found = entries.pop(key, None)
        if found is None:
            return None
        if found[1] <= now:
            self._cache_bytes -= entry_size(key, found[0])
            return None
        entries[key] = found  # to the end: the most recently used
        return found[0]

    def _cache_locked(self, key: str, now: float) -> bool:
        _, locks = self._cache_tables()
        held = locks.get(key)
        if held is not None and held[1] <= now:
            del locks[key]
            return False
        return held is not None

    async def cache_lookup(self, entry_key: str, lock_key: str, token: str, lock_ms: int) -> tuple[bytes | None, bool]:
        """(the entry or None, whether this caller now holds the lock). An empty token asks for no lock."""
        now = self.cache_clock()
        value = self._cache_get(entry_key, now)
        if value is not None or not token:
            return value, False
        if self._cache_locked(lock_key, now):
            return None, False
        self._cache_tables()[1][lock_key] = (token, now + lock_ms / 1000)
        return None, True

    async def cache_poll(self, entry_key: str, lock_key: str) -> tuple[bytes | None, bool]:
        """(the entry or None, whether the lock is still held)."""
        now = self.cache_clock()
        return self._cache_get(entry_key, now), self._cache_locked(lock_key, now)

    async def cache_purge(self, pattern: str) -> int:
        entries, _ = self._cache_tables()
        doomed = [key for key in entries if fnmatch.fnmatchcase(key, _fnmatch_pattern(pattern))]
        for key in doomed:
            self._cache_drop(entries, key)
        return len(doomed)

    def apply_cache_store(self, entry_key: str, lock_key: str, token: str, value: bytes, ttl_ms: int) -> None:
        entries, _ = self._cache_tables()
        if entry_key in entries:
            self._cache_drop(entries, entry_key)
        size = entry_size(entry_key, value)
        if size <= self.cache_max_bytes:  # one entry larger than the whole bound is not kept
            entries[entry_key] = (value, self.cache_clock() + ttl_ms / 1000)
            self._cache_bytes += size
            while self._cache_bytes > self.cache_max_bytes:
                self._cache_drop(entries, next(iter(entries)))
        self.apply_cache_release(lock_key, token)

    def apply_cache_release(self, lock_key: str, token: str) -> None:
        _, locks = self._cache_tables()
        held = locks.get(lock_key)
        if token and held is not None and held[0] == token:
            del locks[lock_key]


def _fnmatch_pattern(pattern: str) -> str:
    """Redis MATCH escapes (`\\*`) → fnmatch's (`[*]`)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append("[" + pattern[i + 1] + "]")
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
