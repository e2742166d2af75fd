"""The attempt loop: try deployments in the strategy's order, retry and fall back on retryable
failures, within one overall deadline per request.

Per-attempt work (translate, credentials, send) reruns on every attempt and never mutates the
client's request. A stream may fall back only until its first real event is ready for the client
(comments and keep-alives do not count); the caller gets the first bytes together with the rest of
the stream, and after that point no other deployment is tried. Error text from upstream passes
through the config's redactor before it goes anywhere."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.config import Limits
from gateway.context import RequestContext
from gateway.dialects import PassthroughStream, dialect
from gateway.errors import (
    AllAttemptsFailedError,
    AttemptRecord,
    ContextLengthExceededError,
    GatewayError,
    ModelNotFoundError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamPoolTimeoutError,
    UpstreamTimeoutError,
)
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.providers import ParsedResponse, Provider, StreamTranslator, UpstreamRequest
from gateway.providers.redact import Redactor
from gateway.routing import health
from gateway.routing.sessions import pinned_first
from gateway.routing.stats import RoutingStats, p95
from gateway.routing.strategies import order_for
from gateway.routing.stream import StreamBound, StreamClock, first_output, rest
from gateway.routing.table import Route, RouteTable, Target
from gateway.upstream import UpstreamPool, UpstreamResponse

log = get_logger("router")

# Backoff before retrying a deployment already tried: base * 2^n with full jitter, capped. (A 429's
# Retry-After opens the deployment's circuit for that long instead; see health.py.)
BACKOFF_BASE = 0.05
BACKOFF_CAP = 2.0


class _NextAlias(Exception):
    """Control flow inside the attempt loop (never escapes it): go on to the next alias."""

    def __init__(self, error: GatewayError | None, *, final: bool = False) -> None:
        self.error = error
        self.final = final


def is_retryable(error: GatewayError) -> bool:
    """Connect errors, timeouts, broken upstream answers, 408/409/429/5xx and "overloaded" errors
    go to another attempt; other 4xx (the request's own fault) never do."""
    return error.retryable or _overloaded(error)


def counts_against(error: GatewayError) -> bool:
    """Whether a failure says something about the deployment (statistics, cooldown)."""
    return is_retryable(error) and not isinstance(error, (ContextLengthExceededError, UpstreamPoolTimeoutError))


def _overloaded(error: GatewayError) -> bool:
    if not isinstance(error, UpstreamError):
        return False
    kind = f"{error.to_dict()['error'].get('type')} {error.code}".lower()
    return "overloaded" in kind


def _cooling_down(alias: str, until: float | None, now: float) -> GatewayError:
    headers = {}
    retry_after = None
    if until is not None:
        retry_after = max(0.0, until - now)
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return UpstreamError(f"Every deployment of '{alias}' is cooling down after failures; try again later.",
                         status=503, error_type="api_error", code="deployments_cooling_down",
                         headers=headers, retry_after=retry_after)


def _discard(task: asyncio.Future[ParsedResponse | OpenStream], stats: RoutingStats) -> None:
    """A hedged attempt that answered at the same moment as the winner: close it, free its slot."""
    if task.cancelled() or task.exception() is not None:
        return
    result = task.result()
    if isinstance(result, OpenStream):
        result.response.close()
        stats.release(result.target.id)


@dataclass(slots=True)
class OpenStream:
    """A stream that has produced its first bytes; `rest` yields the remaining OpenAI SSE bytes."""

    first: bytes
    rest: AsyncIterator[bytes]
    translator: StreamTranslator
    response: UpstreamResponse
    target: Target
    # The bytes are in the client's dialect already (a same-dialect deployment): nothing to encode.
    native: bool = False


class AttemptGate(Protocol):
    """Per-attempt admission for deployments with their own limits (gateway/ratelimit): the error
    when the deployment has no headroom, and the router moves on to the next one."""

    async def acquire(self, ctx: RequestContext, deployment: str, limits: Limits) -> GatewayError | None: ...


class Router:
    def __init__(self, table: RouteTable, pool: UpstreamPool, rng: random.Random | None = None,
                 stats: RoutingStats | None = None, metrics: Metrics | None = None,
                 gate: AttemptGate | None = None, redactor: Redactor | None = None) -> None:
        self.table = table
        # Cleans upstream error text of the config's secrets (runs on error answers only).
        self.redactor = redactor or Redactor(())
        # The one timer bounding every open stream (made on the event loop, at the first stream).
        self._stream_clock: StreamClock | None = None
        self.pool = pool
        self.stats = stats or RoutingStats(None, rng=rng)
        self.rng = rng or self.stats.rng
        self.metrics = metrics
        self.gate = gate

    def route(self, ctx: RequestContext) -> Route:
        route = self.table.get(ctx.alias)
        if route is None:
            raise ModelNotFoundError(f"The model '{ctx.alias}' does not exist or you do not have access to it.",
                                     param="model")
        return route

    def plan(self, ctx: RequestContext) -> list[Target]:
        """The deployments this request would try first, per alias of its fallback chain, in the
        strategy's order (open circuits left out). The attempt loop re-plans as it goes."""
        route = self.route(ctx)
        now = self.stats.clock()
        plan: list[Target] = []
        for alias in (ctx.alias, *self._usable(ctx, route.config.fallbacks)):
            plan.extend(self._order(self.table.routes[alias], ctx.stream, now))
        return pinned_first(plan, ctx.pinned)

    def _order(self, route: Route, stream: bool, now: float) -> list[Target]:
        stats = self.stats
        targets = [t for t in route.targets if health.available(stats, t.id, now)]
        if not targets:
            return []
        return order_for(route, targets, self.rng, stats, now, stream, stats.tau)

    async def complete(self, ctx: RequestContext) -> ParsedResponse:
        return await self._run(ctx, stream=False)  # type: ignore[return-value]

    async def open_stream(self, ctx: RequestContext) -> OpenStream:
        return await self._run(ctx, stream=True)  # type: ignore[return-value]

    async def _run(self, ctx: RequestContext, *, stream: bool) -> ParsedResponse | OpenStream:
        """The attempt loop: the alias's deployments (retries cycle through them), then each fallback
        alias; `context_length_exceeded` jumps to the context-window fallbacks instead. Every wait
        (backoff, recovery) and attempt stays within the requested alias's overall deadline."""
        route = self.route(ctx)
        deadline = time.monotonic() + route.config.timeout
        records: list[AttemptRecord] = []
        last: GatewayError | None = None
        fallbacks = route.config.fallbacks
        chain = [ctx.alias, *(fallbacks if ctx.principal.models is None else self._usable(ctx, fallbacks))]
        seen: set[str] = set()
        reason = "failure"
        i = 0
        while i < len(chain):
            alias = chain[i]
            i += 1
            if alias in seen:
                continue
            seen.add(alias)
            r = self.table.routes[alias]
            if alias != ctx.alias and self.metrics is not None:
                self.metrics.child(self.metrics.fallbacks, ctx.alias, alias, reason).inc()
            try:
                result = await self._alias_attempts(ctx, r, stream, deadline, records, last_alias=i == len(chain))
            except _NextAlias as nxt:
                last = nxt.error or last
                if isinstance(nxt.error, ContextLengthExceededError):
                    if not r.config.context_window_fallbacks:
                        break
                    chain[i:] = self._usable(ctx, r.config.context_window_fallbacks)
                    reason = "context_window"
                elif nxt.error is not None:
                    reason = "failure"
                else:
                    reason = "cooldown"
                if nxt.final:
                    break
                continue
            if alias != ctx.alias:
                ctx.served_alias = alias
                ctx.response_headers["x-gateway-fallback"] = alias
            return result
        if last is None:
            last = _cooling_down(ctx.alias, self._earliest(chain), self.stats.clock())
            records.append(AttemptRecord(ctx.alias, last.code or "cooldown", last.http_status))
        if len(records) <= 1:
            raise last
        raise AllAttemptsFailedError(last, records)

    @staticmethod
    def _usable(ctx: RequestContext, aliases: list[str]) -> list[str]:
        """The fallback aliases the caller's key may use: a fallback never reaches a model the key
        itself could not call. The others are skipped, and the log says so."""
        principal = ctx.principal
        if principal.models is None:
            return aliases
        usable = [alias for alias in aliases if alias in principal.models]
        if len(usable) < len(aliases):
            log.info("fallback skipped: the key may not use it",
                     extra={"fields": {"request_id": ctx.request_id, "key": principal.name, "alias": ctx.alias,
                                       "skipped": [a for a in aliases if a not in principal.models]}})
        return usable

    def _earliest(self, aliases: list[str]) -> float | None:
        deps = [t.id for a in aliases for t in self.table.routes[a].targets]
        return health.earliest_recovery(self.stats, deps, self.stats.clock())

    async def _alias_attempts(self, ctx: RequestContext, route: Route, stream: bool, deadline: float,
                              records: list[AttemptRecord], *, last_alias: bool) -> ParsedResponse | OpenStream:
        """Up to `retries + 1` attempts on this alias's deployments. Raises _NextAlias when the alias
        is exhausted, all its deployments are cooling down, or an error calls for another alias."""
        config = route.config
        stats = self.stats
        tried: set[str] = set()
        last: GatewayError | None = None
        for n in range(config.retries + 1):
            if deadline - time.monotonic() <= 0:
                raise _NextAlias(last, final=True)
            order = pinned_first(self._order(route, stream, stats.clock()), ctx.pinned)
            target, refused = await self._claim(ctx, order, tried, stats, records)
            last = refused or last
            if target is None:
                waited = await self._wait_for_recovery(route, deadline) if last_alias else False
                if not waited:
                    raise _NextAlias(last)
                target, refused = await self._claim(ctx, self._order(route, stream, stats.clock()), tried, stats,
                                                    records)
                last = refused or last
                if target is None:
                    raise _NextAlias(last)
            if target.id in tried:  # a retry on a deployment already tried: back off first
                pause = min(deadline - time.monotonic(),
                            self.rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** n)))
                if pause > 0:
                    await asyncio.sleep(pause)
            if ctx.attempts and self.metrics is not None:
                self.metrics.child(self.metrics.retries, ctx.alias).inc()
            tried.add(target.id)
            hedge = self._hedge_partner(route, target, order, stream)
            try:
                if hedge is not None:
                    return await self._hedged(ctx, route, target, *hedge, stream, deadline, records)
                return await self._counted(ctx, route, target, stream, deadline)
            except GatewayError as error:
                if hedge is None:
                    records.append(AttemptRecord(target.id, error.code or error.error_type, error.http_status))
                last = error
                if isinstance(error, ContextLengthExceededError):
                    raise _NextAlias(error) from None
                if not is_retryable(error):
                    raise _NextAlias(error, final=True) from None
        raise _NextAlias(last)

    async def _claim(self, ctx: RequestContext, order: list[Target], tried: set[str], stats: RoutingStats,
                     records: list[AttemptRecord]) -> tuple[Target | None, GatewayError | None]:
        """The first deployment not yet tried that may take an attempt (a half-open one only with its
        probe, one with its own limits only with headroom); when every one has been tried, the best
        again (a retry). Also the refusal of the last deployment that had no headroom, if any."""
        now = stats.clock()
        refused: GatewayError | None = None
        for target in sorted(order, key=lambda t: t.id in tried):
            if not await health.may_send(stats, target.id, now):
                continue
            if self.gate is not None and target.deployment.limits is not None:
                refusal = await self.gate.acquire(ctx, target.id, target.deployment.limits)
                if refusal is not None:  # no headroom at this deployment: the next one, no backoff
                    records.append(AttemptRecord(target.id, refusal.code or refusal.error_type, refusal.http_status))
                    refused = refusal
                    continue
            return target, refused
        return None, refused

    async def _wait_for_recovery(self, route: Route, deadline: float) -> bool:
        """Every deployment is cooling down: wait for the earliest recovery if it comes within the
        alias's `wait_for_recovery` bound and the deadline."""
        bound = route.config.wait_for_recovery
        if bound <= 0:
            return False
        now = self.stats.clock()
        at = health.earliest_recovery(self.stats, (t.id for t in route.targets), now)
        if at is None:
            return False
        pause = at - now
        if pause > bound or pause >= deadline - time.monotonic():
            return False
        await self.stats.sleep(pause)
        return True

    def _hedge_partner(self, route: Route, first: Target, order: list[Target],
                       stream: bool) -> tuple[Target, float] | None:
        hedge = route.config.hedge
        if not hedge.enabled:
            return None
        partner = next((t for t in order if t.id != first.id), None)
        if partner is None:
            return None
        if hedge.after == "p95":
            delay = p95(self.stats.get(first.id), stream)
            if delay is None:
                return None
            return partner, max(hedge.min_delay, delay)
        return partner, float(hedge.after)

    async def _hedged(self, ctx: RequestContext, route: Route, first: Target, second: Target, delay: float,
                      stream: bool, deadline: float, records: list[AttemptRecord]) -> ParsedResponse | OpenStream:
        """Start `second` if `first` has not answered (its first token, for a stream) after `delay`;
        the first to answer wins, the other is cancelled and listed on the context for accounting."""
        tasks = {asyncio.ensure_future(self._counted(ctx, route, first, stream, deadline)): first}
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if not done and await health.may_send(self.stats, second.id, self.stats.clock()):
            tasks[asyncio.ensure_future(self._counted(ctx, route, second, stream, deadline))] = second
            if self.metrics is not None:
                self.metrics.child(self.metrics.hedges, ctx.alias, "started").inc()
        pending = set(tasks)
        error: GatewayError | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        winner = tasks[task]
                        ctx.deployment, ctx.provider = winner.id, winner.provider.name
                        if stream:
                            ctx.route_held = winner.id  # the stage releases it when the stream settles
                        if winner is second and self.metrics is not None:
                            self.metrics.child(self.metrics.hedges, ctx.alias, "won").inc()
                        for other in pending:
                            ctx.cancelled_attempts.append(tasks[other].id)
                        for extra in done - {task}:  # both answered at once: close the other
                            _discard(extra, self.stats)
                        return task.result()
                    if not isinstance(exc, GatewayError):
                        raise exc
                    records.append(AttemptRecord(tasks[task].id, exc.code or exc.error_type, exc.http_status))
                    error = exc
        finally:
            for task in pending:
                task.cancel()
        assert error is not None
        raise error

    async def _counted(self, ctx: RequestContext, route: Route, target: Target, stream: bool,
                       deadline: float) -> ParsedResponse | OpenStream:
        """One attempt with its bookkeeping: in-flight count, statistics, the context's attempt count."""
        ctx.attempts += 1
        ctx.deployment, ctx.provider = target.id, target.provider.name
        stats = self.stats
        stats.acquire(target.id)
        started = time.perf_counter()
        held = False
        # The half-open probe's slot is freed by whatever ends this attempt: a verdict (observe) or,
        # for an answer that says nothing about the deployment, release_probe.
        row = stats.get(target.id)
        probe = row is not None and 0 < row["open_until"] <= stats.clock()  # half-open: this is its probe
        try:
            if stream:
                opened = await self._stream_attempt(ctx, target, deadline)
                probe = False
                stats.observe(ctx, target.id, route.config, ok=True, ttft=time.perf_counter() - started)
                ctx.route_held, held = target.id, True  # released when the stream settles
                return opened
            parsed = await self._attempt(ctx, target, deadline)
            tokens = parsed.usage.completion_tokens if parsed.usage is not None else 0
            probe = False
            stats.observe(ctx, target.id, route.config, ok=True, latency=time.perf_counter() - started,
                          tokens=tokens)
            return parsed
        except GatewayError as error:
            if self.metrics is not None:  # --- observability ---
                self.metrics.child(self.metrics.upstream_errors, target.provider.name, target.id,
                                   error.error_type).inc()
            if counts_against(error):
                probe = False
                elapsed = time.perf_counter() - started
                timed_out = isinstance(error, UpstreamTimeoutError)
                retry_after = getattr(error, "retry_after", None)
                stats.observe(ctx, target.id, route.config, ok=False,
                              latency=elapsed if timed_out and not stream else -1.0,
                              ttft=elapsed if timed_out and stream else -1.0,
                              retry_after=float(retry_after) if error.http_status == 429 and retry_after else -1.0)
            raise
        finally:
            if not held:
                stats.release(target.id)
            if probe:
                stats.release_probe(ctx, target.id, route.config)

    def _send_timeout(self, target: Target, deadline: float) -> float:
        return min(target.timeout, deadline - time.monotonic())

    async def _attempt(self, ctx: RequestContext, target: Target, deadline: float) -> ParsedResponse:
        provider = target.provider
        request, native = _build(ctx, target, stream=False)
        provider.credentials.apply(request)
        started = time.perf_counter()
        clock: _WireClock | None = None
        try:
            async with asyncio.timeout(self._send_timeout(target, deadline)) as window:
                clock = _WireClock(window, None)
                response = await self.pool.client(provider.name).send(request, clock)
                body = await response.read()
        except TimeoutError:
            _raise_if_waiting_for_pool(clock, target)
            raise UpstreamTimeoutError(f"The provider for '{target.id}' did not answer in time.") from None
        finally:
            ctx.upstream_seconds += time.perf_counter() - started
        if response.status >= 400:
            raise self._upstream_failure(ctx, provider, response.status, body, response.headers, native)
        if native:
            return ParsedResponse(data={}, body=body, usage=dialect(ctx.dialect).usage_of_body(body), native=True)
        return provider.adapter.parse_response(ctx.operation, response.status, body, request=ctx.body,
                                               model=target.deployment.model)

    async def _stream_attempt(self, ctx: RequestContext, target: Target, deadline: float) -> OpenStream:
        provider = target.provider
        request, native = _build(ctx, target, stream=True)
        provider.credentials.apply(request)
        translator: StreamTranslator = PassthroughStream(dialect(ctx.dialect).usage_reader(),
                                                         self.redactor.body) if native else \
            provider.adapter.stream_translator(ctx.operation, client_wants_usage=ctx.client_wants_usage,
                                               model=target.deployment.model)
        seconds = self._send_timeout(target, deadline)
        attempt_end = time.monotonic() + seconds  # the alias's timeout bounds the stream
        started = time.perf_counter()
        response: UpstreamResponse | None = None
        clock: _WireClock | None = None
        try:
            async with asyncio.timeout(seconds) as window:
                clock = _WireClock(window, target.ttft_timeout)
                response = await self.pool.client(provider.name).send(request, clock)
                if response.status >= 400:
                    body = await response.read()
                    raise self._upstream_failure(ctx, provider, response.status, body, response.headers, native)
                chunks = response.chunks().__aiter__()
                first = await first_output(chunks, translator, self.redactor)
        except TimeoutError:
            if response is not None:
                response.close()
            _raise_if_waiting_for_pool(clock, target)
            what = "its first token" if target.ttft_timeout is not None else "an answer"
            raise UpstreamTimeoutError(f"The provider for '{target.id}' did not send {what} in time.") from None
        except BaseException:
            if response is not None:
                response.close()
            raise
        finally:
            ctx.upstream_seconds += time.perf_counter() - started
        ctx.first_byte_at = time.perf_counter()
        idle = self.table.routes[target.alias].config.stream_idle_timeout
        ticker = self._stream_clock
        if ticker is None:
            ticker = self._stream_clock = StreamClock()
        bound = StreamBound(ticker, target.id, attempt_end - time.monotonic(), idle)
        return OpenStream(first, rest(chunks, translator, self.redactor, bound), translator, response, target, native)

    def _upstream_failure(self, ctx: RequestContext, provider: Provider, status: int, body: bytes,
                          headers: Mapping[str, str], native: bool) -> GatewayError:
        """An upstream error answer as the gateway's error, its text cleaned of the config's secrets
        (the body before it is parsed, cut or passed on as it is, the message after JSON unescaping)."""
        redactor = self.redactor
        body = redactor.body(body)
        return _upstream_error(provider, redactor.error(_parse_error(ctx, provider, status, body, headers, native)))


