"""Session pins in the store: which deployment served a client session last (session-sticky routing,
gateway/routing/sessions.py), shared by every replica so a session keeps its provider's prompt cache
warm wherever its next request lands.

- `session_pin(key, deployment, ttl)` — a settle-batch op: SET with an expiry.
- `session_lookup(key)` — direct, one round trip: the pinned deployment or None.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.store.scripts import ScriptOps

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

    def op_session_pin(self, key: str, deployment: str, ttl: float) -> None:
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


class RedisSessionOps(ScriptOps):
    """Mixed into RedisStore."""

    client: Any
    # RedisRoutingOps's: one direct call, bounded by the store timeout, failures mapped.
    _rt_call: Callable[[Any], Awaitable[Any]]

    def _pin_key(self, key: str) -> str:
        return self.key("session", tag=key)

    def queue_session_pin(self, pipe: Any, key: str, deployment: str, ttl: float) -> None:
        pipe.execute_command("SET", self._pin_key(key), deployment, "PX", max(1, int(ttl * 1000)))

    async def session_lookup(self, key: str) -> str | None:
        value = await self._rt_call(self.client.get(self._pin_key(key)))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
