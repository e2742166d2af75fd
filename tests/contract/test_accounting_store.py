"""The accounting store operations, one suite over every store: MemoryStore, RedisStore on fakeredis
and RedisStore on the real Redis at 6379 (a unique key prefix per test, nothing flushed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest

from gateway.accounting.store import BUDGET_ADJUST, BUDGET_RELEASE, SPEND_ADD, USAGE_APPEND
from gateway.store import StoreOp
from gateway.store.memory import MemoryStore
from gateway.store.protocol import Store
from gateway.store.redis import RedisStore
from tests.contract.stores import discard, on_fakeredis

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _real_redis_up() -> bool:
    store = RedisStore(REDIS_URL, timeout=0.5, key_prefix="t-accounting-probe")
    try:
        return await store.ping()
    finally:
        await store.close()


@pytest.fixture(params=["memory", "fakeredis", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    prefix = f"t-accounting-{uuid4().hex[:8]}"
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue("redis_cluster_url") if request.param == "cluster" else REDIS_URL
    redis_store = RedisStore(url, timeout=2.0, key_prefix=prefix)
    if request.param == "fakeredis":
        await on_fakeredis(redis_store)
    elif request.param == "redis" and not await _real_redis_up():
        await redis_store.close()
        pytest.skip("no Redis at 127.0.0.1:6379")
    try:
        yield redis_store
    finally:
        await discard(redis_store)


async def test_budget_reserve_refuses_what_does_not_fit(store: Store) -> None:
    counters = ("key:app:202611", "team:search:202611")
    assert await store.budget_reserve("team:search", counters, [1000, 5000], 400, 3600) == 0
    assert await store.budget_reserve("team:search", counters, [1000, 5000], 400, 3600) == 0
    assert await store.budget_read("team:search", counters) == [800, 800]
    # 800 + 400 > 1000 on the key's budget: refused, nothing reserved anywhere
    assert await store.budget_reserve("team:search", counters, [1000, 5000], 400, 3600) == 1
    assert await store.budget_read("team:search", counters) == [800, 800]
    # the team's budget is the one without room
    assert await store.budget_reserve("team:search", counters, [10_000, 900], 200, 3600) == 2
    # an exhausted budget refuses even a zero-cost reservation
    await store.run_batch([BUDGET_ADJUST("team:search", counters, 200, 3600)])
    assert await store.budget_read("team:search", counters) == [1000, 1000]
    assert await store.budget_reserve("team:search", counters, [1000, 5000], 0, 3600) == 1


async def test_budget_adjust_reconciles_up_and_down(store: Store) -> None:
    counters = ("key:solo:20261122",)
    assert await store.budget_reserve("key:solo", counters, [10_000], 3000, 60) == 0
    await store.run_batch([BUDGET_ADJUST("key:solo", counters, -2500, 60)])
    assert await store.budget_read("key:solo", counters) == [500]
    await store.run_batch([BUDGET_ADJUST("key:solo", ("key:solo:new",), 70, 60)])
    assert await store.budget_read("key:solo", ("key:solo:new",)) == [70]
    assert await store.budget_read("key:solo", ("key:never",)) == [0]


async def test_spend_add_accumulates_per_day(store: Store) -> None:
    dims = ("key|app", "alias|gpt")
    metrics = [("requests", 1), ("cost", 7500)]
    await store.run_batch([SPEND_ADD("20261121", 3600, dims, metrics),
                           SPEND_ADD("20261122", 3600, dims, metrics),
                           SPEND_ADD("20261122", 3600, ("key|app",), [("cost", 1)])])
    days = await store.spend_read(["20261121", "20261122", "20261123"])
    assert days["20261121"] == {"key|app|requests": 1, "key|app|cost": 7500, "alias|gpt|requests": 1,
                                "alias|gpt|cost": 7500}
    assert days["20261122"]["key|app|cost"] == 7501 and days["20261122"]["alias|gpt|cost"] == 7500
    assert days["20261123"] == {}


async def test_usage_log_is_bounded_and_readable(store: Store) -> None:
    ops = [USAGE_APPEND({"ts": str(1_700_000_000_000 + i), "request_id": f"r{i}"}, 1000)
           for i in range(5)]
    results = await store.run_batch(ops)
    assert len(results) == 5
    rows = await store.usage_read(0, 2**62, 100)
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2", "r3", "r4"]
    assert len(await store.usage_read(0, 2**62, 2)) == 2


async def test_memory_usage_log_keeps_the_newest() -> None:
    store = MemoryStore()
    await store.run_batch([USAGE_APPEND({"ts": str(i), "request_id": f"r{i}"}, 3) for i in range(10)])
    rows = await store.usage_read(0, 100, 100)
    assert [r["request_id"] for r in rows] == ["r7", "r8", "r9"]


async def test_redis_usage_log_is_trimmed_approximately() -> None:
    store = await on_fakeredis(RedisStore(REDIS_URL, timeout=1.0, key_prefix="unused"))
    try:
        await store.run_batch([USAGE_APPEND({"request_id": f"r{i}"}, 10) for i in range(500)])
        length: Any = await store.client.xlen("unused:{usage}:usage")
        assert 10 <= length < 500
    finally:
        await store.close()


async def test_a_refused_op_fails_alone(store: Store) -> None:
    """One op the store refuses (a count that is not an integer) is its own error; the rest of the
    batch is applied and answered."""
    ops = [SPEND_ADD("20261122", 3600, ("key|app",), [("requests", 1)]),
           SPEND_ADD("20261122", 3600, ("key|bad",), [("cost", "many")]),
           USAGE_APPEND({"ts": "1700000000000", "request_id": "r1"}, 1000)]
    results = await store.run_batch(ops)
    assert isinstance(results[1], Exception) and not isinstance(results[0], Exception)
    assert (await store.spend_read(["20261122"]))["20261122"]["key|app|requests"] == 1
    assert [r["request_id"] for r in await store.usage_read(0, 2**62, 10)] == ["r1"]


def _call_writes(call: str) -> list[StoreOp]:
    return [SPEND_ADD.once((call, "s0"), "20261122", 3600, ("key|app",), [("requests", 1)]),
            USAGE_APPEND.once((call, "u0"), {"ts": "1700000000000", "request_id": call}, 1000),
            BUDGET_ADJUST.once((call, "b"), "key:app", ("key:app:20261122",), 40, 3600)]


async def test_a_write_with_an_id_is_applied_once_however_often_it_is_sent(store: Store) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("the embedded store never sends a write twice")
    for _ in range(3):
        await store.run_batch([*_call_writes("c1"), *_call_writes("c2")])
    assert (await store.spend_read(["20261122"]))["20261122"]["key|app|requests"] == 2
    assert sorted(r["request_id"] for r in await store.usage_read(0, 2**62, 10)) == ["c1", "c2"]
    assert await store.budget_read("key:app", ("key:app:20261122",)) == [80]


async def test_a_reservation_of_unknown_outcome_is_released_only_if_it_was_applied(store: Store) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("an in-process reservation always answers: its outcome is never unknown")
    counters = ("key:app:20261122",)
    assert await store.budget_reserve("key:app", counters, [10_000], 300, 60, "c1") == 0
    assert await store.budget_reserve("key:app", counters, [10_000], 300, 60, "c1") == 0  # sent again
    assert await store.budget_read("key:app", counters) == [300]
    for _ in range(2):
        await store.run_batch([BUDGET_RELEASE.once(("c1", "r"), "key:app", counters, "c1")])
    assert await store.budget_read("key:app", counters) == [0]
    # released before the reserve arrived (it was stuck behind a stall): the late reserve holds nothing
    await store.run_batch([BUDGET_RELEASE.once(("c2", "r"), "key:app", counters, "c2")])
    assert await store.budget_reserve("key:app", counters, [10_000], 300, 60, "c2") == 0
    assert await store.budget_read("key:app", counters) == [0]
