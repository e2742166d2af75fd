"""What accounting needs of a store, and its settle writes.

Both stores declare `AccountingStore` (gateway.store.protocol.Store); the operations are in
`store_memory.py` (the embedded store) and `store_redis.py` (one script call each, the usage log a
Redis Stream). Every write is durable: a store configured to wait for replicas waits for the batches
that carry one, and Redis applies each at most once when it carries its call's id (`BatchWrite.once`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.accounting.store_memory import MemoryAccountingOps
from gateway.accounting.store_redis import RedisAccountingOps
from gateway.store import BatchWrite


class AccountingStore(Protocol):
    async def budget_reserve(self, tag: str, counters: Sequence[str], limits: Sequence[int], amount: int,
                             ttl: int, call: str = "") -> int:
        """0 when `amount` fits under every limit (and was added to every counter), else the 1-based
        index of the first counter that has no room. With `call`, the reservation is noted for
        BUDGET_RELEASE."""
        ...

    async def budget_read(self, tag: str, counters: Sequence[str]) -> list[int]: ...

    async def spend_read(self, days: Sequence[str]) -> dict[str, dict[str, int]]: ...

    async def usage_read(self, start_ms: int, end_ms: int, count: int) -> list[dict[str, str]]: ...


# (day, ttl, dimensions, (metric, integer) pairs): each metric added to `<dim>|<metric>` of the day's
# spend, for every dimension.
SPEND_ADD = BatchWrite("spend_add", memory=MemoryAccountingOps.apply_spend_add,
                       redis=RedisAccountingOps.queue_spend_add, durable=True)
# (tag, counters, delta, ttl): budget counters reconciled after the call.
BUDGET_ADJUST = BatchWrite("budget_adjust", memory=MemoryAccountingOps.apply_budget_adjust,
                           redis=RedisAccountingOps.queue_budget_adjust, durable=True)
# (tag, counters, call): a reservation whose outcome the gateway never learnt taken back, only if it
# was applied, and so that it cannot apply afterwards.
BUDGET_RELEASE = BatchWrite("budget_release", memory=MemoryAccountingOps.apply_budget_release,
                            redis=RedisAccountingOps.queue_budget_release, durable=True)
# (record fields, bound): one record on the usage log.
USAGE_APPEND = BatchWrite("usage_append", memory=MemoryAccountingOps.apply_usage_append,
                          redis=RedisAccountingOps.queue_usage_append, durable=True)
