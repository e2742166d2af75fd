from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway.config import parse_config
from gateway.context import RequestContext
from gateway.errors import ModelNotFoundError
from gateway.routing.router import Router
from gateway.routing.strategies import priority_order, weighted_order
from gateway.routing.table import RouteTable
from gateway.schemas import Operation
from gateway.upstream import UpstreamPool

CONFIG = """
providers: {m: {type: mock}}
models:
  a:
    deployments:
      - {provider: m, model: x, weight: 1}
      - {provider: m, model: y, weight: 3}
    retries: 3
    fallbacks: [b]
  b:
    strategy: priority
    deployments:
      - {provider: m, model: low, priority: 5}
      - {provider: m, model: high, priority: 1}
    retries: 0
"""


def table() -> RouteTable:
    return RouteTable(parse_config(CONFIG, env={}))


def ctx(alias: str) -> RequestContext:
    return RequestContext(request_id="r", operation=Operation.CHAT, body={}, alias=alias, stream=False, headers={})


def test_weighted_first_choice_follows_the_weights() -> None:
    route = table().routes["a"]
    rng = random.Random(7)
    firsts = Counter(weighted_order(route.targets, rng)[0].id for _ in range(8000))
    assert firsts["m/y"] / 8000 == pytest.approx(0.75, abs=0.02)


def test_priority_order_is_by_priority() -> None:
    route = table().routes["b"]
    assert [t.id for t in priority_order(route.targets, random.Random())] == ["m/high", "m/low"]


def test_plan_orders_each_alias_of_the_fallback_chain() -> None:
    router = Router(table(), UpstreamPool(), random.Random(1))
    plan = [t.id for t in router.plan(ctx("a"))]
    assert len(plan) == 2 + 2
    assert set(plan[:2]) == {"m/x", "m/y"}
    assert plan[2:] == ["m/high", "m/low"]
    with pytest.raises(ModelNotFoundError):
        router.plan(ctx("zzz"))
