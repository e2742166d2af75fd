"""The accounting stage (its logic lives in the rest of this package): budget reservation at admit; usage →
cost → spend, budget reconciliation and the usage-log record at settle, in the pipeline's one settle
batch.

Writes the store did not take (down, slow, or refusing one op) wait in the retry queue
(retry.py), which sends them on its own timer. A reservation that timed out is
settled as if it was not applied, and released in the same batch if it was."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.accounting.budgets import BudgetHold, BudgetPlan, Rule
from gateway.accounting.estimate import estimate_usage, text_of_body, text_of_sse, unpacked
from gateway.accounting.prices import PriceTable, UnitPrice, deployment_prices, format_usd
from gateway.accounting.records import UsageRecord
from gateway.accounting.retry import RetryQueue
from gateway.accounting.store import BUDGET_ADJUST, BUDGET_RELEASE, SPEND_ADD, USAGE_APPEND, AccountingStore
from gateway.config import GatewayConfig
from gateway.context import JSONReply, Reply, RequestContext, Usage
from gateway.errors import BudgetExceededError, GatewayError, StoreUnavailableError
from gateway.ids import UniqueIds
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.store import StoreOp
from gateway.tokens import TokenCounter

log = get_logger("accounting")

COST_HEADER = "x-gateway-cost-usd"
# Spend hashes are kept this long (the admin API reads them per day).
SPEND_RETENTION_SECONDS = 400 * 86400


@dataclass(slots=True)
class _State:
    hold: BudgetHold | None = None
    # Names this call's writes (and its budget reservation) so the store applies each at most once.
    call: str = ""
    # (usage, cost, saved) as annotate priced the call for an answer that left before its settle.
    priced: tuple[Usage, int | None, int] | None = None


class AccountingStage:
    name = "accounting"
    dialects: frozenset[str] | None = None

    def __init__(self, *, prices: dict[str, UnitPrice | None], reserve_prices: dict[str, UnitPrice | None],
                 budgets: BudgetPlan, store: AccountingStore, tokens: TokenCounter, metrics: Metrics, retry: RetryQueue,
                 fail_closed: bool = False, usage_log_maxlen: int = 1_000_000,
                 reserve_completion_tokens: int = 256, clock: Callable[[], float] = time.time,
                 fallbacks: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.prices = prices
        self.reserve_prices = reserve_prices
        # alias → the other aliases its calls may fall back to (a reservation covers the dearest the
        # caller's key may use).
        self.fallbacks = fallbacks or {}
        self.budgets = budgets
        self.store = store
        self.tokens = tokens
        self.metrics = metrics
        self.retry = retry
        self.fail_closed = fail_closed
        self.maxlen = usage_log_maxlen
        self.reserve_completion_tokens = reserve_completion_tokens
        self.clock = clock
        self._dims: dict[tuple[str, str, str, str, str], tuple[str, ...]] = {}
        # The deployments already logged as unpriced.
        self._unpriced_logged: set[tuple[str, str]] = set()

    # admit -------------------------------------------------------------------------------------
    async def admit(self, ctx: RequestContext) -> None:
        if ctx.stream and ctx.capture is None:
            ctx.capture = []  # shared with any other stage observing the stream
        rules = self.budgets.rules_for(ctx.principal)
        if not rules:
            return None
        ctx.settle_before_reply = True  # the next call's budget check must see this call's real cost
        tag, counters, ttl = self.budgets.counters(ctx.principal, rules, self.clock())
        amount = self.reservation(ctx)
        call = _write_id()
        try:
            refused = await self.store.budget_reserve(tag, counters, [r.limit_micro for r in rules], amount, ttl,
                                                      call)
        except StoreUnavailableError:
            self.metrics.child(self.metrics.store_errors, "budget").inc()
            # The store may still apply the reservation: settle releases it if it did.
            hold = BudgetHold(tag, counters, 0, ttl, uncertain=amount > 0)
            if self.fail_closed:  # refused here, so never settled: the retry queue sends the release
                if hold.uncertain:
                    self.retry.push([(_release(call, hold),)], StoreUnavailableError("budget reserve timed out"))
                raise
            ctx.accounting = _State(hold, call)
            return None  # fail open: reconcile adds the real cost
        if refused:
            rule = rules[refused - 1]
            self.metrics.child(self.metrics.budget_rejections, rule.scope).inc()
            raise BudgetExceededError(_refusal(rule))
        ctx.accounting = _State(BudgetHold(tag, counters, amount, ttl), call)
        return None

    def reservation(self, ctx: RequestContext) -> int:
        """The call's estimated cost at the dearest price it may run at (its alias's deployments and
        those of the fallbacks its key may use): the prompt counted, plus max_tokens (or the
        configured default) of completion. 0 when no price is known."""
        own = self.reserve_prices.get(ctx.alias)
        prices = [own] if own is not None else []
        for alias in self.fallbacks.get(ctx.alias, ()):  # the fallbacks this key may use (see router)
            other = self.reserve_prices.get(alias)
            if other is not None and ctx.principal.may_use(alias):
                prices.append(other)
        if not prices:
            return 0
        prompt, _ = self.tokens.count_prompt(ctx.operation.value, ctx.body, _model_hint(ctx))
        limit = ctx.body.get("max_completion_tokens") or ctx.body.get("max_tokens")
        completion = limit if isinstance(limit, int) else self.reserve_completion_tokens
        usage = Usage(prompt_tokens=prompt, completion_tokens=completion)
        return max(price.cost_micro(usage) for price in prices)

    # settle ------------------------------------------------------------------------------------
    def settle(self, ctx: RequestContext, reply: Reply | None, error: GatewayError | None) -> Sequence[StoreOp]:
        state = _state(ctx)
        if not state.call:
            state.call = _write_id()  # not the request id: clients may send the same one twice
        hold = state.hold
        if ctx.attempts > 0 or ctx.cache_hit:
            return self._account(ctx, reply, state)
        if hold is None:
            return ()
        if hold.uncertain:
            return (_release(state.call, hold),)
        return (_adjust(state.call, hold, -hold.reserved),) if hold.reserved else ()  # no call: release it

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None:
        """`ops`: this call's writes the store did not take (all of them, or those it refused)."""
        if ops:
            self.retry.push([tuple(ops)], error)

    def annotate(self, ctx: RequestContext, reply: JSONReply | None, error: GatewayError | None) -> None:
        """For an answer whose settle comes later (the pipeline calls this first): a JSON answer's
        cost header, and the call's cost for the access log (written before that settle). The
        settle bills the call at the price found here."""
        if not (ctx.attempts > 0 or ctx.cache_hit) or (reply is not None and reply.status != 200):
            return
        priced = _state(ctx).priced = self._priced(ctx, reply)  # (reply None: a stream that ended)
        ctx.cost_micro_usd = priced[1]
        if reply is not None:
            reply.headers[COST_HEADER] = format_usd(priced[1])

    def _priced(self, ctx: RequestContext, reply: Reply | None) -> tuple[Usage, int | None, int]:
        """(usage, cost, saved) of the call, in micro-USD. An estimated usage is kept in ctx.usage (and
        counted)."""
        usage = self._usage(ctx, reply)
        deployment = ctx.deployment or ""
        price = self.prices.get(deployment) if deployment else self.reserve_prices.get(ctx.alias)
        if ctx.cache_hit:
            return usage, 0, price.cost_micro(usage) if price is not None else 0
        return usage, price.cost_micro(usage) if price is not None else None, 0

    def _account(self, ctx: RequestContext, reply: Reply | None, state: _State) -> list[StoreOp]:
        call = state.call
        if state.priced is not None:  # annotated: the answer has left with its cost
            usage, cost, saved = state.priced
        else:
            usage, cost, saved = self._priced(ctx, reply)
            if isinstance(reply, JSONReply) and reply.status == 200:
                reply.headers[COST_HEADER] = format_usd(cost)
        deployment = ctx.deployment or ""
        self._observe(ctx, usage, cost, saved)
        ctx.cost_micro_usd = cost  # --- observability ---
        now = self.clock()
        latency_ms = int(((ctx.finished_at or time.perf_counter()) - ctx.started) * 1000)
        record = self._record(ctx, now, deployment, ctx.status, usage, cost, saved, latency_ms, hedge=False)
        day = self.budgets.periods(now).day
        ops = self._writes(call, day, record, 0)
        total = cost or 0
        for n, loser in enumerate(ctx.cancelled_attempts, 1):
            # A hedged attempt cancelled before its first token: the provider read the prompt.
            prompt, _ = self.tokens.count_prompt(ctx.operation.value, ctx.body, loser.rsplit("/", 1)[-1])
            hedge_usage = Usage(prompt_tokens=prompt, estimated=True)
            hedge_price = self.prices.get(loser)
            hedge_cost = hedge_price.cost_micro(hedge_usage) if hedge_price is not None else None
            self._observe_hedge(ctx.alias, loser, hedge_cost)
            ops += self._writes(call, day, self._record(ctx, now, loser, 499, hedge_usage, hedge_cost, 0, latency_ms,
                                                  hedge=True), n)
            total += hedge_cost or 0
        hold = state.hold
        if hold is not None:
            if hold.uncertain:
                ops.append(_release(call, hold))
            delta = total - hold.reserved
            if delta:
                ops.append(_adjust(call, hold, delta))
        return ops

    def _record(self, ctx: RequestContext, now: float, deployment: str, status: int, usage: Usage,
                cost: int | None, saved: int, latency_ms: int, *, hedge: bool) -> UsageRecord:
        principal = ctx.principal
        return UsageRecord(
            ts=int(now * 1000), request_id=ctx.request_id, key=principal.name, team=principal.team or "",
            alias=ctx.alias, deployment=deployment, provider=ctx.provider or "", stream=ctx.stream,
            status=status, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens, cost_micro_usd=cost,
            saved_micro_usd=saved, estimated=usage.estimated, cache_hit=ctx.cache_hit and not hedge,
            latency_ms=latency_ms, hedge=hedge, key_id=principal.key_id)

    def _writes(self, call: str, day: str, record: UsageRecord, n: int) -> list[StoreOp]:
        """The spend and usage-log writes of one record, the `n`th of the call (hedges add some)."""
        names = (record.key_id, record.key, record.team, record.alias, record.deployment)
        dims = self._dims.get(names)
        if dims is None:
            if len(self._dims) > 10_000:  # names come from the config, but stay bounded regardless
                self._dims.clear()
            dims = self._dims[names] = spend_dims(*names)
        return [SPEND_ADD.once((call, f"s{n}"), day, SPEND_RETENTION_SECONDS, dims, spend_metrics(record)),
                USAGE_APPEND.once((call, f"u{n}"), record.fields(), self.maxlen)]

    def _observe_hedge(self, alias: str, deployment: str, cost: int | None) -> None:
        if cost is None:
            self.metrics.child(self.metrics.unpriced_calls, alias, deployment).inc()
        elif cost:
            self.metrics.child(self.metrics.cost_usd, alias, deployment).inc(cost / 1_000_000)

    def _usage(self, ctx: RequestContext, reply: Reply | None) -> Usage:
        usage = ctx.usage
        if ctx.cache_hit:
            return usage or Usage()
        if ctx.stream:
            if ctx.stream_complete and usage is not None:
                return usage
            if not ctx.capture and not ctx.capture_packed and usage is None:
                return Usage()  # failed before the first byte: nothing consumed
            text = text_of_sse(unpacked(ctx.capture_packed, ctx.capture or []))
        else:
            if usage is not None:
                return usage
            if not isinstance(reply, JSONReply) or reply.status != 200:
                return Usage()
            text = text_of_body(reply.body)
        counted = estimate_usage(self.tokens, ctx.operation.value, ctx.body, _model_hint(ctx), text, usage)
        ctx.usage = counted  # the pipeline's token metrics count it too
        self.metrics.child(self.metrics.estimated_usage, ctx.alias).inc()
        return counted

    def _observe(self, ctx: RequestContext, usage: Usage, cost: int | None, saved: int) -> None:
        m = self.metrics
        deployment = ctx.deployment or ""
        series = m.call_series(ctx.alias, deployment, ctx.stream)
        if cost is None:
            series.unpriced.inc()
            labels = (ctx.alias, deployment)
            if labels not in self._unpriced_logged:  # once per deployment and config; the metric counts
                self._unpriced_logged.add(labels)
                log.warning("call cost unknown: no price for the deployment",
                            extra={"fields": {"alias": ctx.alias, "deployment": deployment,
                                              "request_id": ctx.request_id}})
        elif cost:
            series.cost.inc(cost / 1_000_000)
            # --- observability ---
            m.team_series(ctx.principal.name, ctx.principal.team).cost.inc(cost / 1_000_000)
            # --- end observability ---
        if saved:
            m.child(m.cache_saved_usd, ctx.alias).inc(saved / 1_000_000)
        if usage.cached_tokens and deployment:
            m.child(m.tokens, ctx.alias, deployment, "cached").inc(usage.cached_tokens)
        if usage.cache_write_tokens and deployment:
            m.child(m.tokens, ctx.alias, deployment, "cache_write").inc(usage.cache_write_tokens)

    # streams -----------------------------------------------------------------------------------
    def annotate_stream(self, ctx: RequestContext, usage: Usage | None, out: bytes) -> bytes:
        """Add `cost` (USD, null when unknown) to the usage object of the client's final usage chunk."""
        if usage is None:
            return out
        price = self.prices.get(ctx.deployment or "")
        cost = price.cost_micro(usage) / 1_000_000 if price is not None else None
        return add_usage_fields(out, {"cost": cost})


