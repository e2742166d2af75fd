"""The embedded in-process store: the same contract as Redis, for a single process.

A batch op runs the function its write names for this store (`BatchWrite.memory`); each runs without
awaiting, so it is atomic with respect to every other coroutine on the loop, as a Lua script is on
Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.accounting.store_memory import MemoryAccountingOps
from gateway.cache.store_memory import MemoryCacheOps
from gateway.conversations.store_memory import MemoryConversationOps
from gateway.ratelimit.store_memory import MemoryLimitOps
from gateway.routing.store_memory import MemoryRoutingOps, MemorySessionOps
from gateway.store import StoreOp
from gateway.store.protocol import Store


# The operations live in one mixin per feature, in the feature's package (its store_memory.py).
class MemoryStore(MemoryCacheOps, MemoryLimitOps, MemoryRoutingOps, MemoryAccountingOps, MemorySessionOps,
                  MemoryConversationOps, Store):
    in_process = True
    ordered = True

    async def ping(self) -> bool:
        return True

    async def run_batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        results: list[Any] = []
        for op in ops:
            try:
                results.append(op.write.memory(self, *op.args))
            except Exception as exc:  # as on Redis, a refused op fails alone (see StoreClient.run_batch)
                results.append(exc)
        return results

    async def close(self) -> None:
        return None
