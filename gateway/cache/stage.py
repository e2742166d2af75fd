"""The response cache as a pipeline stage.

admit: one store round trip that returns the entry, or on a miss takes the stampede lock (SET NX PX
in the same script). A hit answers at once in the form the client asked for; a miss whose lock is
held by another request (on any replica) polls, bounded by `lock_wait`, for that request's entry,
then goes upstream itself. settle: a complete, successful answer is stored (and the lock released)
as one op of the shared settle batch; streams are observed through `ctx.capture`.

A hit sets `ctx.cache_hit = True` and `ctx.usage` to the usage stored with the entry: accounting
records the hit and the cost it saved from those two. Store trouble makes the cache a pass-through:
the request goes upstream, a metric counts it and a rate-limited log line says so.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

from gateway.cache.control import Controls, parse_controls
from gateway.cache.convert import completion_to_stream, stream_to_completion
from gateway.cache.entry import DONE, Entry, Form, decode, encode, normalise_stream, usage_of_json
from gateway.cache.keys import canonical, digest, entry_key, lock_key, scope_id
from gateway.cache.policy import Policy, policies
from gateway.cache.store import CACHE_RELEASE, CACHE_STORE, CacheStore
from gateway.config import GatewayConfig
from gateway.context import JSONReply, Reply, RequestContext, StreamReply
from gateway.errors import GatewayError
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.store import StoreOp

log = get_logger("cache")

LOG_EVERY = 10.0  # seconds between two "store trouble" log lines
POLL_FIRST, POLL_MAX = 0.02, 0.25


@dataclass(slots=True)
class _State:
    policy: Policy
    entry_key: str
    lock_key: str
    token: str  # non-empty while this request holds the stampede lock
    ttl: float


async def _nothing() -> AsyncGenerator[bytes, None]:
    """The rest of a replayed stream: everything was sent as its first bytes."""
    empty: tuple[bytes, ...] = ()
    for piece in empty:
        yield piece


class CacheStage:
    name = "cache"
    dialects: frozenset[str] | None = None

    def __init__(self, store: CacheStore, metrics: Metrics, config: GatewayConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.metrics = metrics
        self.prefix = config.store.key_prefix
        self.policies = policies(config)
        self.clock = clock
        self._logged_at = -LOG_EVERY

    def _count(self, family: str, alias: str, label: str, amount: float = 1) -> None:
        self.metrics.child(getattr(self.metrics, family), alias, label).inc(amount)

    # --- admit ---------------------------------------------------------------------------------

    async def admit(self, ctx: RequestContext) -> Reply | None:
        policy = self.policies.get(ctx.alias)
        if policy is None:
            return None
        controls = parse_controls(ctx.headers)
        headers = ctx.response_headers
        if not controls.read and not controls.write:
            headers["x-gateway-cache"] = "BYPASS"
            self._count("cache_lookups", ctx.alias, "bypass")
            return None
        scope = scope_id(policy.scope, ctx.principal)
        if ctx.native is None:
            hashed = digest(scope, ctx.alias, ctx.operation.value, canonical(ctx.body))
        else:
            # Another dialect's answer is stored as its client received it, so streamed and not are
            # separate entries; its own body is the key (the canonical form may leave fields out).
            form = f"{ctx.dialect}.{'sse' if ctx.stream else 'json'}"
            hashed = digest(scope, ctx.alias, form, canonical(ctx.native.body))
        ttl = min(controls.ttl, policy.ttl) if controls.ttl else policy.ttl
        state = _State(policy, entry_key(self.prefix, hashed, policy.alias_id, scope), lock_key(self.prefix, hashed),
                       "", ttl)
        if not controls.read:  # no-cache: fetch afresh, refresh the entry
            headers["x-gateway-cache"] = "BYPASS"
            self._count("cache_lookups", ctx.alias, "bypass")
            self._observe(ctx, state)
            return None
        token = secrets.token_hex(8) if controls.write else ""
        try:
            raw, locked = await self.store.cache_lookup(state.entry_key, state.lock_key, token, policy.lock_ms)
        except Exception as exc:
            self._trouble(ctx, "lookup", exc)
            return None
        if raw is not None:
            reply = self._hit(ctx, raw, controls)
            if reply is not None:
                return reply
        elif token and not locked:
            reply = await self._wait(ctx, state, controls)
            if reply is not None:
                return reply
        state.token = token if locked else ""
        headers["x-gateway-cache"] = "MISS"
        self._count("cache_lookups", ctx.alias, "miss")
        if controls.write:
            self._observe(ctx, state)
        return None

    def _observe(self, ctx: RequestContext, state: _State) -> None:
        ctx.cache_state = state
        if ctx.stream:
            ctx.capture = []

    def _hit(self, ctx: RequestContext, raw: bytes, controls: Controls) -> Reply | None:
        """A reply from a stored entry, or None if it is expired or older than max-age."""
        entry = decode(raw)
        now = self.clock()
        if entry is None or now >= entry.expires_at:
            return None
        age = max(0.0, now - entry.stored_at)
        if controls.max_age is not None and age > controls.max_age:
            return None
        ctx.cache_hit = True
        ctx.usage = entry.usage
        headers = ctx.response_headers
        headers["x-gateway-cache"] = "HIT"
        headers["age"] = str(int(age))
        self._count("cache_lookups", ctx.alias, "hit")
        reply: Reply
        if ctx.native is not None:  # the client's own bytes, as they were first sent
            reply = StreamReply(headers, entry.body, _nothing(), complete=True) if ctx.stream \
                else JSONReply(200, entry.body, headers)
            body = entry.body
        elif ctx.stream:
            events, usage_event = (entry.events, entry.usage_event) if entry.form == "sse" \
                else completion_to_stream(entry.body)
            body = events + usage_event + DONE if ctx.client_wants_usage and usage_event else events + DONE
            reply = StreamReply(headers, body, _nothing(), complete=True)
        else:
            body = entry.body if entry.form == "json" else stream_to_completion(entry.events, entry.usage_event)
            reply = JSONReply(200, body, headers)
        self._count("cache_bytes", ctx.alias, "served", len(body))
        return reply

    async def _wait(self, ctx: RequestContext, state: _State, controls: Controls) -> Reply | None:
        """Another request computes this answer: poll for its entry until it lands, its lock goes
        away, or `lock_wait` passes."""
        deadline = time.monotonic() + state.policy.lock_wait
        pause = POLL_FIRST
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 1.5, POLL_MAX)
            try:
                raw, locked = await self.store.cache_poll(state.entry_key, state.lock_key)
            except Exception as exc:
                self._trouble(ctx, "poll", exc)
                return None
            if raw is not None:
                return self._hit(ctx, raw, controls)
            if not locked:
                return None
        return None

    def _trouble(self, ctx: RequestContext, what: str, exc: Exception) -> None:
        self._count("cache_lookups", ctx.alias, "error")
        self.metrics.child(self.metrics.store_errors, "cache").inc()
        ctx.response_headers["x-gateway-cache"] = "BYPASS"
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning("cache store unavailable: passing through",
                        extra={"fields": {"operation": what, "error": type(exc).__name__}})

    # --- settle --------------------------------------------------------------------------------

    def settle(self, ctx: RequestContext, reply: Reply | None, error: GatewayError | None) -> Sequence[StoreOp]:
        state = ctx.cache_state
        if not isinstance(state, _State) or ctx.cache_hit:
            return ()
        op = self._store_op(ctx, state, reply, error)
        if op is not None:
            return (op,)
        if state.token:
            return (CACHE_RELEASE(state.lock_key, state.token),)
        return ()

    def _store_op(self, ctx: RequestContext, state: _State, reply: Reply | None,
                  error: GatewayError | None) -> StoreOp | None:
        alias, policy = ctx.alias, state.policy
        if error is not None or ctx.status >= 400:
            self._count("cache_stores", alias, "not_cacheable")
            return None
        tail = 0
        form: Form
        reasons: Sequence[str]
        if ctx.native is not None:
            # Another dialect's answer: kept as its client received it, whole streams only.
            if ctx.stream and not ctx.stream_complete:
                self._count("cache_stores", alias, "not_cacheable")
                return None
            body = b"".join(ctx.capture or ()) if ctx.stream else reply.body if isinstance(reply, JSONReply) else b""
            reasons = ()
            form = "sse" if ctx.stream else "json"
        elif ctx.stream:
            captured = normalise_stream(ctx.capture or (), ctx.usage)
            if captured is None:
                self._count("cache_stores", alias, "not_cacheable")
                return None
            reasons = captured.finish_reasons
            body = captured.events + captured.usage_event
            tail = len(captured.usage_event)
            form = "sse"
        elif isinstance(reply, JSONReply) and reply.status == 200:
            body = reply.body
            reasons = usage_of_json(body)[1] if b'"length"' in body else ()
            form = "json"
        else:
            return None
        if not policy.cache_length_finish and "length" in reasons:
            self._count("cache_stores", alias, "not_cacheable")
            return None
        now = self.clock()
        value = encode(Entry(form, now, now + state.ttl, ctx.usage, body, tail))
        if len(value) > policy.max_entry_bytes:
            self._count("cache_stores", alias, "too_large")
            return None
        self._count("cache_stores", alias, "stored")
        self._count("cache_bytes", alias, "stored", len(value))
        return CACHE_STORE(state.entry_key, state.lock_key, state.token, value, max(1, int(state.ttl * 1000)))

    def annotate(self, ctx: RequestContext, reply: JSONReply | None, error: GatewayError | None) -> None:
        """Nothing of this stage's settle is needed by the answer itself."""

    def settle_failed(self, ctx: RequestContext, ops: Sequence[StoreOp], error: Exception) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning("cache entry not written: the store failed",
                        extra={"fields": {"request_id": ctx.request_id, "error": type(error).__name__}})
