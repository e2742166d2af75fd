"""Routing state (statistics, circuit breaker, probe) behaves the same on every store: MemoryStore,
RedisStore on fakeredis (Lua via lupa) and RedisStore on the real Redis at 6379 (unique prefix)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import fakeredis
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.routing.observations import RELEASE_PROBE, Observation, apply_observation, empty
from gateway.routing.store import ROUTING_OBSERVE
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from tests.contract.stores import discard, on_fakeredis

pytestmark = pytest.mark.asyncio


async def _real_redis_up() -> bool:
    client = aioredis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.2)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "fakeredis", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    prefix = f"t-routing-{uuid4().hex[:8]}"
    if request.param == "fakeredis":
        s = await on_fakeredis(RedisStore("redis://unused", timeout=1.0, key_prefix=prefix), fakeredis.FakeServer())
        yield s
        await s.client.aclose()
        return
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster_url")
    elif not await _real_redis_up():
        pytest.skip("no Redis at 127.0.0.1:6379")
    else:
        url = "redis://127.0.0.1:6379/0"
    s = RedisStore(url, timeout=1.0, key_prefix=prefix)
    yield s
    await discard(s)


def obs(dep: str, now: float, *, ok: bool = True, lat: float = -1.0, ttft: float = -1.0,
        retry_after: float = -1.0, failures: int = 3, window: float = 60.0, base: float = 5.0,
        cap: float = 40.0, rate: float = 0.5, min_calls: int = 20) -> Observation:
    return (dep, int(ok), lat, lat, ttft, retry_after, now, 10.0, failures, window, base, cap, rate, min_calls)


async def observe(store: Any, *observations: Observation) -> None:
    await store.run_batch([ROUTING_OBSERVE(tuple(observations))])


async def row(store: Any, dep: str) -> dict[str, float]:
    rows: dict[str, dict[str, float]] = await store.routing_read([dep])
    return rows[dep]


async def test_unknown_deployment_reads_as_empty(store: Any) -> None:
    assert await store.routing_read(["nobody/x"]) == {"nobody/x": empty()}


async def test_latency_is_peak_ewma(store: Any) -> None:
    await observe(store, obs("a/m", 100.0, lat=0.2))
    assert (await row(store, "a/m"))["lat"] == pytest.approx(0.2)
    await observe(store, obs("a/m", 100.0, lat=1.0))  # slower: taken at once
    assert (await row(store, "a/m"))["lat"] == pytest.approx(1.0)
    await observe(store, obs("a/m", 110.0, lat=0.2))  # faster, 10 s later: w = e^-1
    w = math.exp(-1)
    got = await row(store, "a/m")
    assert got["lat"] == pytest.approx(w * 1.0 + (1 - w) * 0.2)
    assert got["lat_n"] == 3 and got["n"] == 3 and got["err"] == 0


async def test_failures_in_a_window_open_then_half_open_probe_closes(store: Any) -> None:
    dep = "a/m"
    await observe(store, obs(dep, 100.0, ok=False), obs(dep, 101.0, ok=False))
    assert (await row(store, dep))["open_until"] == 0  # 2 < 3
    await observe(store, obs(dep, 102.0, ok=False))
    got = await row(store, dep)
    assert got["open_until"] == pytest.approx(107.0) and got["level"] == 1
    assert not await store.routing_claim_probe(dep, 106.0, 30.0)  # still open
    assert await store.routing_claim_probe(dep, 107.5, 30.0)  # half-open: one probe
    assert not await store.routing_claim_probe(dep, 108.0, 30.0)  # taken
    await observe(store, obs(dep, 108.0, ok=True))
    got = await row(store, dep)
    assert got["open_until"] == 0 and got["level"] == 0
    assert await store.routing_claim_probe(dep, 109.0, 30.0)  # closed: everyone may send


async def test_a_probe_without_a_verdict_frees_the_slot_and_nothing_else(store: Any) -> None:
    dep = "a/m"
    await observe(store, *(obs(dep, 100.0, ok=False) for _ in range(3)))
    opened = await row(store, dep)
    assert await store.routing_claim_probe(dep, 105.5, 30.0)
    assert not await store.routing_claim_probe(dep, 106.0, 30.0)  # taken
    release: Observation = (dep, RELEASE_PROBE, -1.0, -1.0, -1.0, -1.0, 106.0, 10.0, 3, 60.0, 5.0, 40.0, 0.5, 20)
    await observe(store, release)
    assert {**opened, "probe_until": 0.0} == await row(store, dep)  # still half-open, counts untouched
    assert await store.routing_claim_probe(dep, 106.5, 30.0)  # the next request may probe


async def test_releasing_a_closed_deployment_changes_nothing(store: Any) -> None:
    dep = "a/m"
    await observe(store, obs(dep, 100.0, lat=0.1))
    before = await row(store, dep)
    await observe(store, (dep, RELEASE_PROBE, -1.0, -1.0, -1.0, -1.0, 101.0, 10.0, 3, 60.0, 5.0, 40.0, 0.5, 20))
    assert await row(store, dep) == before


async def test_failed_probe_reopens_for_longer_up_to_the_cap(store: Any) -> None:
    dep = "a/m"
    await observe(store, *(obs(dep, 100.0, ok=False) for _ in range(3)))
    ends = []
    now = 100.0
    for _ in range(5):
        now = (await row(store, dep))["open_until"]
        assert await store.routing_claim_probe(dep, now, 30.0)
        await observe(store, obs(dep, now, ok=False))
        ends.append((await row(store, dep))["open_until"] - now)
    assert ends == [10.0, 20.0, 40.0, 40.0, 40.0]


async def test_failures_outside_the_window_do_not_add_up(store: Any) -> None:
    dep = "a/m"
    await observe(store, obs(dep, 0.0 + 1, ok=False), obs(dep, 30.0, ok=False))
    await observe(store, obs(dep, 100.0, ok=False))  # window restarted
    assert (await row(store, dep))["open_until"] == 0


async def test_rare_errors_at_high_traffic_never_open(store: Any) -> None:
    """100 calls a second with every 50th failing (2 %), for two minutes: retries absorb them."""
    dep = "a/m"
    for second in range(120):
        now = 1000.0 + second
        await observe(store, *(obs(dep, now + i / 100, ok=(second * 100 + i) % 50 != 0, window=10.0,
                                   failures=5) for i in range(100)))
        assert (await row(store, dep))["open_until"] == 0, f"opened after {second} s"


async def test_a_deployment_failing_most_calls_opens_within_its_window(store: Any) -> None:
    """Scattered failures (never 5 in a row) on two calls of three, past `min_calls`: open."""
    dep = "a/m"
    calls = [obs(dep, 100.0 + i / 10, ok=i % 3 == 0, window=10.0, failures=5) for i in range(30)]
    await observe(store, *calls[:19])
    assert (await row(store, dep))["open_until"] == 0  # fewer calls than min_calls: no rate yet
    await observe(store, calls[19])
    got = await row(store, dep)
    assert got["open_until"] == pytest.approx(101.9 + 5.0) and got["level"] == 1


async def test_failures_in_a_row_open_at_once_at_any_traffic(store: Any) -> None:
    dep = "a/m"
    await observe(store, *(obs(dep, 100.0 + i, ok=True) for i in range(100)))
    await observe(store, *(obs(dep, 200.0 + i, ok=False, failures=5, window=10.0) for i in range(4)))
    assert (await row(store, dep))["open_until"] == 0
    await observe(store, obs(dep, 204.0, ok=False, failures=5, window=10.0))
    assert (await row(store, dep))["open_until"] == pytest.approx(209.0)


async def test_retry_after_opens_at_once_for_that_long(store: Any) -> None:
    await observe(store, obs("a/m", 100.0, ok=False, retry_after=7.0))
    got = await row(store, "a/m")
    assert got["open_until"] == pytest.approx(107.0) and got["level"] == 0


async def test_deployments_are_independent_and_batched(store: Any) -> None:
    await observe(store, *(obs("a/m", 100.0, ok=False) for _ in range(3)), obs("b/m", 100.0, ttft=0.3))
    a, b = (await store.routing_read(["a/m", "b/m"])).values()
    assert a["open_until"] > 0 and b["open_until"] == 0 and b["ttft"] == pytest.approx(0.3)


observation = st.builds(
    lambda dep, ok, lat, ttft, ra, dt: (dep, ok, lat, ttft, ra, dt),
    st.sampled_from(["a/m", "b/m"]), st.booleans(),
    st.one_of(st.just(-1.0), st.floats(0.001, 5.0)), st.one_of(st.just(-1.0), st.floats(0.001, 5.0)),
    st.one_of(st.just(-1.0), st.floats(0.5, 100.0)), st.floats(0.0, 30.0))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(observation, min_size=1, max_size=12))
async def test_store_matches_the_reference_semantics(store: Any, steps: list[Any]) -> None:
    """Whatever the sequence, the store (Lua on Redis) ends where the Python reference does."""
    before = await store.routing_read(["a/m", "b/m"])
    reference = {k: dict(v) for k, v in before.items()}
    now = 1000.0
    batch = []
    for dep, ok, lat, ttft, ra, dt in steps:
        now += dt
        o = obs(dep, now, ok=ok, lat=lat, ttft=ttft, retry_after=ra)
        apply_observation(reference[dep], o)
        batch.append(o)
    await observe(store, *batch)
    got = await store.routing_read(["a/m", "b/m"])
    for dep, expected in reference.items():
        assert got[dep] == pytest.approx(expected, rel=1e-9, abs=1e-12)
