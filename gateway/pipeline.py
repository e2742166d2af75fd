"""The request pipeline, in one direction:

    authenticate → admit (limits, budgets, cache: the stages) → router → settle

Per-request work runs once; the router owns per-attempt work. Settle runs in `finally` for every
request that was admitted, streams included (when the stream ends, fails or the client leaves), so
reservations are always reconciled and every call is accounted.

Stages are the slots later features plug into: a stage may admit (raise to reject, or return a
ready reply, as a cache hit does) and settles afterwards. A non-streamed answer reaches settle as
the JSONReply; a stage that needs a stream's output sets `ctx.capture = []` in admit and finds every
piece sent to the client there at settle (no cost for requests that did not ask). Settle writes from
all stages go to the store together so the whole settle step is one round trip.

When the settle runs: before the answer when the call holds something the client's next call checks
(ctx.settle_before_reply); else just after it; on the embedded store, when no later call reads it
(not ctx.settle_promptly), at the gateway's next wait on a provider (tasks.IdleWork), with what it
gives the answer done first by the stages' `annotate`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.auth import Authenticator
from gateway.context import RequestContext, Usage
from gateway.dialects import StreamEncoder, dialect
from gateway.errors import GatewayError, InternalError
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.routing.router import OpenStream, Router
from gateway.schemas import Operation
from gateway.store import Store, StoreOp
from gateway.tasks import IdleWork

log = get_logger("pipeline")


@dataclass(slots=True)
class JSONReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # The settle writes, left for after the response is on the wire (the route awaits this once it
    # has sent the reply): the client does not wait for the store round trip, or the metrics.
    after: Callable[[], Awaitable[None]] | None = None


@dataclass(slots=True)
class StreamReply:
    headers: dict[str, str]
    first: bytes
    rest: AsyncIterator[bytes]
    # The whole stream is already in `first` (the provider's end marker arrived with it, or a cache
    # replay): `rest` only settles, with no wait on the provider.
    complete: bool = False
    # The call holds something the client's next call checks (ctx.settle_before_reply): the response
    # completes only once the stream has settled, instead of with its `data: [DONE]`.
    settle_first: bool = False


Reply = JSONReply | StreamReply

# Rewrites the stream bytes that carry the client's usage chunk (accounting adds the call's cost).
StreamUsageHook = Callable[[RequestContext, Usage | None, bytes], bytes]


class Stage(Protocol):
    """A pipeline slot (rate limits, budgets, cache, accounting)."""

    name: str

    async def admit(self, ctx: RequestContext) -> Reply | None:
        """Before routing: raise a GatewayError to reject, return a Reply to answer without an
        upstream call, or None to go on. At most one store round trip."""
        ...

    def settle(self, ctx: RequestContext, reply: Reply | None, error: GatewayError | None) -> Sequence[StoreOp]:
        """After the answer or failure (ctx.usage is final): the store writes this stage needs. No I/O:
        the pipeline sends every stage's writes in one batch. Must not raise."""
        ...

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None:
        """The batch could not be written: keep or log what would be lost. Must not raise."""
        ...


