"""Session pins behave the same on every store: the embedded one, Redis on fakeredis, the real Redis
and a Redis Cluster."""

from __future__ import annotations

import asyncio

import pytest

from gateway.routing.store import SESSION_PIN
from tests.contract.stores import StoreFactory

pytestmark = pytest.mark.asyncio


async def test_a_pin_is_read_back_renewed_and_expires(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        assert await store.session_lookup("nobody") is None
        await store.run_batch([SESSION_PIN("s1", "a/m", 60.0),
                               SESSION_PIN("s2", "b/m", 0.05)])
        assert await store.session_lookup("s1") == "a/m"
        assert await store.session_lookup("s2") == "b/m"
        await store.run_batch([SESSION_PIN("s1", "b/m", 60.0)])
        assert await store.session_lookup("s1") == "b/m"
        await asyncio.sleep(0.15)
        assert await store.session_lookup("s2") is None
        assert await store.session_lookup("s1") == "b/m"
