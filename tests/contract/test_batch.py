"""The settle batch on every store (the embedded one, Redis on fakeredis, the real Redis and a Redis
Cluster): each op runs the function its write names for that store, whatever feature it comes from,
and answers in order."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

from gateway.accounting.store import SPEND_ADD
from gateway.cache.keys import entry_key, lock_key
from gateway.cache.store import CACHE_RELEASE, CACHE_STORE
from gateway.ratelimit.store import LIMITS_SETTLE
from gateway.routing.store import SESSION_PIN
from gateway.store import BatchWrite
from tests.contract.stores import StoreFactory


async def test_one_batch_carries_every_features_writes(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        prefix = getattr(store, "prefix", "t-batch")
        entry, lock = entry_key(prefix, "d1", "a1", "k1"), lock_key(prefix, "d1")
        assert await store.cache_lookup(entry, lock, "tok", 5000) == (None, True)
        results = await store.run_batch([SESSION_PIN("s1", "a/m", 60.0),
                                         CACHE_STORE(entry, lock, "tok", b"answer", 60_000),
                                         SPEND_ADD("20261122", 3600, ("key|app",), [("requests", 2)]),
                                         CACHE_RELEASE(lock, "tok")])
        assert len(results) == 4 and not any(isinstance(result, Exception) for result in results)
        assert await store.session_lookup("s1") == "a/m"
        assert await store.cache_lookup(entry, lock, "", 5000) == (b"answer", False)
        assert await store.cache_poll(entry, lock) == (b"answer", False)  # stored, and the lock let go
        assert (await store.spend_read(["20261122"]))["20261122"] == {"key|app|requests": 2}


def test_a_write_takes_its_arguments_as_its_store_functions_do() -> None:
    op = SPEND_ADD.once(("call-1", "s0"), "20261122", 3600, ("key|app",), [("requests", 1)])
    assert (op.write, op.args, op.once) == (SPEND_ADD, ("20261122", 3600, ("key|app",), [("requests", 1)]),
                                            ("call-1", "s0"))
    assert LIMITS_SETTLE((), "r1", 0, 10, 7, True).once is None
    with pytest.raises(TypeError, match="positional"):
        SESSION_PIN("s1", "a/m", ttl=60.0)  # type: ignore[call-arg]


FEATURE_STORES = ("accounting", "cache", "ratelimit", "routing")


def every_write() -> list[BatchWrite[Any]]:
    found: list[BatchWrite[Any]] = []
    for feature in FEATURE_STORES:
        module = importlib.import_module(f"gateway.{feature}.store")
        found += [value for value in vars(module).values() if isinstance(value, BatchWrite)]
    return found


@pytest.mark.parametrize("write", every_write(), ids=lambda write: write.name)
def test_each_write_takes_the_same_arguments_on_both_stores(write: BatchWrite[Any]) -> None:
    """mypy checks a write's arguments against its two functions only while they agree: functions that
    take different numbers of arguments make it a BatchWrite[Any], whose calls nothing checks."""
    memory = list(inspect.signature(write.memory).parameters.values())[1:]  # (the store)
    redis = list(inspect.signature(write.redis).parameters.values())[3:]  # (the store, the batch, `once`)
    assert [(p.name, p.kind, p.annotation) for p in memory] == [(p.name, p.kind, p.annotation) for p in redis]


def test_the_writes_are_found() -> None:
    assert {write.name for write in every_write()} >= {"spend_add", "usage_append", "cache_store",
                                                       "limits_settle", "routing_observe", "session_pin"}
