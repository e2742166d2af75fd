"""Accounting's operations for the embedded store, mixed into MemoryStore: the same semantics as
`store_redis.py` in process (no expiry: counters are per period), one contract suite for both."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

# Usage-log records the embedded (in-process) store keeps: about 10 MB of the gateway's memory.
MEMORY_USAGE_LOG_CAP = 10_000


class MemoryAccountingOps:

    _acct_state: tuple[dict[str, int], dict[str, dict[str, int]], deque[tuple[int, dict[str, str]]]]

    def _acct(self) -> tuple[dict[str, int], dict[str, dict[str, int]], deque[tuple[int, dict[str, str]]]]:
        state = self.__dict__.get("_acct_state")
        if state is None:
            state = self.__dict__["_acct_state"] = ({}, {}, deque())
        return state

    def apply_spend_add(self, day: str, ttl: int, dims: Sequence[str], metrics: Sequence[tuple[str, int]]) -> int:
        spend = self._acct()[1].setdefault(day, {})
        names = self.__dict__.setdefault("_spend_names", {})  # (dims, metric) → the hash fields
        dims = dims if isinstance(dims, tuple) else tuple(dims)
        for metric, value in metrics:
            fields = names.get((dims, metric))
            if fields is None:
                if len(names) > 10_000:  # dims come from the config and the callers: stay bounded
                    names.clear()
                fields = names[(dims, metric)] = tuple(f"{dim}|{metric}" for dim in dims)
            for name in fields:
                spend[name] = spend.get(name, 0) + value
        return 0

    def apply_budget_adjust(self, tag: str, counters: Sequence[str], delta: int, ttl: int) -> int:
        budgets = self._acct()[0]
        for counter in counters:
            key = f"{tag}\x00{counter}"
            budgets[key] = budgets.get(key, 0) + delta
        return 0

    def apply_usage_append(self, fields: dict[str, str], maxlen: int) -> str:
        log = self._acct()[2]
        ts = fields.get("ts", "")
        now = int(ts) if ts.isdigit() else int(time.time() * 1000)
        log.append((now, fields))
        # The embedded store lives in the gateway's own memory: it keeps the most recent records
        # only (a Redis Stream holds the configured bound, outside the gateway process).
        bound = min(maxlen, MEMORY_USAGE_LOG_CAP)
        while len(log) > bound:
            log.popleft()
        return f"{now}-0"

    def apply_budget_release(self, tag: str, counters: Sequence[str], call: str) -> int:
        """Nothing to release: an in-process reservation always answers, so its outcome is never
        unknown and settle never asks for this."""
        return 0

    async def budget_reserve(self, tag: str, counters: Sequence[str], limits: Sequence[int], amount: int,
                             ttl: int, call: str = "") -> int:
        budgets = self._acct()[0]
        keys = [f"{tag}\x00{c}" for c in counters]
        for i, (key, limit) in enumerate(zip(keys, limits, strict=True), start=1):
            current = budgets.get(key, 0)
            if current >= limit or current + amount > limit:
                return i
        for key in keys:
            budgets[key] = budgets.get(key, 0) + amount
        return 0

    async def budget_read(self, tag: str, counters: Sequence[str]) -> list[int]:
        budgets = self._acct()[0]
        return [budgets.get(f"{tag}\x00{c}", 0) for c in counters]

    async def spend_read(self, days: Sequence[str]) -> dict[str, dict[str, int]]:
        spend = self._acct()[1]
        return {day: dict(spend.get(day, {})) for day in days}

    async def usage_read(self, start_ms: int, end_ms: int, count: int) -> list[dict[str, str]]:
        out = []
        for ts, fields in self._acct()[2]:
            if start_ms <= ts <= end_ms:
                out.append(dict(fields))
                if len(out) >= count:
                    break
        return out
