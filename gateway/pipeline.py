"""The request pipeline, in one direction:

    authenticate → admit (limits, budgets, cache: the stages) → router → encode for the dialect

Per-request work runs once; the router owns per-attempt work. Stages are the slots features plug
into: a stage may admit (raise to reject, or return a ready reply, as a cache hit does) and settles
afterwards; a stage that needs a stream's output sets `ctx.capture = []` in admit and finds every
piece sent to the client there at settle (no cost for requests that did not ask). Unless the cache
stage is writing an entry (`ctx.cache_state`), a long stream's earlier pieces are packed into
`ctx.capture_packed` as it goes (gateway.accounting.estimate.unpacked gives them all back).

Every call that was admitted is settled exactly once, streams included (when the stream ends, fails
or the client leaves): the call's `Settlement` (gateway/settlement.py) rides on its reply, and
`gateway.settlement.settle_timing` alone decides when it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Protocol

from gateway.accounting.estimate import PACK_AFTER, pack_capture
from gateway.auth import Authenticator
from gateway.context import JSONReply, Reply, RequestContext, StreamReply, Usage
from gateway.dialects import StreamEncoder, dialect
from gateway.errors import GatewayError, InternalError, StreamCutError
from gateway.logs import get_logger
from gateway.metrics import CallSeries, Metrics
from gateway.routing.router import OpenStream, Router
from gateway.schemas import Operation
from gateway.settlement import Settlement, Settler, Timing
from gateway.store import StoreClient, StoreOp

log = get_logger("pipeline")

# The status recorded for a call whose client left before the answer (nginx's convention).
CLIENT_CLOSED = 499
# The status a stream cut short by the gateway itself carries in usage records and metrics (nginx's
# "closed before the answer was complete"; cancelled hedges use it too).
CUT_STATUS = 499


def _cut_by_shutdown(exc: asyncio.CancelledError) -> bool:
    """uvicorn cancels the tasks still running when `timeout_graceful_shutdown` runs out with this
    message (a client that leaves cancels without one): the stream can still be ended properly."""
    if "graceful shutdown" not in str(exc):
        return False
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return True



# Rewrites the stream bytes that carry the client's usage chunk (accounting adds the call's cost).
StreamUsageHook = Callable[[RequestContext, Usage | None, bytes], bytes]


class Stage(Protocol):
    """A pipeline slot (rate limits, budgets, cache, accounting)."""

    name: str
    # The client dialects whose calls go through this stage; None: every call. A call of any other
    # dialect does not see the stage at all (it costs that call nothing).
    dialects: frozenset[str] | None

    async def admit(self, ctx: RequestContext) -> Reply | None:
        """Before routing: raise a GatewayError to reject, return a Reply to answer without an
        upstream call, or None to go on. At most one store round trip."""
        ...

    def settle(self, ctx: RequestContext, reply: Reply | None, error: GatewayError | None) -> Sequence[StoreOp]:
        """After the answer or failure (ctx.usage is final): the store writes this stage needs. No I/O:
        the pipeline sends every stage's writes in one batch. Must not raise."""
        ...

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None:
        """`ops`, this stage's writes, were not applied: the whole batch failed (the store did not
        answer), or the store refused these ops alone. Keep or log what would be lost. Must not raise."""
        ...

    def annotate(self, ctx: RequestContext, reply: JSONReply | None, error: GatewayError | None) -> None:
        """The answer leaves before the settle runs: do now what the answer needs from the settle (a
        JSON answer's cost header, the access log's cost, a stream's deployment freed). No I/O."""
        ...


