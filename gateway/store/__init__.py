"""Shared state behind one async contract: `RedisStore` for many replicas, `MemoryStore` as the
embedded default for one process. Both pass the same contract tests.

This package holds the clients (the embedded store, the Redis store and its request connection,
the Redis topologies) and the batch runner; each feature's operations live in the feature's package
(`store_memory.py`, `store_redis.py`, and `store.py`: the protocol naming what the feature needs of a
store, and its settle writes). `gateway.store.protocol.Store` is every feature's protocol at once,
which both stores declare.

Writes that happen after a request (the settle step: reconciling limits, spend, statistics, the usage
log) are collected from every stage as `StoreOp`s and sent together by `run_batch`, one round trip
for the whole settle step. An op names its `BatchWrite`, and the write names the function that
applies it on each store: a store runs an op by calling that function, never by looking a name up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, NamedTuple, ParamSpec, Protocol

if TYPE_CHECKING:
    from gateway.store.protocol import Store

P = ParamSpec("P")
# (call id, write id within the call): names a write that may be sent again (see StoreOp).
Once = tuple[str, str]


class BatchWrite(Generic[P]):
    """One kind of settle write, with the function that applies it on each store: `memory(store,
    *args)` on the embedded store (it runs without awaiting, so it is atomic as a Lua script is on
    Redis) and `redis(store, batch, once, *args)` on Redis, which queues exactly one command on the
    batch. Calling the write with its arguments makes the op; mypy checks them against both
    functions while the two take the same parameters (two that differ in number make it a
    BatchWrite[Any], whose calls go unchecked: tests/contract/test_batch.py keeps them alike).
    `durable`: losing it costs money or audit trail, so a store configured to wait for replicas waits
    for batches that carry it."""

    __slots__ = ("durable", "memory", "name", "redis")

    def __init__(self, name: str, *, memory: Callable[Concatenate[Any, P], object],
                 redis: Callable[Concatenate[Any, Any, Once | None, P], None], durable: bool = False) -> None:
        self.name = name
        self.memory = memory
        self.redis = redis
        self.durable = durable

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> StoreOp:
        """This write with these (positional) arguments."""
        if kwargs:
            raise TypeError(f"{self.name}: a settle write takes positional arguments only")
        return StoreOp(self, args)

    def once(self, once: Once, *args: P.args, **kwargs: P.kwargs) -> StoreOp:
        """This write, applied at most once however often it is sent (see StoreOp.once)."""
        if kwargs:
            raise TypeError(f"{self.name}: a settle write takes positional arguments only")
        return StoreOp(self, args, once)

    def __repr__(self) -> str:
        return f"BatchWrite({self.name!r})"


class StoreOp(NamedTuple):
    """One queued write: which write it is (what runs it on each store) and its arguments.

    `once` (call id, write id within the call) names a write that may be sent again (the accounting
    retry queue): Redis applies it at most once (see store/scripts.py `guarded`); the embedded store
    never needs to resend.

    A named tuple, not a frozen dataclass: every settle builds a few, and a frozen dataclass sets
    each field through object.__setattr__."""

    write: BatchWrite[Any]
    args: tuple[Any, ...] = ()
    once: Once | None = None


class StoreClient(Protocol):
    """What every store does whatever the features: answer a ping, run a settle batch, close."""

    # True when operations complete without suspending (the embedded store): nothing can be cut
    # short by a cancellation, so callers need not shield its writes.
    in_process: bool

    @property
    def ordered(self) -> bool:
        """True when a write sent before a later call (in this process) is applied before that call
        reads: the embedded store, or Redis through the one ordered request connection. The
        pipeline may then write a call's settle batch just after its answer has gone out."""
        ...

    async def ping(self) -> bool:
        """True when the store answers (readiness)."""
        ...

    async def run_batch(self, ops: Sequence[StoreOp]) -> list[Any]:
        """Apply every op in one round trip (a Redis pipeline); results in order. An op the store
        refused fails alone: its result is the exception, the other ops are applied. Raises
        StoreUnavailableError when the store cannot be reached in time (then any op may or may not
        have been applied)."""
        ...

    async def close(self) -> None: ...


# Words of a store's refusal that sending the same write again cannot change (a counter or an argument
# out of range, a key of the wrong type); any other refusal (read-only replica, out of memory, loading,
# no quorum) passes, and the write is retried.
_FOR_GOOD = ("not an integer", "out of range", "overflow", "WRONGTYPE", "not a valid float")


def refused_for_good(error: Exception) -> bool:
    """Whether an op's failure (a `run_batch` result) would repeat however often it is sent."""
    if isinstance(error, (TypeError, ValueError, OverflowError)):  # the embedded store's own refusals
        return True
    text = str(error)
    return any(word in text for word in _FOR_GOOD)


def build_store(redis_url: str, *, timeout: float, key_prefix: str, cluster: bool = False,
                replica_acks: int = 0, cache_max_bytes: int | None = None) -> Store:
    """`redis_url` picks the topology: redis:// (one server), redis+sentinel://, redis-cluster:// (or
    `cluster=True`); see gateway/store/topology.py. Empty: the in-process store (its response cache
    bounded to `cache_max_bytes`)."""
    if redis_url:
        from gateway.store.redis import RedisStore

        return RedisStore(redis_url, timeout=timeout, key_prefix=key_prefix, cluster=cluster,
                          replica_acks=replica_acks)
    from gateway.store.memory import MemoryStore

    store = MemoryStore()
    if cache_max_bytes is not None:
        store.cache_max_bytes = cache_max_bytes
    return store
