"""The selection strategies are pure: a route, live statistics, a seeded rng → an order."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.routing.observations import apply_observation, empty
from gateway.routing.strategies import (
    cost_order,
    deployment_cost,
    latency_order,
    least_busy_order,
    order_for,
    priority_order,
    weighted_order,
)
from gateway.routing.table import RouteTable, Target


def table(deployments: str, strategy: str = "weighted") -> RouteTable:
    return RouteTable(parse_config(f"""
providers: {{p: {{type: mock}}, q: {{type: mock}}, r: {{type: mock}}}}
models:
  m:
    strategy: {strategy}
    deployments: {deployments}
"""))


THREE = "[{provider: p, model: a, weight: 3}, {provider: q, model: b, weight: 1}, {provider: r, model: c, weight: 1}]"


class Live:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, float]] = {}
        self.busy: dict[str, int] = {}

    def get(self, dep: str) -> dict[str, float] | None:
        return self.rows.get(dep)

    def inflight(self, dep: str) -> int:
        return self.busy.get(dep, 0)

    def sample(self, dep: str, now: float, *, lat: float = -1.0, ttft: float = -1.0, ok: bool = True) -> None:
        h = self.rows.setdefault(dep, empty())
        apply_observation(h, (dep, int(ok), lat, lat, ttft, -1.0, now, 10.0, 3, 60.0, 5.0, 300.0, 0.5, 20))


def ids(targets: list[Target]) -> list[str]:
    return [t.id for t in targets]


def test_weighted_first_picks_follow_the_weights() -> None:
    targets = table(THREE).routes["m"].targets
    rng = random.Random(7)
    counts = Counter(weighted_order(targets, rng)[0].id for _ in range(5000))
    assert counts["p/a"] / 5000 == pytest.approx(0.6, abs=0.03)
    assert counts["q/b"] / 5000 == pytest.approx(0.2, abs=0.03)


@given(seed=st.integers(0, 2**32))
def test_every_strategy_returns_a_permutation(seed: int) -> None:
    for strategy in ("weighted", "priority", "latency", "least-busy", "cost"):
        route = table(THREE, strategy).routes["m"]
        live = Live()
        rng = random.Random(seed)
        live.sample("q/b", 0.0, lat=rng.random())
        live.busy["r/c"] = rng.randrange(3)
        order = order_for(route, route.targets, rng, live, 1.0, rng.random() < 0.5, 10.0)
        assert sorted(ids(order)) == ["p/a", "q/b", "r/c"]


def test_priority_lowest_first_and_equal_priorities_share() -> None:
    targets = table("[{provider: p, model: a, priority: 1}, {provider: q, model: b, priority: 0},"
                    " {provider: r, model: c, priority: 0}]").routes["m"].targets
    rng = random.Random(1)
    firsts = Counter(priority_order(targets, rng)[0].id for _ in range(400))
    assert set(firsts) == {"q/b", "r/c"}
    assert all(priority_order(targets, rng)[-1].id == "p/a" for _ in range(50))


def test_latency_explores_unsampled_then_prefers_the_fast_one() -> None:
    targets = table(THREE, "latency").routes["m"].targets
    live, rng = Live(), random.Random(3)
    live.sample("p/a", 0.0, lat=0.01)
    live.sample("q/b", 0.0, lat=0.5)
    assert latency_order(targets, rng, live, 0.0, False, 10.0)[0].id == "r/c"  # never sampled: explore
    live.sample("r/c", 0.0, lat=0.4)
    firsts = Counter(latency_order(targets, rng, live, 0.0, False, 10.0)[0].id for _ in range(300))
    # Power of two choices: the slowest is never picked, the fastest wins every pair it is in.
    assert firsts["q/b"] == 0 and firsts["p/a"] > firsts["r/c"]


def test_latency_uses_ttft_for_streams_and_per_token_latency_otherwise() -> None:
    targets = table("[{provider: p, model: a}, {provider: q, model: b}]", "latency").routes["m"].targets
    live, rng = Live(), random.Random(0)
    live.sample("p/a", 0.0, lat=0.01, ttft=2.0)
    live.sample("q/b", 0.0, lat=0.05, ttft=0.1)
    assert latency_order(targets, rng, live, 0.0, False, 10.0)[0].id == "p/a"
    assert latency_order(targets, rng, live, 0.0, True, 10.0)[0].id == "q/b"


def test_latency_in_flight_and_errors_penalise() -> None:
    targets = table("[{provider: p, model: a}, {provider: q, model: b}]", "latency").routes["m"].targets
    live, rng = Live(), random.Random(0)
    live.sample("p/a", 0.0, lat=0.01)
    live.sample("q/b", 0.0, lat=0.015)
    assert latency_order(targets, rng, live, 0.0, False, 10.0)[0].id == "p/a"
    live.busy["p/a"] = 1
    assert latency_order(targets, rng, live, 0.0, False, 10.0)[0].id == "q/b"
    live.busy.clear()
    live.sample("p/a", 0.0, ok=False)
    assert latency_order(targets, rng, live, 0.0, False, 10.0)[0].id == "q/b"


def test_an_old_slow_sample_decays_so_the_deployment_is_tried_again() -> None:
    targets = table("[{provider: p, model: a}, {provider: q, model: b}]", "latency").routes["m"].targets
    live, rng = Live(), random.Random(0)
    live.sample("p/a", 0.0, lat=1.0)
    live.sample("q/b", 0.0, lat=0.01)
    assert all(latency_order(targets, rng, live, 1.0, False, 10.0)[0].id == "q/b" for _ in range(50))
    live.sample("q/b", 200.0, lat=0.01)  # q stays fresh, p's sample is 200 s (20 tau) old
    firsts = Counter(latency_order(targets, rng, live, 200.0, False, 10.0)[0].id for _ in range(100))
    assert firsts["p/a"] > 0


def test_least_busy_and_cost() -> None:
    targets = table("[{provider: p, model: a, cost_per_mtok: 5}, {provider: q, model: b, cost_per_mtok: 0.5},"
                    " {provider: r, model: c}]", "cost").routes["m"].targets
    live, rng = Live(), random.Random(0)
    live.busy = {"p/a": 2, "q/b": 1}
    assert ids(least_busy_order(targets, rng, live)) == ["r/c", "q/b", "p/a"]
    assert ids(cost_order(targets, rng)) == ["q/b", "p/a", "r/c"]  # unknown cost last
    assert deployment_cost(targets[2].deployment) is None