def _state(ctx: RequestContext) -> _State:
    """The call's accounting state (made here for a call that reserved no budget)."""
    state = ctx.accounting
    if not isinstance(state, _State):
        state = ctx.accounting = _State()
    return state


def add_usage_fields(out: bytes, extra: dict[str, Any]) -> bytes:
    events = out.split(b"\n\n")
    for i, event in enumerate(events):
        if not event.startswith(b"data: {") or b'"usage"' not in event:
            continue
        try:
            chunk = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            continue
        usage = chunk.get("usage") if isinstance(chunk, dict) else None
        if isinstance(usage, dict):
            usage.update(extra)
            events[i] = b"data: " + orjson.dumps(chunk)
    return b"\n\n".join(events)


def spend_metrics(record: UsageRecord) -> list[tuple[str, int]]:
    """What this call adds to each of its dimensions in the day's spend hash (zeros left out)."""
    # A hedged attempt that lost is spend, not another request of the client's.
    metrics: list[tuple[str, int]] = [("hedges" if record.hedge else "requests", 1)]
    cost = record.cost_micro_usd
    if cost is None:
        metrics.append(("unpriced", 1))
    elif cost:
        metrics.append(("cost", cost))
    if record.prompt_tokens:
        metrics.append(("prompt_tokens", record.prompt_tokens))
    if record.completion_tokens:
        metrics.append(("completion_tokens", record.completion_tokens))
    if record.cached_tokens:
        metrics.append(("cached_tokens", record.cached_tokens))
    if record.cache_write_tokens:
        metrics.append(("cache_write_tokens", record.cache_write_tokens))
    if record.estimated:
        metrics.append(("estimated", 1))
    if record.cache_hit:
        metrics.append(("cache_hits", 1))
    if record.saved_micro_usd:
        metrics.append(("saved", record.saved_micro_usd))
    return metrics


