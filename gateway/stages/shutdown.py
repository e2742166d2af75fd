"""The last step of a graceful shutdown, after the server has stopped accepting and in-flight requests
and streams have finished (or `server.shutdown_grace` ran out): settle writes still in flight are
awaited, and the accounting retry queue (writes that failed while the store was unreachable) is sent
to the store in a few batches, so a rolling restart loses no usage records that the store can take.
What still cannot be written before the deadline is counted in `gateway_accounting_records_lost` and
logged once."""

from __future__ import annotations

import asyncio
import time

from gateway.logging import get_logger
from gateway.runtime import Services
from gateway.stages.accounting import RetryQueue
from gateway.store import StoreOp

log = get_logger("shutdown")

FLUSH_GROUPS_PER_BATCH = 256


async def drain(services: Services, *, deadline_s: float = 5.0) -> int:
    """Finish pending accounting writes; returns the number of calls whose writes were flushed."""
    until = time.monotonic() + deadline_s
    await services.idle.drain()  # settles left for idle moments: there are none left now
    runtime = services.runtime
    if runtime is not None:
        try:
            async with asyncio.timeout(deadline_s):
                await runtime.pipeline.wait_writes()
        except TimeoutError:
            log.error("settle writes still running at shutdown")
    retry = services.extra.get("accounting.retry")
    store = services.store
    if not isinstance(retry, RetryQueue) or store is None or not len(retry):
        return 0
    flushed = 0
    while len(retry):
        groups = retry.take(FLUSH_GROUPS_PER_BATCH)
        ops: list[StoreOp] = [op for group in groups for op in group]
        left = until - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            async with asyncio.timeout(left):
                await store.run_batch(ops)
        except Exception as exc:  # the store is still down: these and the rest are lost
            lost = len(groups) + len(retry)
            retry.take(len(retry))
            services.metrics.accounting_lost.inc(lost)
            log.error("accounting writes lost at shutdown: the store did not take them",
                      extra={"fields": {"calls": lost, "error": type(exc).__name__}})
            return flushed
        flushed += len(groups)
    log.info("accounting retry queue flushed at shutdown", extra={"fields": {"calls": flushed}})
    return flushed
