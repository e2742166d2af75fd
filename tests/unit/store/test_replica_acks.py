"""`replica_acks` on the real Redis at 6379, which has no replica: a batch carrying accounting writes is
refused as unconfirmed (the master applied it), a batch without them is not held up, and a write sent
again with its `once` id is applied once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from gateway.accounting.store import BUDGET_ADJUST, SPEND_ADD, USAGE_APPEND
from gateway.cache.store import CACHE_RELEASE
from gateway.errors import StoreUnavailableError
from gateway.store import StoreOp
from gateway.store.redis import RedisStore
from tests.contract.stores import discard

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    redis_store = RedisStore(REDIS_URL, timeout=0.5, key_prefix=f"t-acks-{uuid4().hex[:8]}", replica_acks=1)
    if not await redis_store.ping():
        await redis_store.close()
        pytest.skip("no Redis at 127.0.0.1:6379")
    replicas = (await redis_store.client.info("replication"))["connected_slaves"]
    if replicas:
        await redis_store.close()
        pytest.skip("this Redis has replicas: WAIT would succeed")
    try:
        yield redis_store
    finally:
        await discard(redis_store)


def writes(call: str, n: int) -> list[StoreOp]:
    return [USAGE_APPEND.once((call, f"u{n}"), {"request_id": f"r{n}", "ts": "1"}, 1000),
            SPEND_ADD.once((call, f"s{n}"), "2026-01-01", 3600, ("key|app",), (("requests", 1),)),
            BUDGET_ADJUST.once((call, "b"), "key:app", ("day",), 5, 3600)]


async def test_unconfirmed_writes_fail_the_batch_and_apply_once_however_often_sent(store: RedisStore) -> None:
    for _ in range(3):  # the retry queue sends the same writes again with each settle
        with pytest.raises(StoreUnavailableError, match="confirmed 0 of 1"):
            await store.run_batch(writes("c1", 0))
    with pytest.raises(StoreUnavailableError):
        await store.run_batch([*writes("c1", 0), *writes("c2", 1)])  # an old call with a new one
    records = await store.usage_read(0, 2**62, 100)
    assert sorted(r["request_id"] for r in records) == ["r0", "r1"]
    assert (await store.spend_read(["2026-01-01"]))["2026-01-01"]["key|app|requests"] == 2
    assert await store.budget_read("key:app", ["day"]) == [10]


async def test_batches_without_accounting_writes_do_not_wait(store: RedisStore) -> None:
    assert await store.run_batch([CACHE_RELEASE(f"{store.prefix}:lock", "token")]) == [0]


async def test_writes_without_an_id_are_applied_each_time(store: RedisStore) -> None:
    op = SPEND_ADD("2026-01-01", 3600, ("key|app",), (("requests", 1),))
    for _ in range(2):
        with pytest.raises(StoreUnavailableError):
            await store.run_batch([op])
    assert (await store.spend_read(["2026-01-01"]))["2026-01-01"]["key|app|requests"] == 2


async def test_waiting_batches_do_not_hold_up_other_calls(store: RedisStore) -> None:
    """WAIT blocks the connection it runs on: batches that wait take pooled connections of their own,
    so concurrent settles each get their own answer and a budget reservation is not queued behind
    them on the shared request connection (it would time out there)."""
    assert store.request_connection is not None and not store.ordered

    async def settle(n: int) -> str:
        try:
            await store.run_batch(writes(f"c{n}", n))
        except StoreUnavailableError as exc:
            return str(exc)
        return "confirmed"

    results = await asyncio.gather(*(settle(n) for n in range(6)),
                                   store.budget_reserve("key:other", ["day"], [10**9], 1, 60))
    assert all("confirmed 0 of 1" in r for r in results[:6]), results
    assert results[6] == 0  # reserved (0 = not refused)


async def test_a_skipped_resend_still_writes_so_its_wait_proves_something(store: RedisStore) -> None:
    """Redis 7.2+ WAITs only for what the connection itself sent to the replicas: a resent write that
    the guard skips must still write (it refreshes its marker's TTL), or a batch of skipped writes
    would be "confirmed" without any replica having them."""
    with pytest.raises(StoreUnavailableError):
        await store.run_batch(writes("c9", 9))
    marker = store.once_marker("c9", "usage")
    await store.client.expire(marker, 100)
    with pytest.raises(StoreUnavailableError):
        await store.run_batch(writes("c9", 9))  # every write skipped
    assert await store.client.ttl(marker) > 100
    assert len(await store.usage_read(0, 2**62, 100)) == 1
