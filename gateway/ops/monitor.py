"""Periodic checks that feed gauges a request cannot: whether the store answers (and how fast), and
how much of each budget is used. One task per process, every `metrics.check_interval`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.accounting import queries
from gateway.background import Background
from gateway.config import GatewayConfig
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.store.protocol import Store

log = get_logger("monitor")


class Monitor:
    def __init__(self, store: Store, metrics: Metrics, config: Callable[[], GatewayConfig]) -> None:
        self.store = store
        self.metrics = metrics
        self.config = config
        self._task = Background("ops-monitor")
        self._budget_labels: set[tuple[str, str, str]] = set()

    async def check(self) -> None:
        m = self.metrics
        started = time.perf_counter()
        try:
            up = await self.store.ping()
        except Exception:
            up = False
        m.child(m.store_seconds, "ping").observe(time.perf_counter() - started)
        m.store_up.set(1 if up else 0)
        if up:
            await self.budgets()

    async def budgets(self) -> None:
        m = self.metrics
        config = self.config()
        try:
            rows = await queries.budgets(self.store, config.auth)
        except Exception as exc:
            m.child(m.store_errors, "budget_read").inc()
            log.warning("budget gauges not refreshed", extra={"fields": {"error": type(exc).__name__}})
            return
        seen: set[tuple[str, str, str]] = set()
        for row in rows:
            if row["scope"] == "key" and not m.key_labels:
                continue
            labels = (row["scope"], row["name"], row["period"])
            limit = float(row["limit_usd"])
            m.child(m.budget_limit_usd, *labels).set(limit)
            m.child(m.budget_used_ratio, *labels).set(float(row["used_usd"]) / limit if limit else 0.0)
            seen.add(labels)
        for labels in self._budget_labels - seen:  # budgets removed by a reload
            for gauge in (m.budget_limit_usd, m.budget_used_ratio):
                m.forget(gauge, *labels)
        self._budget_labels = seen

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic check failed")
            await asyncio.sleep(self.config().metrics.check_interval)