class Pipeline:
    def __init__(self, auth: Authenticator, router: Router, metrics: Metrics, store: Store,
                 stages: tuple[Stage, ...] = (), stream_usage_hook: StreamUsageHook | None = None,
                 idle: IdleWork | None = None) -> None:
        self.auth = auth
        self.router = router
        self.metrics = metrics
        self.store = store
        self.stages = stages
        self.stream_usage_hook = stream_usage_hook
        # Where settles that no later call reads wait for the gateway's next wait on a provider;
        # None: every settle follows its answer at once.
        self.idle = idle
        self._writes: set[asyncio.Task[None]] = set()
        # Stages whose settle gives the answer something (a JSON answer's cost header, the call's cost
        # for the access log, a stream's release of its deployment) do that part in an
        # `annotate(ctx, reply, error)`, called when the answer is ready if the settle itself waits.
        self._annotators: dict[str, Callable[[RequestContext, JSONReply | None, GatewayError | None], None]] = {
            stage.name: stage.annotate for stage in stages if hasattr(stage, "annotate")}

    async def handle(self, ctx: RequestContext, *, authenticated: bool = False) -> Reply:
        """`authenticated`: the endpoint has put the caller in `ctx.principal` already."""
        if not authenticated:
            ctx.principal = self.auth.authenticate(ctx.headers)
        table = self.router.table
        if table.get(ctx.alias) is None:
            alias = table.resolve(ctx.alias)
            if alias is None:
                self.router.plan(ctx)  # raises the 404 for an unknown alias
            else:
                ctx.alias = alias
        self.auth.authorize(ctx.principal, ctx.alias)
        admitted: list[Stage] = []
        reply: Reply | None = None
        error: GatewayError | None = None
        try:
            for stage in self.stages:
                reply = await stage.admit(ctx)
                admitted.append(stage)
                if reply is not None:
                    return reply
            if self.idle is not None:
                self.idle.soon()  # this call is about to wait on its provider: earlier calls settle then
            codec = dialect(ctx.dialect)
            if ctx.stream:
                opened = await self.router.open_stream(ctx)
                encoder = None if opened.native else codec.stream_encoder(ctx)
                first = self._stream_out(ctx, opened, encoder, opened.first)
                if ctx.keeper is not None:
                    await ctx.keeper.keep_stream(encoder if encoder is not None else opened.translator)
                rest = self._stream_rest(ctx, opened, encoder, tuple(admitted))
                # Started here, so its `finally` (close upstream, settle) runs whenever it is closed,
                # even if the client is gone before the first byte is sent.
                await rest.__anext__()
                reply = StreamReply(self._headers(ctx), first, rest, complete=opened.translator.done,
                                    settle_first=ctx.settle_before_reply)
                admitted = []  # the stream settles when it ends
                return reply
            parsed = await self.router.complete(ctx)
            ctx.usage = parsed.usage
            reply = JSONReply(200, codec.encode_answer(parsed, ctx), self._headers(ctx))
            if ctx.keeper is not None:
                await ctx.keeper.keep_json(reply.body)
            return reply
        except GatewayError as exc:
            error = exc
            ctx.status, ctx.error_type = exc.http_status, exc.error_type
            raise
        finally:
            if admitted and error is None and isinstance(reply, JSONReply) and self.store.ordered \
                    and not ctx.settle_before_reply:
                # Settled after the send: the stages' writes, the records they build and the metrics.
                # Only the headers a settle gives the answer (the call's cost) are set now. Only on
                # an ordered store (see Store.ordered): through redis-py's pool a later call's read
                # (budget, cache lookup, limits) could reach Redis before this write. When no later
                # call reads them, they wait for the gateway's next wait on a provider instead.
                ctx.finished_at = time.perf_counter()  # the metrics' and usage record's end of the call
                settle = functools.partial(self._settle, ctx, tuple(admitted), reply, None)
                if self.idle is not None and self._may_wait(ctx):
                    self.idle.defer(settle)
                else:
                    reply.after = settle
                self._annotate(ctx, admitted, reply, None)
            elif admitted:
                await self._settle(ctx, tuple(admitted), reply, error)
            elif not ctx.stream or error is not None:
                self._observe(ctx)

    @staticmethod
    def _may_wait(ctx: RequestContext) -> bool:
        """Whether this call's settle may wait for the gateway's next wait on a provider: nothing a
        later call checks or reads is in it."""
        return not ctx.settle_before_reply and not ctx.settle_promptly

    def _annotate(self, ctx: RequestContext, stages: Sequence[Stage], reply: JSONReply | None,
                  error: GatewayError | None) -> None:
        for stage in stages:
            annotate = self._annotators.get(stage.name)
            if annotate is not None:
                try:
                    annotate(ctx, reply, error)
                except Exception:  # like settle: never fail a request that already has its answer
                    log.exception("annotate failed", extra={"fields": {"request_id": ctx.request_id,
                                                                      "stage": stage.name}})

    def _headers(self, ctx: RequestContext) -> dict[str, str]:
        headers = ctx.response_headers
        headers["x-gateway-deployment"] = ctx.deployment or ""
        headers["x-gateway-attempts"] = str(ctx.attempts)
        headers["x-gateway-overhead-ms"] = f"{ctx.overhead_ms():.3f}"
        return headers

    async def _stream_rest(self, ctx: RequestContext, opened: OpenStream, encoder: StreamEncoder | None,
                           stages: tuple[Stage, ...]) -> AsyncIterator[bytes]:
        """The stream after its first bytes. An upstream failure from here on ends the stream with the
        dialect's error event (never a clean-looking end); the client leaving cancels the upstream."""
        error: GatewayError | None = None
        try:
            yield b""  # the priming step (see handle): from here on the finally always runs
            keeper, source = ctx.keeper, encoder if encoder is not None else opened.translator
            async for out in opened.rest:
                out = self._stream_out(ctx, opened, encoder, out)
                if keeper is not None:
                    await keeper.keep_stream(source)
                yield out
            if encoder is not None and (tail := encoder.finish()):
                if keeper is not None:
                    await keeper.keep_stream(source)
                yield self._captured(ctx, tail)
        except GatewayError as exc:
            error = exc
            yield encoder.fail(exc) if encoder is not None else dialect(ctx.dialect).error_event(exc)
        except Exception:  # an unexpected fault must still end the stream visibly
            log.exception("stream failed", extra={"fields": {"request_id": ctx.request_id}})
            error = InternalError("The gateway failed while streaming the answer.")
            yield encoder.fail(error) if encoder is not None else dialect(ctx.dialect).error_event(error)
        finally:
            opened.response.close()
            ctx.usage = opened.translator.usage
            ctx.stream_complete = opened.translator.done and error is None
            if error is not None:
                ctx.status, ctx.error_type = 502 if error.http_status < 500 else error.http_status, error.error_type
            if self.idle is not None and self._may_wait(ctx):
                ctx.finished_at = time.perf_counter()  # see handle
                self._annotate(ctx, stages, None, error)
                self.idle.defer(functools.partial(self._settle, ctx, stages, None, error))
            else:
                await self._settle(ctx, stages, None, error, shield=True)

    def _stream_out(self, ctx: RequestContext, opened: OpenStream, encoder: StreamEncoder | None,
                    out: bytes) -> bytes:
        """Bytes on their way to the client. Canonical bytes for a Chat Completions client: kept as
        they came when a stage captures the stream, then the usage chunk annotated for this client
        (the cost of this call). Another dialect's client gets them encoded, and the encoded bytes
        are what a stage captures."""
        if encoder is not None:
            return self._captured(ctx, encoder.feed(out))
        if ctx.capture is not None:
            ctx.capture.append(out)
        hook = self.stream_usage_hook
        if hook is not None and ctx.client_wants_usage and (b'"usage":{' in out or b'"usage": {' in out):
            out = hook(ctx, opened.translator.usage, out)
        return out

    @staticmethod
    def _captured(ctx: RequestContext, out: bytes) -> bytes:
        if ctx.capture is not None and out:
            ctx.capture.append(out)
        return out

    async def _settle(self, ctx: RequestContext, stages: tuple[Stage, ...], reply: Reply | None,
                      error: GatewayError | None, *, shield: bool = False) -> None:
        """Every admitted stage's writes, sent to the store in one round trip."""
        batches, ops = self._collect(ctx, stages, reply, error)
        await self._commit(ctx, batches, ops, shield=shield)

    def _collect(self, ctx: RequestContext, stages: tuple[Stage, ...], reply: Reply | None,
                 error: GatewayError | None) -> tuple[list[tuple[Stage, Sequence[StoreOp]]], list[StoreOp]]:
        batches: list[tuple[Stage, Sequence[StoreOp]]] = []
        for stage in stages:
            try:
                batches.append((stage, stage.settle(ctx, reply, error)))
            except Exception:  # settle must never fail a request that already has its answer
                log.exception("settle failed", extra={"fields": {"request_id": ctx.request_id, "stage": stage.name}})
        return batches, [op for _, stage_ops in batches for op in stage_ops]

    async def _commit(self, ctx: RequestContext, batches: list[tuple[Stage, Sequence[StoreOp]]],
                      ops: list[StoreOp], *, shield: bool = False) -> None:
        if not ops:
            self._observe(ctx)
        elif not shield or self.store.in_process:
            # (An in-process store writes without suspending: a cancellation cannot cut it short.)
            await self._write(ctx, batches, ops)
            self._observe(ctx)
        else:
            # A stream settles while its client may be leaving: the disconnect cancels this task, and
            # must not cancel the writes (they would be lost). They finish in their own task.
            task = asyncio.ensure_future(self._write(ctx, batches, ops))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
            try:
                await asyncio.shield(task)
            finally:
                self._observe(ctx)

    async def _write(self, ctx: RequestContext, batches: list[tuple[Stage, Sequence[StoreOp]]],
                     ops: list[StoreOp]) -> None:
        began = time.perf_counter()  # --- observability ---
        try:
            await self.store.run_batch(ops)
            self.metrics.child(self.metrics.store_seconds, "settle").observe(time.perf_counter() - began)
        except Exception as exc:
            self.metrics.child(self.metrics.store_errors, "settle").inc()
            for stage, stage_ops in batches:
                if stage_ops:
                    stage.settle_failed(ctx, stage_ops, exc)

    # --- deploy: graceful shutdown ---
    async def wait_writes(self) -> None:
        """Wait for settle writes still in flight (streams that ended as the server stopped)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
    # --- end deploy ---

    def _observe(self, ctx: RequestContext) -> None:
        m = self.metrics
        now = ctx.finished_at or time.perf_counter()  # a settle that waited (see handle) ended the call earlier
        m.count_request(ctx.alias, ctx.provider or "", ctx.deployment or "", ctx.status, ctx.dialect)
        m.child(m.request_seconds, ctx.alias, "true" if ctx.stream else "false").observe(now - ctx.started)
        if ctx.first_byte_at is not None:
            m.child(m.ttft_seconds, ctx.alias, ctx.deployment or "").observe(ctx.first_byte_at - ctx.started)
            m.child(m.overhead_seconds, ctx.alias).observe(
                max(0.0, ctx.first_byte_at - ctx.started - ctx.upstream_seconds))
        elif ctx.status < 400:
            m.child(m.overhead_seconds, ctx.alias).observe(ctx.overhead_ms(now) / 1000)
        usage = ctx.usage
        if usage is not None and ctx.deployment:
            m.child(m.tokens, ctx.alias, ctx.deployment, "prompt").inc(usage.prompt_tokens)
            m.child(m.tokens, ctx.alias, ctx.deployment, "completion").inc(usage.completion_tokens)
        if ctx.attempts and not ctx.cache_hit:  # --- observability ---
            observe_upstream(m, ctx, now)


# --- observability ---
def observe_upstream(m: Metrics, ctx: RequestContext, now: float) -> None:
    """Upstream wait, inter-token latency (streams) and the caller's team tokens."""
    deployment = ctx.deployment or ""
    upstream = ctx.upstream_seconds
    usage = ctx.usage
    first = ctx.first_byte_at
    if first is not None:
        upstream += now - first  # a stream waits on its upstream until its end
        if usage is not None and usage.completion_tokens > 1:
            m.child(m.inter_token_seconds, ctx.alias, deployment).observe(
                (now - first) / (usage.completion_tokens - 1))
    m.child(m.upstream_seconds, ctx.alias, deployment).observe(upstream)
    if usage is not None:
        team, key = m.principal_labels(ctx.principal.name, ctx.principal.team)
        m.child(m.team_tokens, team, key, "prompt").inc(usage.prompt_tokens)
        m.child(m.team_tokens, team, key, "completion").inc(usage.completion_tokens)
# --- end observability ---


def new_context(request_id: str, operation: Operation, body: dict[str, Any], headers: dict[str, str],
                started: float) -> RequestContext:
    return RequestContext(request_id=request_id, operation=operation, body=body,
                          alias=str(body.get("model")), stream=body.get("stream") is True, headers=headers,
                          started=started)
