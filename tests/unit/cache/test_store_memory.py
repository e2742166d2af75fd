"""The embedded cache's byte bound: whatever the sequence of stores, hits, expiries and purges, the
bytes it accounts equal what it holds and stay within the bound, and eviction is least recently used."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cache.store_memory import ENTRY_OVERHEAD, entry_size
from gateway.store.memory import MemoryStore

OPS = st.lists(st.tuples(st.sampled_from(["store", "get", "purge", "tick"]), st.integers(0, 7),
                         st.integers(0, 3000)), max_size=60)


def held(store: MemoryStore) -> dict[str, tuple[bytes, float]]:
    return store._cache_tables()[0]


@settings(max_examples=50)
@given(OPS, st.integers(ENTRY_OVERHEAD, 12_000))
def test_the_accounted_bytes_match_the_entries_and_the_bound(ops: list[tuple[str, int, int]], bound: int) -> None:
    store = MemoryStore()
    store.cache_max_bytes = bound
    now = [0.0]
    store.cache_clock = lambda: now[0]

    async def run() -> None:
        for op, key, size in ops:
            if op == "store":
                store.apply_cache_store(f"k{key}", f"l{key}", "", b"x" * size, 5000)
            elif op == "get":
                await store.cache_lookup(f"k{key}", f"l{key}", "", 1000)
            elif op == "purge":
                await store.cache_purge(f"k{key}*")
            else:
                now[0] += 2.0
            entries = held(store)
            assert store._cache_bytes == sum(entry_size(k, v) for k, (v, _) in entries.items())
            assert store._cache_bytes <= bound

    asyncio.run(run())


def test_a_hit_protects_an_entry_from_eviction() -> None:
    store = MemoryStore()
    store.cache_max_bytes = 3 * entry_size("k0", b"x" * 100)

    async def run() -> None:
        for key in ("k0", "k1", "k2"):
            store.apply_cache_store(key, "", "", b"x" * 100, 60_000)
        assert (await store.cache_lookup("k0", "", "", 0))[0] is not None
        store.apply_cache_store("k3", "", "", b"x" * 100, 60_000)
        assert list(held(store)) == ["k2", "k0", "k3"]

    asyncio.run(run())


def test_an_entry_larger_than_the_bound_is_not_kept() -> None:
    store = MemoryStore()
    store.cache_max_bytes = 1000
    store.apply_cache_store("small", "", "", b"x" * 10, 60_000)
    store.apply_cache_store("huge", "", "", b"x" * 5000, 60_000)
    assert list(held(store)) == ["small"]
