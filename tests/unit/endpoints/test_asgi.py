"""unless_client_leaves: a call's answer, or None with the call cancelled once its client is gone,
whether the server says so through the scope's DisconnectSlot or only through `receive`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.endpoints.asgi import DISCONNECT_SLOT, DisconnectSlot, unless_client_leaves


class Work:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def run(self) -> str:
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "answer"


async def never_receive() -> dict[str, Any]:
    await asyncio.sleep(60)
    return {"type": "http.disconnect"}


async def test_the_servers_signal_cancels_the_work() -> None:
    slot, work = DisconnectSlot(), Work()
    call = asyncio.ensure_future(unless_client_leaves({DISCONNECT_SLOT: slot}, never_receive, work.run()))
    await work.started.wait()
    slot.lost()
    assert await call is None
    assert work.cancelled and slot.task is None


async def test_a_client_gone_before_the_call_began_skips_it() -> None:
    slot, work = DisconnectSlot(), Work()
    slot.lost()
    assert await unless_client_leaves({DISCONNECT_SLOT: slot}, never_receive, work.run()) is None
    assert not work.started.is_set()


async def test_without_the_slot_a_disconnect_from_receive_cancels_the_work() -> None:
    gone = asyncio.Event()
    work = Work()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    call = asyncio.ensure_future(unless_client_leaves({}, receive, work.run()))
    await work.started.wait()
    gone.set()
    assert await call is None and work.cancelled


async def test_an_answer_before_any_disconnect_is_returned() -> None:
    async def quick() -> str:
        return "answer"

    slot = DisconnectSlot()
    assert await unless_client_leaves({DISCONNECT_SLOT: slot}, never_receive, quick()) == "answer"
    assert await unless_client_leaves({}, never_receive, quick()) == "answer"
    slot.lost()  # after the call: nothing to cancel
    assert slot.gone


async def test_a_cancellation_from_elsewhere_still_propagates() -> None:
    work = Work()
    call = asyncio.ensure_future(unless_client_leaves({DISCONNECT_SLOT: DisconnectSlot()}, never_receive,
                                                      work.run()))
    await work.started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
