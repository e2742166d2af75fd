"""The routing statistics cache: refresh at most once per TTL, survive store failures, keep local
observations that are not yet in the store, and hand the settle batch one op per request."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gateway.config import AliasConfig
from gateway.context import RequestContext
from gateway.errors import StoreUnavailableError
from gateway.metrics import Metrics
from gateway.routing import health
from gateway.routing.stats import RoutingStats
from gateway.schemas import Operation
from gateway.store.memory import MemoryStore

CONFIG = AliasConfig.model_validate({"deployments": [{"provider": "p", "model": "m"}],
                                     "cooldown": {"failures": 2, "base": "10s"}})


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class Failing:
    async def routing_read(self, ids: Sequence[str]) -> dict[str, dict[str, float]]:
        raise StoreUnavailableError("down")

    async def routing_claim_probe(self, dep: str, now: float, ttl: float) -> bool:
        raise StoreUnavailableError("down")

    def routing_forget_scripts(self) -> None:
        return None


def ctx() -> RequestContext:
    return RequestContext(request_id="r", operation=Operation.CHAT, body={}, alias="a", stream=False, headers={})


async def test_refresh_once_per_ttl_and_local_observations_survive_it() -> None:
    store, clock = MemoryStore(), Clock()
    stats = RoutingStats(store, clock=clock)
    c = ctx()
    stats.observe(c, "p/m", CONFIG, ok=False)
    stats.observe(c, "p/m", CONFIG, ok=False)
    assert health.state(stats, "p/m", clock.now) == health.OPEN
    await stats.refresh("a", ["p/m"])  # the store has not seen them yet: still open here
    assert health.state(stats, "p/m", clock.now) == health.OPEN
    ops = stats.settle_ops(c)
    assert len(ops) == 1 and len(ops[0].args[0]) == 2  # one op for every attempt of the request
    await store.run_batch(ops)
    clock.now += 0.5
    await stats.refresh("a", ["p/m"])  # within the TTL: no read
    clock.now += 1.0
    await stats.refresh("a", ["p/m"])
    row = stats.get("p/m")
    assert row is not None and row["n"] == 2 and row["open_until"] == pytest.approx(110.0)


async def test_a_failing_store_keeps_the_cache_and_lets_the_probe_through() -> None:
    clock, metrics = Clock(), Metrics()
    stats = RoutingStats(Failing(), clock=clock, metrics=metrics)
    c = ctx()
    for _ in range(2):
        stats.observe(c, "p/m", CONFIG, ok=False)
    await stats.refresh("a", ["p/m"])
    assert health.state(stats, "p/m", clock.now) == health.OPEN
    clock.now += 10
    assert await health.may_send(stats, "p/m", clock.now)  # half-open: the probe goes
    assert not await health.may_send(stats, "p/m", clock.now)  # and only one
    text = metrics.exposition().decode()
    assert 'gateway_store_errors_total{operation="routing_read"} 1.0' in text
    assert 'gateway_routing_circuit_state{deployment="p/m"} 2.0' in text
