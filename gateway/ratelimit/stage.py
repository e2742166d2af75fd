"""The rate-limit stage: reserve at admit (key, team and alias scopes in one store round trip),
reconcile at settle (one op in the shared settle batch), plus the router's per-attempt gate for
deployment scopes.

TPM reserves the prompt (counted with tiktoken, or estimated) plus the completion budget
(`max_completion_tokens`/`max_tokens` times `n`, or `limits_defaults.max_tokens_cap`); settle replaces
the reservation with the real usage. Successful replies carry OpenAI's `x-ratelimit-*` headers for
the tightest scope; a refusal is a 429 with `Retry-After` naming the scope and the limit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.config import GatewayConfig, Limits
from gateway.context import Principal, RequestContext
from gateway.errors import GatewayError, RateLimitError, StoreUnavailableError
from gateway.ids import UniqueIds
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.ratelimit.core import WINDOW_MS, Admitted, Decision, Refusal, ScopeLimits, ScopeState
from gateway.ratelimit.store import LIMITS_SETTLE, LimitStore
from gateway.store import StoreOp
from gateway.tokens import TokenCounter

log = get_logger("ratelimit")

SCOPE_KINDS = {"k": "key", "t": "team", "a": "alias", "d": "deployment"}
LIMIT_WORDS = {"requests": "requests per minute", "tokens": "tokens per minute",
               "concurrency": "concurrent requests", "requests_per_day": "requests per day",
               "tokens_per_day": "tokens per day"}


@dataclass(slots=True)
class LimitHold:
    """One reservation: the scopes it covers, its id, when it was made, the tokens it reserved."""

    scopes: tuple[ScopeLimits, ...]
    rid: str
    at_ms: int
    tokens: int


@dataclass(slots=True)
class Held:
    """Everything reserved for a request (ctx.ratelimit): the admit hold and per-attempt holds."""

    admit: LimitHold | None = None
    deployments: list[LimitHold] = field(default_factory=list)
    tokens: int = -1  # the request's reservation size, counted once


def scope_of(kind: str, name: str, limits: Limits | None, label: str | None = None) -> ScopeLimits | None:
    if limits is None:
        return None
    values = (limits.rpm or 0, limits.tpm or 0, limits.max_parallel or 0, limits.rpd or 0, limits.tpd or 0)
    if not any(values):
        return None
    return ScopeLimits(f"{kind}:{name}", f"{SCOPE_KINDS[kind]} '{label or name}'", *values)


class FailureReporter:
    """Store trouble under the failure policy: a metric every time, a log line at most every 10s."""

    def __init__(self, metrics: Metrics, policy: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self._next_log = 0.0
        self._suppressed = 0

    def report(self, operation: str, error: Exception) -> None:
        self.metrics.child(self.metrics.ratelimit_store_failures, operation, self.policy).inc()
        now = self.clock()
        if now < self._next_log:
            self._suppressed += 1
            return
        log.warning("rate-limit store unavailable; applying the failure policy",
                    extra={"fields": {"operation": operation, "policy": self.policy,
                                      "error": str(error), "suppressed": self._suppressed}})
        self._next_log = now + 10.0
        self._suppressed = 0


_reservation_ids = UniqueIds(random_bytes=6, start=0)


class RateLimiter:
    """Shared by the stage (admit/settle) and the router's deployment gate."""

    def __init__(self, config: GatewayConfig, store: LimitStore, tokens: TokenCounter, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.counter = tokens
        self.metrics = metrics
        self.clock = clock
        self.fail_closed = config.store.failure_policy == "fail_closed"
        self.failures = FailureReporter(metrics, config.store.failure_policy)
        self.cap = config.limits_defaults.max_tokens_cap
        ttl = config.limits_defaults.lease_ttl
        self.lease_ms = {alias: int(1000 * (ttl if ttl is not None else spec.timeout + 30.0))
                         for alias, spec in config.models.items()}
        self.teams = {name: team.limits for name, team in config.auth.teams.items()}
        self.aliases = {alias: scope_of("a", alias, spec.limits) for alias, spec in config.models.items()}
        self._plans: dict[tuple[str | None, str], tuple[Principal, tuple[ScopeLimits, ...]]] = {}
        self._deployments: dict[str, ScopeLimits | None] = {}
        # Reservation ids unique across replicas (never the client's request id, which it chooses).
        self.rid = _reservation_ids

    def plan(self, principal: Principal, alias: str) -> tuple[ScopeLimits, ...]:
        """The request's scopes, cached per (key, alias) until the key's Principal changes."""
        key = (principal.key_hash, alias)
        cached = self._plans.get(key)
        if cached is not None and cached[0] is principal:
            return cached[1]
        scopes = []
        if principal.key_hash is not None:
            scopes.append(scope_of("k", principal.key_hash[:24], principal.limits, principal.name))
        if principal.team is not None:
            scopes.append(scope_of("t", principal.team, self.teams.get(principal.team)))
        scopes.append(self.aliases.get(alias))
        plan = tuple(s for s in scopes if s is not None)
        if len(self._plans) > 100_000:
            self._plans.clear()
        self._plans[key] = (principal, plan)
        return plan

    def reservation(self, ctx: RequestContext) -> int:
        """Prompt tokens plus the completion budget."""
        body = ctx.body
        prompt, _ = self.counter.count_prompt(ctx.operation.value, body, ctx.alias)
        if ctx.operation.value == "embeddings":
            return prompt
        budget = body.get("max_completion_tokens") or body.get("max_tokens")
        completion = budget if isinstance(budget, int) and budget > 0 else self.cap
        n = body.get("n")
        return prompt + completion * (n if isinstance(n, int) and n > 1 else 1)

    async def reserve(self, ctx: RequestContext, scopes: tuple[ScopeLimits, ...], operation: str) -> LimitHold | None:
        """Reserve or raise RateLimitError; None when the store failed and the policy is fail_open."""
        held: Held | None = ctx.ratelimit
        if held is None:
            held = ctx.ratelimit = Held()
        tokens = 0
        if any(s.counts_tokens for s in scopes):  # count the prompt only when a token limit applies
            if held.tokens < 0:
                held.tokens = self.reservation(ctx)
            tokens = held.tokens
        rid = self.rid()
        now_ms = int(self.clock() * 1000)
        try:
            decision = await self.store.rl_reserve(scopes, rid, now_ms, tokens, self.lease_ms.get(ctx.alias, 630_000))
        except StoreUnavailableError as exc:
            self.failures.report(operation, exc)
            if self.fail_closed:
                raise
            return None
        if isinstance(decision, Refusal):
            raise self.refusal(scopes, decision, tokens)
        if not ctx.settle_before_reply and (tokens or any(s.max_parallel for s in scopes)):
            # The lease is released and the tokens reconciled at settle: before the answer, so the
            # client's next call sees them, whichever replica or worker it reaches.
            ctx.settle_before_reply = True
        set_headers(ctx.response_headers, scopes, decision, now_ms)
        return LimitHold(scopes, rid, now_ms, tokens)

    def refusal(self, scopes: tuple[ScopeLimits, ...], refusal: Refusal, tokens: int) -> RateLimitError:
        scope = scopes[refusal.index]
        limit = scope.values[("requests", "tokens", "concurrency", "requests_per_day",
                              "tokens_per_day").index(refusal.limit)]
        self.metrics.child(self.metrics.ratelimit_rejections, SCOPE_KINDS[scope.id[0]], refusal.limit).inc()
        if refusal.retry_after_ms < 0:
            retry = WINDOW_MS // 1000
            message = (f"Request too large for the {scope.label}: it reserves {tokens} tokens, the limit is "
                       f"{limit} {LIMIT_WORDS[refusal.limit]}. Lower max_tokens or shorten the prompt.")
        else:
            retry = max(1, math.ceil(refusal.retry_after_ms / 1000))
            message = (f"Rate limit reached for the {scope.label} on {LIMIT_WORDS[refusal.limit]}: "
                       f"limit {limit}. Please try again in {retry}s.")
        return RateLimitError(message, headers={"retry-after": str(retry)})

    def settle_ops(self, ctx: RequestContext) -> list[StoreOp]:
        held: Held | None = ctx.ratelimit
        if held is None:
            return []
        usage = ctx.usage
        # Real usage when the provider reported it; an answer without usage (a stream cut before its
        # usage arrived, a provider that reports none) keeps its reservation; a request that failed
        # before producing anything, or a cache hit, is refunded.
        answered = ctx.first_byte_at is not None or (ctx.attempts > 0 and ctx.status < 400)
        actual = usage.total_tokens if usage is not None else None if answered else 0
        if ctx.cache_hit:  # answered from the response cache: no provider tokens were spent
            actual = 0
        ops = []
        if held.admit is not None:
            hold = held.admit
            ops.append(LIMITS_SETTLE(hold.scopes, hold.rid, hold.at_ms, hold.tokens,
                                     hold.tokens if actual is None else actual, True))
        last = len(held.deployments) - 1
        for i, hold in enumerate(held.deployments):
            # Attempts before the last one failed and generated nothing.
            charge = (hold.tokens if actual is None else actual) if i == last else 0
            ops.append(LIMITS_SETTLE(hold.scopes, hold.rid, hold.at_ms, hold.tokens, charge, True))
        return ops

    # --- the router's per-attempt gate (deployment scope) ---

    async def acquire(self, ctx: RequestContext, deployment: str, limits: Limits) -> GatewayError | None:
        """Reserve the deployment's own quota for one attempt; the error when it has no headroom."""
        if deployment in self._deployments:
            scope = self._deployments[deployment]
        else:
            scope = self._deployments[deployment] = scope_of("d", deployment, limits)
        if scope is None:
            return None
        try:
            hold = await self.reserve(ctx, (scope,), "deployment")
        except GatewayError as exc:
            return exc
        if hold is not None:
            ctx.ratelimit.deployments.append(hold)
        return None


class RateLimitStage:
    name = "ratelimit"
    dialects: frozenset[str] | None = None

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def admit(self, ctx: RequestContext) -> None:
        scopes = self.limiter.plan(ctx.principal, ctx.alias)
        if scopes:
            hold = await self.limiter.reserve(ctx, scopes, "reserve")
            if hold is not None:
                ctx.ratelimit.admit = hold
        return None

    def settle(self, ctx: RequestContext, reply: Any, error: GatewayError | None) -> Sequence[StoreOp]:
        return self.limiter.settle_ops(ctx)

    def annotate(self, ctx: RequestContext, reply: object, error: GatewayError | None) -> None:
        """Nothing of this stage's settle is needed by the answer itself."""

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None:
        # Lost reconciliations: tokens stay charged at their reservation, leases expire by their TTL.
        self.limiter.failures.report("settle", error)


# ---------------------------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------------------------


def set_headers(headers: dict[str, str], scopes: tuple[ScopeLimits, ...], decision: Admitted | Decision,
                now_ms: int) -> None:
    """OpenAI's x-ratelimit-* headers for the tightest request scope and the tightest token scope."""
    assert isinstance(decision, Admitted)
    best_r: tuple[int, ScopeLimits, ScopeState] | None = None
    best_t: tuple[int, ScopeLimits, ScopeState] | None = None
    for scope, state in zip(scopes, decision.states, strict=True):
        if scope.rpm:
            left = scope.rpm - state.requests
            if best_r is None or left < best_r[0]:
                best_r = (left, scope, state)
        if scope.tpm:
            left = scope.tpm - state.tokens
            if best_t is None or left < best_t[0]:
                best_t = (left, scope, state)
    if best_r is not None:
        left, scope, state = best_r
        headers["x-ratelimit-limit-requests"] = str(scope.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(0, left))
        headers["x-ratelimit-reset-requests"] = duration(state.oldest_ms + WINDOW_MS - now_ms)
    if best_t is not None:
        left, scope, state = best_t
        headers["x-ratelimit-limit-tokens"] = str(scope.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, left))
        headers["x-ratelimit-reset-tokens"] = duration(state.oldest_ms + WINDOW_MS - now_ms)


def duration(ms: int) -> str:
    """OpenAI's reset format (Go's duration notation): `20ms`, `1s`, `59.999s`, `1m0s`, `6m30.5s`.
    Seconds are never rounded up to 60: one span has exactly one spelling."""
    ms = max(0, ms)
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    seconds = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    return f"{minutes}m{seconds}" if minutes else seconds
