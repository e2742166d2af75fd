"""Background: a task owned by one object, stopped however it reacts to a cancellation."""

from __future__ import annotations

import asyncio

from gateway.background import Background


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_background_task_that_swallows_a_cancellation_still_stops() -> None:
    """redis-py can swallow a cancellation that lands mid-call; the loop must not carry on regardless."""
    rounds: list[int] = []

    async def loop() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not rounds:  # the first cancellation disappears, as it can inside a library
                    rounds.append(1)
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    continue
                raise

    task = Background("swallower")
    task.start(loop)
    await turns()
    stopping = asyncio.ensure_future(task.stop())
    done, _ = await asyncio.wait({stopping}, timeout=30)
    assert done == {stopping}, "stop() waited on a task that went back to sleep"
    assert rounds == [1] and not task.running
