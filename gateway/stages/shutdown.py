"""The last step of a graceful shutdown, after the server has stopped accepting and in-flight requests
and streams have finished (or `server.shutdown_grace` ran out): settle writes still in flight are
awaited, and the accounting retry queue (writes that failed while the store was unreachable) is sent
to the store in a few batches, so a rolling restart loses no usage records that the store can take.
What still cannot be written before the deadline is counted in `gateway_accounting_records_lost` and
logged once."""

from __future__ import annotations

import asyncio
import contextlib
import time

from gateway.logs import get_logger
from gateway.runtime import Services

log = get_logger("shutdown")


async def drain(services: Services, *, deadline_s: float = 5.0) -> int:
    """Finish pending accounting writes; returns the number of calls whose writes were flushed."""
    until = time.monotonic() + deadline_s
    runtime = services.runtime
    if runtime is not None:
        try:
            async with asyncio.timeout(deadline_s):
                await runtime.pipeline.wait_writes()
        except TimeoutError:
            log.error("settle writes still running at shutdown")
    retry = services.retry
    store = services.store
    if retry is None or store is None:
        return 0
    await retry.stop()  # the timer's sends end here; the rest goes now, against the deadline
    queued = len(retry)
    if not queued:
        return 0
    while len(retry):
        sent = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(until - time.monotonic()):
                sent = await retry.send(store)
        if not sent:
            lost = retry.drop_all()
            log.error("accounting writes lost at shutdown: the store did not take them",
                      extra={"fields": {"calls": lost}})
            return queued - lost
    log.info("accounting retry queue flushed at shutdown", extra={"fields": {"calls": queued}})
    return queued
