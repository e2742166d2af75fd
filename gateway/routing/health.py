"""Cooldowns as a circuit breaker, on the shared statistics.

closed → (N retryable failures within the window, or a 429 with Retry-After) → open for a cooldown
(base, doubling on each consecutive opening, capped at max; a Retry-After sets it) → half-open once
the cooldown has passed: exactly one request (across all replicas, claimed atomically in the store)
probes it; success closes the circuit and resets the cooldown, failure reopens it for longer.

The transitions themselves run in the store (`gateway.routing.observations.apply_observation` and its Lua
twin) so that failures from every replica count towards the same window.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.errors import GatewayError
from gateway.routing.stats import PROBE_TTL, RoutingStats, circuit_code

CLOSED, HALF_OPEN, OPEN = 0, 1, 2


def state(stats: RoutingStats, dep: str, now: float) -> int:
    h = stats.get(dep)
    return CLOSED if h is None else circuit_code(h, now)


def available(stats: RoutingStats, dep: str, now: float) -> bool:
    """Not open (a half-open deployment is available to whoever wins its probe)."""
    return state(stats, dep, now) != OPEN


async def may_send(stats: RoutingStats, dep: str, now: float) -> bool:
    """Whether this attempt may go to `dep` now: closed → yes; open → no; half-open → only the one
    caller that claims the probe (one store round trip; a store failure lets the attempt through)."""
    code = state(stats, dep, now)
    if code == CLOSED:
        return True
    if code == OPEN:
        return False
    h = stats.get(dep)
    assert h is not None
    if h["probe_until"] > now:
        return False
    h["probe_until"] = now + PROBE_TTL  # locally taken at once: other requests here skip it
    if stats.store is None:
        return True
    try:
        return await stats.store.routing_claim_probe(dep, now, PROBE_TTL)
    except GatewayError as exc:
        stats.store_failed("routing_probe", exc)
        return True


def earliest_recovery(stats: RoutingStats, deps: Iterable[str], now: float) -> float | None:
    """When the first of these open deployments becomes half-open (None if none is open)."""
    best: float | None = None
    for dep in deps:
        h = stats.get(dep)
        if h is not None and h["open_until"] > now and (best is None or h["open_until"] < best):
            best = h["open_until"]
    return best