def _build(ctx: RequestContext, target: Target, *, stream: bool) -> tuple[UpstreamRequest, bool]:
    """The attempt's upstream request, and whether it is the client's own body: a deployment that
    speaks the client's dialect takes it as sent (only the model replaced); any other gets the
    canonical request translated by its adapter."""
    provider = target.provider
    if ctx.native is not None and ctx.native.passthrough and provider.speaker is not None:
        request = provider.speaker.native_request(ctx.native, target.deployment.model, stream=stream)
        if request is not None:
            return request, True
    if ctx.untranslatable is not None and not target.drop_unsupported:
        raise ctx.untranslatable  # (an alias that drops unsupported parameters sends what translates)
    request = provider.adapter.build_request(ctx.operation, _with_params(ctx, target), target.deployment.model,
                                             stream=stream, drop_unsupported_params=target.drop_unsupported)
    return request, False


def _parse_error(ctx: RequestContext, provider: Provider, status: int, body: bytes, headers: Mapping[str, str],
                 native: bool) -> GatewayError:
    error = provider.adapter.parse_error(status, body, headers)
    if native:  # the client speaks this provider's API: it may get the answer as the provider wrote it
        error.native_answer = (ctx.dialect, status, body)
    return error


class _WireClock:
    """Called by the upstream client once the attempt holds a connection: only then does the
    first-token clock start. Time spent before, waiting for a free connection in the provider's
    pool, is the gateway's congestion, bounded by the attempt's overall deadline alone."""

    __slots__ = ("on_wire", "ttft", "window")

    def __init__(self, window: asyncio.Timeout, ttft: float | None) -> None:
        self.window = window
        self.ttft = ttft
        self.on_wire = False

    def __call__(self) -> None:
        self.on_wire = True
        if self.ttft is not None:
            first = asyncio.get_running_loop().time() + self.ttft
            overall = self.window.when()
            self.window.reschedule(first if overall is None else min(overall, first))


