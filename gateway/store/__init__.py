"""Shared state behind one async contract: `RedisStore` for many replicas, `MemoryStore` as the
embedded default for one process. Both pass the same contract tests.

Features add operations here as pairs: a Redis implementation (a Lua script or commands queued on a
pipeline) and an in-memory one with the same semantics. Writes that happen after a request (the
settle step: reconciling limits, spend, statistics, the usage log) are collected from every stage as
`StoreOp`s and sent together by `run_batch`, one round trip for the whole settle step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from gateway.conversations import ConversationOps


class StoreOp(NamedTuple):
    """One queued write: `name` selects the store's implementation, `args` are its arguments.

    `once` (call id, write id within the call) names a write that may be sent again (the accounting
    retry queue): Redis applies it at most once (see store/scripts.py `guarded`); the embedded store
    never needs to resend.

    A named tuple, not a frozen dataclass: every settle builds a few, and a frozen dataclass sets
    each field through object.__setattr__."""

    name: str
    args: tuple[Any, ...] = ()
    once: tuple[str, str] | None = None


class Store(ConversationOps, Protocol):
    """The shared store's operations, a group per feature (the Responses API's stored conversations
    are declared with their feature, in gateway/conversations)."""

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

    # --- accounting (gateway/store/accounting.py) ---
    async def budget_reserve(self, tag: str, counters: Sequence[str], limits: Sequence[int], amount: int,
                             ttl: int, call: str = "") -> int: ...

    async def budget_read(self, tag: str, counters: Sequence[str]) -> list[int]: ...

    async def spend_read(self, days: Sequence[str]) -> dict[str, dict[str, int]]: ...

    async def usage_read(self, start_ms: int, end_ms: int, count: int) -> list[dict[str, str]]: ...
    # --- end accounting ---

    async def session_lookup(self, key: str) -> str | None:
        """The deployment a client session is pinned to (gateway/store/sessions.py)."""
        ...



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