def spend_dims(key_id: str, key: str, team: str, alias: str, deployment: str) -> tuple[str, ...]:
    """The spend-hash dimensions of a call: `key|<key id>|<name>` (the anonymous caller: `key|<name>`),
    `team|<name>`, `alias|…`, `deployment|…`. A key's row is its identity: two keys of one name never
    share it; the name rides along for reports."""
    dims = [f"key|{key_id}|{key}" if key_id else f"key|{key}"]
    if team:
        dims.append(f"team|{team}")
    dims.append(f"alias|{alias}")
    if deployment:
        dims.append(f"deployment|{deployment}")
    return tuple(dims)


def _adjust(call: str, hold: BudgetHold, delta: int) -> StoreOp:
    return BUDGET_ADJUST.once((call, "b"), hold.tag, hold.counters, delta, hold.ttl)


def _release(call: str, hold: BudgetHold) -> StoreOp:
    """Take back the call's reservation if the store applied it after all (see BudgetHold.uncertain)."""
    return BUDGET_RELEASE.once((call, "r"), hold.tag, hold.counters, call)


# Names a call's writes so a store can apply a re-sent write at most once (see BatchWrite.once).
_write_id = UniqueIds(random_bytes=8)


def _model_hint(ctx: RequestContext) -> str:
    return ctx.deployment.rsplit("/", 1)[-1] if ctx.deployment else ctx.alias


