"""The accounting retry queue: settle writes the store did not take (down, slow, or refusing them for
a while), one entry per call, bounded, outliving config reloads.

A timer sends the queue on its own, every `interval` seconds while it holds writes, so the queue
empties as soon as the store answers again, whether or not requests arrive (an idle replica keeps
nothing it could have written; a crash then loses less). Every accounting write carries its call's
id and the store applies it at most once (see gateway/store/scripts.py `guarded`), so a write is safe to send
again whatever happened to the previous attempt. When the queue is full the oldest call's writes are
dropped, logged with the full record (nothing is lost silently) and counted in
`gateway_accounting_records_lost_total`; so are writes the store refuses for good (an argument out
of range), which sending again cannot fix."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence

from gateway.accounting.store import USAGE_APPEND
from gateway.errors import StoreUnavailableError
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.store import StoreClient, StoreOp, refused_for_good

log = get_logger("accounting")

# Calls whose writes go to the store in one batch when the queue is sent.
RETRY_PER_BATCH = 256

Group = tuple[StoreOp, ...]


class RetryQueue:
    def __init__(self, bound: int, metrics: Metrics, store: StoreClient | None = None, interval: float = 1.0) -> None:
        self.bound = bound
        self.metrics = metrics
        # Without a store the queue only holds writes (and `send` needs one passed).
        self.store = store
        self.interval = interval
        self._groups: deque[Group] = deque()
        self._last_warning = 0.0
        self._drainer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._groups)

    def push(self, groups: Sequence[Group], error: Exception) -> None:
        """Keep these calls' writes for a retry, or drop them (logged, counted) when the store's
        refusal would repeat."""
        if refused_for_good(error):
            for group in groups:
                self._lost(group, "usage record lost: the store refused the write", error)
            return
        self._groups.extend(groups)
        while len(self._groups) > self.bound:
            self._lost(self._groups.popleft(), "usage record lost: the store failed and the retry queue is full",
                       error)
        self.metrics.accounting_retry_queue.set(len(self._groups))
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            self._last_warning = now
            log.warning("accounting writes failed; kept for retry",
                        extra={"fields": {"queued_calls": len(self._groups), "error": type(error).__name__}})
        self._start()

    def take(self, n: int) -> list[Group]:
        out: list[Group] = []
        while self._groups and len(out) < n:
            out.append(self._groups.popleft())
        if out:
            self.metrics.accounting_retry_queue.set(len(self._groups))
        return out

    async def send(self, store: StoreClient) -> bool:
        """One batch of the oldest queued calls to the store. True when it took them (writes it refused
        for good are dropped, see `push`); False when it did not answer (the batch is back at the head
        of the queue) or refused some writes for now (those are queued again): try later."""
        groups = self.take(RETRY_PER_BATCH)
        if not groups:
            return True
        ops = [op for group in groups for op in group]
        try:
            results = await store.run_batch(ops)
        except asyncio.CancelledError:  # stopped mid-send: kept, and safe to send again (applied once)
            self._groups.extendleft(reversed(groups))
            raise
        except StoreUnavailableError as exc:
            self._groups.extendleft(reversed(groups))
            self.metrics.accounting_retry_queue.set(len(self._groups))
            self.metrics.child(self.metrics.store_errors, "settle").inc()
            log.debug("accounting retry: the store did not answer", extra={"fields": {"error": type(exc).__name__}})
            return False
        refused: dict[str, list[StoreOp]] = {}
        errors: dict[str, Exception] = {}
        for op, result in zip(ops, results, strict=True):
            if isinstance(result, Exception):
                call = op.once[0] if op.once is not None else ""
                refused.setdefault(call, []).append(op)
                errors.setdefault(call, result)
        for call, failed in refused.items():
            self.push([tuple(failed)], errors[call])
        return all(refused_for_good(error) for error in errors.values())

    async def _drain(self) -> None:
        store = self.store
        assert store is not None
        while self._groups:
            await asyncio.sleep(self.interval)
            while self._groups and await self.send(store):
                pass

    def _start(self) -> None:
        if self.store is None or (self._drainer is not None and not self._drainer.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pushed outside the event loop (a test's direct use): nothing to schedule
            return
        self._drainer = loop.create_task(self._drain(), name="accounting-retry")

    async def stop(self) -> None:
        """Stop the timer (at shutdown, before the last flush takes over)."""
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer

    def drop_all(self) -> int:
        """Forget every queued call (counted as lost: the store never took them); how many."""
        lost = len(self.take(len(self._groups)))
        self.metrics.accounting_lost.inc(lost)
        return lost

    def _lost(self, group: Group, message: str, error: Exception) -> None:
        self.metrics.accounting_lost.inc()
        record = next((op.args[0] for op in group if op.write is USAGE_APPEND), None)
        log.error(message, extra={"fields": {"record": record, "error": type(error).__name__}})
