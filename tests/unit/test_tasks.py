"""IdleWork: settles left for the moments the gateway waits (the app-level behaviour is in
tests/integration/test_idle_settle.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.tasks import Background, IdleWork


def recorder(done: list[str], name: str, fail: bool = False) -> Callable[[], Awaitable[None]]:
    async def work() -> None:
        if fail:
            raise RuntimeError(name)
        done.append(name)
    return work


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_work_waits_until_a_caller_is_about_to_wait_and_runs_once_it_does() -> None:
    idle, done = IdleWork(delay=60), list[str]()
    idle.defer(recorder(done, "a"))
    idle.defer(recorder(done, "b"))
    await turns()
    assert done == [] and len(idle) == 2  # nobody waited yet, and the timer is far off
    idle.soon()
    assert done == []  # not inside the caller's own step: only once it suspends
    await turns()
    assert done == ["a", "b"] and len(idle) == 0


async def test_the_timer_runs_work_when_no_caller_comes() -> None:
    idle, done = IdleWork(delay=0.01), list[str]()
    idle.defer(recorder(done, "a"))
    await turns()
    assert done == []
    await asyncio.sleep(0.05)
    assert done == ["a"]


async def test_drain_runs_everything_in_order_past_a_failure_and_what_is_deferred_meanwhile(
        caplog: pytest.LogCaptureFixture) -> None:
    idle, done = IdleWork(delay=60), list[str]()

    async def defers_more() -> None:
        done.append("c")
        idle.defer(recorder(done, "d"))

    idle.defer(recorder(done, "a"))
    idle.defer(recorder(done, "boom", fail=True))
    idle.defer(recorder(done, "b"))
    idle.defer(defers_more)
    await idle.drain()
    assert done == ["a", "b", "c", "d"] and len(idle) == 0
    assert "deferred work failed" in caplog.text
    await idle.drain()  # nothing pending: returns at once


async def test_a_cancelled_drain_leaves_the_work_running() -> None:
    idle, done = IdleWork(delay=60), list[str]()
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(0.02)
        done.append("slow")

    idle.defer(slow)
    waiter = asyncio.ensure_future(idle.drain())
    await started.wait()
    waiter.cancel()
    await asyncio.sleep(0.05)
    assert done == ["slow"]


def test_a_drained_idle_work_serves_the_next_event_loop_too() -> None:
    # The same services started again (tests, a restarted server) run on a new loop: a timer left
    # armed on the closed one must not stop the new one from arming its own.
    idle, done = IdleWork(delay=0.01), list[str]()

    async def first() -> None:
        idle.defer(recorder(done, "a"))
        await idle.drain()

    async def second() -> None:
        idle.defer(recorder(done, "b"))
        await asyncio.sleep(0.05)

    asyncio.run(first())
    asyncio.run(second())
    assert done == ["a", "b"]


async def test_the_backlog_stays_bounded_when_calls_arrive_faster_than_one_at_a_time() -> None:
    # Under load every loop turn finishes many calls, each deferring its settle: a runner that took
    # fewer per turn than arrive would let the queue (each item holds a request) grow without end.
    idle, done = IdleWork(delay=60), list[str]()
    most = 0
    for _ in range(200):
        for i in range(64):
            idle.defer(recorder(done, str(i)))
        idle.soon()
        most = max(most, len(idle))
        await asyncio.sleep(0)
    await idle.drain()
    assert len(done) == 200 * 64 and most <= 2 * 64


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
