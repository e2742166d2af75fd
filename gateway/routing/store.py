"""What routing needs of a store, and its settle writes: each deployment's shared statistics and
circuit (observations.py), and the session pins of sticky routing (sessions.py).

Both stores declare `RoutingStore` and `SessionStore` (gateway.store.protocol.Store); the operations
are in `store_memory.py` (the embedded store) and `store_redis.py` (Redis: one script call, or one
command, each). These modules sit on the store's layer, below the router that uses them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.routing.store_memory import MemoryRoutingOps, MemorySessionOps
from gateway.routing.store_redis import RedisRoutingOps, RedisSessionOps
from gateway.store import BatchWrite


class RoutingStore(Protocol):
    async def routing_read(self, ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """The current fields of each deployment (one round trip)."""
        ...

    async def routing_claim_probe(self, dep: str, now: float, ttl: float) -> bool:
        """Take the single half-open probe of `dep` (True: this caller may send)."""
        ...


class SessionStore(Protocol):
    async def session_lookup(self, key: str) -> str | None:
        """The deployment a client session is pinned to, or None."""
        ...


# (observations,): every attempt of one call folded into its deployment's record.
ROUTING_OBSERVE = BatchWrite("routing_observe", memory=MemoryRoutingOps.apply_routing_observe,
                             redis=RedisRoutingOps.queue_routing_observe)
# (pin key, deployment, ttl in seconds): the session pinned to the deployment that served it.
SESSION_PIN = BatchWrite("session_pin", memory=MemorySessionOps.apply_session_pin,
                         redis=RedisSessionOps.queue_session_pin)