class Pipeline:
    def __init__(self, auth: Authenticator, router: Router, metrics: Metrics, store: StoreClient,
                 stages: tuple[Stage, ...] = (), stream_usage_hook: StreamUsageHook | None = None) -> None:
        self.auth = auth
        self.router = router
        self.metrics = metrics
        self.stages = stages
        # Each dialect's calls go through the stages that take them, in the pipeline's order.
        self._stages_by_dialect: dict[str, tuple[Stage, ...]] = {}
        self.stream_usage_hook = stream_usage_hook
        self.settler = Settler(store, metrics, self._observe)

    def stages_for(self, dialect_name: str) -> tuple[Stage, ...]:
        found = self._stages_by_dialect.get(dialect_name)
        if found is None:
            found = self._stages_by_dialect[dialect_name] = tuple(
                stage for stage in self.stages if stage.dialects is None or dialect_name in stage.dialects)
        return found

    async def handle(self, ctx: RequestContext, *, authenticated: bool = False) -> Reply:
        """`authenticated`: the endpoint has put the caller in `ctx.principal` already."""
        if not authenticated:
            ctx.principal = self.auth.authenticate(ctx.headers)
        alias = self.router.table.resolve(ctx.alias)
        if alias is None:
            self.router.plan(ctx)  # raises the 404 for an unknown alias
        else:
            ctx.alias = alias
        self.auth.authorize(ctx.principal, ctx.alias)
        settlement = self.settler.start(ctx)
        reply: Reply | None = None
        routed = False
        try:
            for stage in self.stages_for(ctx.dialect):
                reply = await stage.admit(ctx)
                settlement.stages.append(stage)
                if reply is not None:
                    break
            else:
                reply, routed = await self._route(ctx, settlement), True
        except GatewayError as exc:
            ctx.status, ctx.error_type = exc.http_status, exc.error_type
            settlement.decide(None, exc, stream=False)
            # Shielded: the client leaving meanwhile cancels this task, not the writes under way.
            await settlement.run(shield=True)
            raise
        except BaseException as exc:  # cut short (cancelled): what was admitted is still settled
            if isinstance(exc, asyncio.CancelledError):
                ctx.status = CLIENT_CLOSED  # the client left before its answer (see endpoints.asgi)
            await settlement.run(shield=True)
            raise
        reply.settlement = settlement
        # A provider's stream decides its settle when it ends (see _stream_rest); any other answer
        # (JSON, a stage's replayed stream) is whole now.
        if (isinstance(reply, JSONReply) or not routed) and \
                settlement.decide(reply, None, stream=isinstance(reply, StreamReply)) is Timing.BEFORE:
            await settlement.run(shield=True)  # (as above)
        return reply

    async def _route(self, ctx: RequestContext, settlement: Settlement) -> Reply:
        codec = dialect(ctx.dialect)
        if ctx.stream:
            opened = await self.router.open_stream(ctx)
            encoder = None if opened.native else codec.stream_encoder(ctx)
            first = self._stream_out(ctx, opened, encoder, opened.first)
            if ctx.keeper is not None:
                await ctx.keeper.keep_stream(encoder if encoder is not None else opened.translator)
            rest = self._stream_rest(ctx, opened, encoder, settlement)
            # Started here, so its `finally` (close upstream, decide the settle) runs whenever it is
            # closed, even if the client is gone before the first byte is sent.
            await rest.__anext__()
            before = self.settler.timing(ctx, stream=True, failed=False) is Timing.BEFORE
            return StreamReply(self._headers(ctx), first, rest, complete=opened.translator.done,
                               settle_first=before)
        parsed = await self.router.complete(ctx)
        ctx.usage = parsed.usage
        reply = JSONReply(200, codec.encode_answer(parsed, ctx), self._headers(ctx))
        if ctx.keeper is not None:
            await ctx.keeper.keep_json(reply.body)
        return reply

    def _headers(self, ctx: RequestContext) -> dict[str, str]:
        headers = ctx.response_headers
        headers["x-gateway-deployment"] = ctx.deployment or ""
        headers["x-gateway-attempts"] = str(ctx.attempts)
        headers["x-gateway-overhead-ms"] = f"{ctx.overhead_ms():.3f}"
        return headers

    async def _stream_rest(self, ctx: RequestContext, opened: OpenStream, encoder: StreamEncoder | None,
                           settlement: Settlement) -> AsyncGenerator[bytes, None]:
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
            yield _error_end(ctx, encoder, exc)
        except asyncio.CancelledError as exc:
            if not _cut_by_shutdown(exc):
                raise  # the client left (its DisconnectSlot, see endpoints.asgi): nobody to tell
            error = StreamCutError("The gateway shut down before this stream ended (server.shutdown_grace "
                                   "ran out); the answer is incomplete.")
            ctx.cut = True
            log.warning("stream cut by shutdown", extra={"fields": {
                "request_id": ctx.request_id, "alias": ctx.alias, "deployment": ctx.deployment or ""}})
            yield _error_end(ctx, encoder, error)
        except Exception:  # an unexpected fault must still end the stream visibly
            log.exception("stream failed", extra={"fields": {"request_id": ctx.request_id}})
            error = InternalError("The gateway failed while streaming the answer.")
            yield _error_end(ctx, encoder, error)
        finally:
            opened.response.close()
            ctx.usage = opened.translator.usage
            ctx.stream_complete = opened.translator.done and error is None
            if error is not None:
                ctx.status, ctx.error_type = 502 if error.http_status < 500 else error.http_status, error.error_type
            if ctx.cut:  # recorded as the gateway's own cut, as a cancelled hedge is
                ctx.status = CUT_STATUS
            settlement.decide(None, error, stream=True)

    def _stream_out(self, ctx: RequestContext, opened: OpenStream, encoder: StreamEncoder | None,
                    out: bytes) -> bytes:
        """Bytes on their way to the client. Canonical bytes for a Chat Completions client: kept as
        they came when a stage captures the stream, then the usage chunk annotated for this client
        (the cost of this call). Another dialect's client gets them encoded, and the encoded bytes
        are what a stage captures."""
        if encoder is not None:
            return self._captured(ctx, encoder.feed(out))
        self._captured(ctx, out)
        hook = self.stream_usage_hook
        if hook is not None and ctx.native is None and ctx.client_wants_usage and (
                b'"usage":{' in out or b'"usage": {' in out):
            out = hook(ctx, opened.translator.usage, out)
        return out

    @staticmethod
    def _captured(ctx: RequestContext, out: bytes) -> bytes:
        capture = ctx.capture
        if capture is not None and out:
            capture.append(out)
            # Only accounting's estimate reads a capture the cache does not replay, and rarely.
            if len(capture) >= PACK_AFTER and ctx.cache_state is None:
                pack_capture(capture, ctx.capture_packed)
        return out

    # --- deploy: graceful shutdown ---
    async def wait_writes(self) -> None:
        """Wait for settle writes still in flight (streams that ended as the server stopped)."""
        await self.settler.wait_writes()
    # --- end deploy ---

    def _observe(self, ctx: RequestContext) -> None:
        m = self.metrics
        now = ctx.finished_at or time.perf_counter()  # a settle that waited (see handle) ended the call earlier
        deployment = ctx.deployment or ""
        m.count_request(ctx.alias, ctx.provider or "", deployment, ctx.status, ctx.dialect)
        series = m.call_series(ctx.alias, deployment, ctx.stream)
        series.duration.observe(now - ctx.started)
        if ctx.first_byte_at is not None:
            series.ttft.observe(ctx.first_byte_at - ctx.started)
            series.overhead.observe(max(0.0, ctx.first_byte_at - ctx.started - ctx.upstream_seconds))
        elif ctx.status < 400:
            series.overhead.observe(ctx.overhead_ms(now) / 1000)
        usage = ctx.usage
        if usage is not None and deployment:
            series.prompt_tokens.inc(usage.prompt_tokens)
            series.completion_tokens.inc(usage.completion_tokens)
        if ctx.attempts and not ctx.cache_hit:  # --- observability ---
            observe_upstream(m, series, ctx, now)


