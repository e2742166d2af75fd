"""Live routing statistics: per-deployment peak-EWMA latency, TTFT, error rate and circuit state,
shared through the store so every replica (and a new one) routes on the same picture.

Reads: one store round trip per alias chain, at most once per `cache_ttl` (1 s) per replica, done in
the routing stage's admit step; selection then reads the local cache only. Writes: each attempt's
observation is applied to the local cache at once (so this replica reacts immediately) and queued on
the request context; the routing stage turns them into ONE op in the shared settle batch.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.config import AliasConfig
from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.routing.observations import RELEASE_PROBE, Observation, apply_observation, empty
from gateway.routing.store import ROUTING_OBSERVE, RoutingStore
from gateway.store import StoreOp

log = get_logger("routing")

# Peak-EWMA decay constant (seconds): how fast a sample's weight fades with time.
TAU = 10.0
CACHE_TTL = 1.0
# How long a half-open probe holds the single probe slot.
PROBE_TTL = 30.0
_LOG_EVERY = 10.0
_MAX_PENDING = 10_000


class RoutingStats:
    """Lives as long as the process (across config reloads): the cache, in-flight counts, the
    injectable clock (wall-clock seconds, shared meaning across replicas) and randomness."""

    def __init__(self, store: RoutingStore | None, *, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, metrics: Metrics | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 tau: float = TAU, cache_ttl: float = CACHE_TTL) -> None:
        self.store = store
        self.clock = clock
        # Waiting for a deployment's recovery goes through this, so a fake clock can advance instead.
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.metrics = metrics
        self.tau = tau
        self.cache_ttl = cache_ttl
        self._cache: dict[str, dict[str, float]] = {}
        self._fetched: dict[str, float] = {}
        self._inflight: dict[str, int] = {}
        self._inflight_series: dict[str, Any] = {}  # (each attempt updates its gauge twice)
        # Observations applied locally but not yet in the store (a stream's are written when it ends):
        # re-applied on top of every refresh so a fresh read does not undo them here.
        self._pending: dict[int, list[Observation]] = {}
        self._last_log = -_LOG_EVERY

    # --- reads ---------------------------------------------------------------------------------

    def get(self, dep: str) -> dict[str, float] | None:
        return self._cache.get(dep)

    def inflight(self, dep: str) -> int:
        return self._inflight.get(dep, 0)

    async def refresh(self, chain_key: str, ids: Sequence[str]) -> None:
        """Reload the chain's deployments from the store when the cached copy is older than the TTL.
        A store failure keeps the cached picture (routing never fails on statistics)."""
        now = self.clock()
        if self.store is None or now - self._fetched.get(chain_key, -1e18) < self.cache_ttl:
            return
        self._fetched[chain_key] = now
        try:
            fresh = await self.store.routing_read(ids)
        except GatewayError as exc:
            self.store_failed("routing_read", exc)
            return
        for observations in self._pending.values():
            for o in observations:
                row = fresh.get(o[0])
                if row is not None:
                    apply_observation(row, o)
        self._cache.update(fresh)
        if self.metrics is not None:
            for dep, h in fresh.items():
                self.metrics.set_circuit(dep, circuit_code(h, now))

    def store_failed(self, operation: str, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.child(self.metrics.store_errors, operation).inc()
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY:
            self._last_log = now
            log.warning("routing statistics unavailable; routing on cached values",
                        extra={"fields": {"operation": operation, "error": type(exc).__name__}})

    # --- in-flight -----------------------------------------------------------------------------

    def acquire(self, dep: str) -> None:
        self._inflight[dep] = self._inflight.get(dep, 0) + 1
        if self.metrics is not None:  # --- observability ---
            self._gauge(self.metrics, dep).inc()

    def release(self, dep: str) -> None:
        self._inflight[dep] = max(0, self._inflight.get(dep, 0) - 1)
        if self.metrics is not None:  # --- observability ---
            self._gauge(self.metrics, dep).dec()

    def _gauge(self, metrics: Metrics, dep: str) -> Any:
        series = self._inflight_series.get(dep)
        if series is None:
            series = self._inflight_series[dep] = metrics.child(metrics.deployment_in_flight, dep)
        return series

    # --- writes --------------------------------------------------------------------------------

    def observe(self, ctx: RequestContext, dep: str, config: AliasConfig, *, ok: bool,
                latency: float = -1.0, tokens: int = 0, ttft: float = -1.0, retry_after: float = -1.0) -> None:
        """One finished attempt. `latency` (non-streaming) is normalised per output token; `ttft`
        is a stream's time to first token."""
        now = self.clock()
        cd = config.cooldown
        per_token = latency / max(1, tokens) if latency >= 0 else -1.0
        obs: Observation = (dep, 1 if ok else 0, per_token, latency, ttft, retry_after, now, self.tau,
                            cd.failures, cd.window, cd.base, cd.max, cd.failure_rate, cd.min_calls)
        h = self._cache.get(dep)
        if h is None:
            h = self._cache[dep] = empty()
        else:
            h = self._cache[dep] = dict(h)  # copy-on-write: a concurrent reader keeps a coherent row
        apply_observation(h, obs)
        if not ctx.route_observations:
            if len(self._pending) >= _MAX_PENDING:  # requests that never settle (no routing stage)
                self._pending.clear()
            self._pending[id(ctx.route_observations)] = ctx.route_observations
        ctx.route_observations.append(obs)
        if self.metrics is not None:
            self.metrics.set_circuit(dep, circuit_code(h, now))

    def release_probe(self, ctx: RequestContext, dep: str, config: AliasConfig) -> None:
        """A half-open probe that ended without a verdict on the deployment (the request's own 4xx,
        or cancelled): its slot is freed here at once and in the store with the request's settle."""
        now = self.clock()
        cd = config.cooldown
        obs: Observation = (dep, RELEASE_PROBE, -1.0, -1.0, -1.0, -1.0, now, self.tau,
                            cd.failures, cd.window, cd.base, cd.max, cd.failure_rate, cd.min_calls)
        h = self._cache.get(dep)
        if h is not None:
            h = self._cache[dep] = dict(h)
            apply_observation(h, obs)
        if not ctx.route_observations:
            if len(self._pending) >= _MAX_PENDING:
                self._pending.clear()
            self._pending[id(ctx.route_observations)] = ctx.route_observations
        ctx.route_observations.append(obs)

    def settle_ops(self, ctx: RequestContext) -> list[StoreOp]:
        if not ctx.route_observations:
            return []
        self._pending.pop(id(ctx.route_observations), None)
        return [ROUTING_OBSERVE(tuple(ctx.route_observations))]


def circuit_code(h: dict[str, float], now: float) -> int:
    """0 closed, 1 half-open, 2 open (the gauge's value)."""
    until = h["open_until"]
    if until == 0:
        return 0
    return 2 if now < until else 1


def p95(h: dict[str, float] | None, stream: bool, min_samples: int = 3) -> float | None:
    """The deployment's recent p95 TTFT (streams) or duration (non-streaming): mean + 1.645 sd of
    the EWMA; None until it has a few samples."""
    if h is None:
        return None
    if stream:
        if h["ttft_n"] < min_samples:
            return None
        return float(h["ttft_m"] + 1.645 * h["ttft_v"] ** 0.5)
    if h["lat_n"] < min_samples:
        return None
    return float(h["dur_m"] + 1.645 * h["dur_v"] ** 0.5)