def _refusal(rule: Rule) -> str:
    who = f"key '{rule.name}'" if rule.scope == "key" else f"team '{rule.name}'"
    return (f"The {who} has used its budget of ${rule.usd:g} per {rule.period}. "
            f"It resets at the start of the next {rule.period} (UTC).")


def build_stage(config: GatewayConfig, table: PriceTable, *, store: AccountingStore, tokens: TokenCounter,
                metrics: Metrics, retry: RetryQueue, clock: Callable[[], float] = time.time) -> AccountingStage:
    """The stage for one config: prices resolved per deployment, the dearest per alias for reservations."""
    prices = deployment_prices(config, table)
    reserve: dict[str, UnitPrice | None] = {}
    for alias, spec in config.models.items():
        known = [p for d in spec.deployments if (p := prices.get(d.id)) is not None]
        reserve[alias] = max(known, key=lambda p: (p.input + p.output, p.input)) if known else None
    for deployment, price in prices.items():
        if price is None:
            log.warning("no price for deployment; its cost will be reported as unknown",
                        extra={"fields": {"deployment": deployment}})
    acct = config.accounting
    return AccountingStage(prices=prices, reserve_prices=reserve, budgets=BudgetPlan(config.auth), store=store,
                           tokens=tokens, metrics=metrics, retry=retry,
                           fail_closed=config.store.failure_policy == "fail_closed",
                           usage_log_maxlen=acct.usage_log_maxlen,
                           reserve_completion_tokens=acct.reserve_completion_tokens, clock=clock,
                           fallbacks={alias: reachable_fallbacks(config, alias) for alias in config.models})


def reachable_fallbacks(config: GatewayConfig, alias: str) -> tuple[str, ...]:
    """The aliases a call to `alias` may end up on, as the router walks them: its `fallbacks`, and
    from any alias reached, its `context_window_fallbacks` (over and over)."""
    models = config.models
    reached = [alias, *models[alias].fallbacks]
    i = 0
    while i < len(reached):
        reached.extend(a for a in models[reached[i]].context_window_fallbacks if a not in reached)
        i += 1
    return tuple(dict.fromkeys(a for a in reached[1:] if a != alias))
