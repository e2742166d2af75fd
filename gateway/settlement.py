"""The settle step of a call, decided in one place.

A call's settlement is every admitted stage's store writes (limits reconciled, spend and usage
record, cache entry, routing statistics) sent as one batch, then the call's metrics. `settle_timing`
is the one table that says when it runs; the endpoint runs it in one `try/finally` (see
gateway/endpoints/calls.py), the stream pump before its last bytes when the table says so.

| the call                                                            | JSON answer    | stream         |
|---------------------------------------------------------------------|----------------|----------------|
| failed before its answer                                            | before         | before         |
| holds what the client's next call checks (`ctx.settle_before_reply`)| before         | before         |
| runs on a store that may apply a later read first (not `ordered`)   | before         | after          |
| anything else                                                       | after          | after          |

- before: the settle finishes before the client has its answer (a stream's response completes only
  after it, though its last event was sent).
- after: just after the answer went out, in the request's own task; what a JSON answer itself needs
  from the settle (a cost header, the access log's cost) is done first by the stages' `annotate`.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.context import JSONReply, Reply, RequestContext
from gateway.errors import GatewayError
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.store import StoreClient, StoreOp

log = get_logger("settlement")


class Timing(enum.Enum):
    BEFORE = "before the answer"
    AFTER = "after the answer"


def settle_timing(ctx: RequestContext, *, stream: bool, failed: bool, ordered: bool) -> Timing:
    """When a call's settle runs: the table in the module docstring, row by row."""
    if failed or ctx.settle_before_reply:
        return Timing.BEFORE
    if not ordered and not stream:
        return Timing.BEFORE
    return Timing.AFTER


class SettlingStage(Protocol):
    """What the settle step needs of a pipeline stage (gateway.pipeline.Stage)."""

    name: str

    def settle(self, ctx: RequestContext, reply: Reply | None, error: GatewayError | None) -> Sequence[StoreOp]:
        ...

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None: ...

    def annotate(self, ctx: RequestContext, reply: JSONReply | None, error: GatewayError | None) -> None:
        ...


class Settler:
    """Writes settlements: one store batch per call, then its metrics (through `observe`)."""

    def __init__(self, store: StoreClient, metrics: Metrics, observe: ObserveCall) -> None:
        self.store = store
        self.metrics = metrics
        self.observe = observe
        self._writes: set[asyncio.Task[None]] = set()
        self._write_seconds = metrics.child(metrics.store_seconds, "settle")  # (every call observes it)

    def start(self, ctx: RequestContext) -> Settlement:
        return Settlement(self, ctx)

    def timing(self, ctx: RequestContext, *, stream: bool, failed: bool) -> Timing:
        return settle_timing(ctx, stream=stream, failed=failed, ordered=self.store.ordered)

    async def write(self, settlement: Settlement, *, shield: bool) -> None:
        """Every admitted stage's writes, sent to the store in one round trip, then the metrics."""
        ctx, reply, error = settlement.ctx, settlement.reply, settlement.error
        batches: list[tuple[SettlingStage, Sequence[StoreOp]]] = []  # the stages that write, with their ops
        ops: list[StoreOp] = []
        for stage in settlement.stages:
            try:
                stage_ops = stage.settle(ctx, reply, error)
            except Exception:  # settle must never fail a request that already has its answer
                log.exception("settle failed", extra={"fields": {"request_id": ctx.request_id, "stage": stage.name}})
                continue
            if stage_ops:
                batches.append((stage, stage_ops))
                ops.extend(stage_ops)
        if not ops:
            self.observe(ctx)
        elif not shield or self.store.in_process:
            # (An in-process store writes without suspending: a cancellation cannot cut it short.)
            await self._write(ctx, batches, ops)
            self.observe(ctx)
        else:
            # A call settles while its client may be leaving: the disconnect cancels this task, and
            # must not cancel the writes (they would be lost). They finish in their own task.
            task = asyncio.ensure_future(self._write(ctx, batches, ops))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
            try:
                await asyncio.shield(task)
            finally:
                self.observe(ctx)

    async def _write(self, ctx: RequestContext, batches: list[tuple[SettlingStage, Sequence[StoreOp]]],
                     ops: list[StoreOp]) -> None:
        began = time.perf_counter()  # --- observability ---
        try:
            results = await self.store.run_batch(ops)
            self._write_seconds.observe(time.perf_counter() - began)
        except Exception as exc:
            self.metrics.child(self.metrics.store_errors, "settle").inc()
            for stage, stage_ops in batches:
                if stage_ops:
                    stage.settle_failed(ctx, stage_ops, exc)
            return
        for result in results:  # (a loop, not any() over a generator: this runs on every settle)
            if isinstance(result, Exception):
                self._refused(ctx, batches, results)
                break

    def _refused(self, ctx: RequestContext, batches: list[tuple[SettlingStage, Sequence[StoreOp]]],
                 results: Sequence[object]) -> None:
        """Some ops of an applied batch were refused: each stage hears of its own refused ops only."""
        self.metrics.child(self.metrics.store_errors, "settle").inc()
        at = 0
        for stage, stage_ops in batches:
            mine = results[at:at + len(stage_ops)]
            at += len(stage_ops)
            refused = [op for op, result in zip(stage_ops, mine, strict=True) if isinstance(result, Exception)]
            if refused:
                error = next(r for r in mine if isinstance(r, Exception))
                stage.settle_failed(ctx, refused, error)

    async def wait_writes(self) -> None:
        """Wait for settle writes still in flight (streams that ended as the server stopped)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


class ObserveCall(Protocol):
    def __call__(self, ctx: RequestContext) -> None: ...


@dataclass(slots=True, eq=False)
class Settlement:
    """One call's settle: the stages it went through, and once its answer (or failure) is known,
    what the stages settle from and when it runs."""

    settler: Settler
    ctx: RequestContext
    stages: list[SettlingStage] = field(default_factory=list)
    reply: Reply | None = None
    error: GatewayError | None = None
    timing: Timing | None = None
    done: bool = False

    def decide(self, reply: Reply | None, error: GatewayError | None, *, stream: bool) -> Timing:
        """The answer (or failure) is known. When the answer leaves first, what it needs from the
        settle is done now."""
        if self.timing is not None:
            return self.timing
        self.reply, self.error = reply, error
        timing = self.timing = self.settler.timing(self.ctx, stream=stream, failed=error is not None and not stream)
        if timing is Timing.AFTER and not stream:
            self.ctx.finished_at = time.perf_counter()  # the metrics' and usage record's end of the call
            self._annotate(reply)
        return timing

    async def run(self, *, shield: bool = False) -> None:
        """Write the settlement now (once)."""
        if self.done:
            return
        self.done = True
        await self.settler.write(self, shield=shield)

    async def after_answer(self) -> None:
        """The endpoint's `finally`: the settle that follows the answer, and that of a call cut short
        before its answer was known."""
        if self.timing is None:
            self.decide(self.reply, self.error, stream=False)
        if not self.done:  # (run's own check: one coroutine less on every call)
            self.done = True
            await self.settler.write(self, shield=True)

    def _annotate(self, reply: Reply | None) -> None:
        answer = reply if isinstance(reply, JSONReply) else None
        for stage in self.stages:
            try:
                stage.annotate(self.ctx, answer, self.error)
            except Exception:  # like settle: never fail a request that already has its answer
                log.exception("annotate failed", extra={"fields": {"request_id": self.ctx.request_id,
                                                                  "stage": stage.name}})
