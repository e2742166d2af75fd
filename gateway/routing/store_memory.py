"""Routing's state in the embedded store, mixed into MemoryStore (the twins of store_redis.py):
each deployment's statistics and circuit (observations.py), and the session pins of sticky routing
(sessions.py), kept in process."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.routing.observations import Observation, apply_observation, claim_probe, empty


class MemoryRoutingOps:
    """Mixed into MemoryStore."""

    _routing: dict[str, dict[str, float]]

    def _rt(self, dep: str) -> dict[str, float]:
        try:
            return self._routing[dep]
        except AttributeError:
            self._routing = {}
        except KeyError:
            pass
        h = self._routing[dep] = empty()
        return h

    def apply_routing_observe(self, observations: Sequence[Observation]) -> None:
        for o in observations:
            apply_observation(self._rt(o[0]), o)

    async def routing_read(self, ids: Sequence[str]) -> dict[str, dict[str, float]]:
        return {dep: dict(self._rt(dep)) for dep in ids}

    async def routing_claim_probe(self, dep: str, now: float, ttl: float) -> bool:
        return claim_probe(self._rt(dep), now, ttl)


# The embedded store keeps at most this many pins; past it the oldest go first.
MAX_MEMORY_PINS = 100_000


class MemorySessionOps:
    """Mixed into MemoryStore."""

    _pins: dict[str, tuple[str, float]]

    def _pin_table(self) -> dict[str, tuple[str, float]]:
        try:
            return self._pins
        except AttributeError:
            self._pins = {}
            return self._pins

    def apply_session_pin(self, key: str, deployment: str, ttl: float) -> None:
        pins = self._pin_table()
        pins.pop(key, None)  # re-inserted last: the dict's order is the order of last use
        pins[key] = (deployment, time.monotonic() + ttl)
        while len(pins) > MAX_MEMORY_PINS:
            del pins[next(iter(pins))]

    async def session_lookup(self, key: str) -> str | None:
        pin = self._pin_table().get(key)
        if pin is None or pin[1] <= time.monotonic():
            return None
        return pin[0]