def _raise_if_waiting_for_pool(clock: _WireClock | None, target: Target) -> None:
    if clock is not None and not clock.on_wire:
        raise UpstreamPoolTimeoutError(f"No connection to the provider for '{target.id}' came free in time "
                                       "(its pool_size is reached).") from None


def _upstream_error(provider: Provider, error: GatewayError) -> GatewayError:
    """A provider refusing the gateway's own credentials (401, 403, 407) is the gateway's problem, not
    the client's: it must not reach the client as an authentication error about its key (the OpenAI
    SDK would raise AuthenticationError for a key that is fine), nor echo the provider's message
    (which quotes part of the provider key). It becomes a 502 naming the provider, eligible for
    fallback and cooldown; the provider's own message goes to the log."""
    if error.http_status not in (401, 403, 407):
        return error
    log.warning("provider refused the gateway's credentials",
                extra={"fields": {"provider": provider.name, "status": error.http_status, "upstream": error.message}})
    return UpstreamAuthError(f"The provider '{provider.name}' refused the gateway's credentials "
                             f"(HTTP {error.http_status}); the gateway's operators have to fix its key.")


def _with_params(ctx: RequestContext, target: Target) -> dict[str, object]:
    params = target.deployment.params
    return {**params, **ctx.body} if params else ctx.body