# --- observability ---
def observe_upstream(m: Metrics, series: CallSeries, ctx: RequestContext, now: float) -> None:
    """Upstream wait, inter-token latency (streams) and the caller's team tokens."""
    upstream = ctx.upstream_seconds
    usage = ctx.usage
    first = ctx.first_byte_at
    if first is not None:
        upstream += now - first  # a stream waits on its upstream until its end
        if usage is not None and usage.completion_tokens > 1:
            series.inter_token.observe((now - first) / (usage.completion_tokens - 1))
    series.upstream.observe(upstream)
    if usage is not None:
        team = m.team_series(ctx.principal.name, ctx.principal.team)
        team.prompt_tokens.inc(usage.prompt_tokens)
        team.completion_tokens.inc(usage.completion_tokens)
# --- end observability ---


def new_context(request_id: str, operation: Operation, body: dict[str, Any], headers: dict[str, str],
                started: float) -> RequestContext:
    return RequestContext(request_id=request_id, operation=operation, body=body,
                          alias=str(body.get("model")), stream=body.get("stream") is True, headers=headers,
                          started=started)


def _error_end(ctx: RequestContext, encoder: StreamEncoder | None, error: GatewayError) -> bytes:
    """The event that ends a stream that failed after its first bytes, in the client's dialect (an
    encoder closes what it has open first)."""
    return encoder.fail(error) if encoder is not None else dialect(ctx.dialect).error_event(error)
