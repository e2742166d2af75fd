"""A background task owned by one object: started once, stopped by cancelling it and waiting for it
to finish (the config watcher, the store monitor, the runtime-keys refresher); and the work the
gateway leaves for the moments it waits (IdleWork)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.logging import get_logger

log = get_logger("tasks")

_RECANCEL_AFTER = 0.05  # seconds a cancelled background task gets before it is cancelled again


class Background:
    __slots__ = ("_name", "_task")

    def __init__(self, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `run()` on the running loop, unless this task is already running."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # One cancel() is not always enough: redis-py's asyncio client can swallow a cancellation
        # that lands at the wrong moment of a call, and the task's loop then carries on (a periodic
        # check going back to sleep for its whole interval, and shutdown waiting for it forever).
        # Ask again until the task has ended.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=_RECANCEL_AFTER)
        with contextlib.suppress(asyncio.CancelledError):
            await task


class IdleWork:
    """Work that nothing in the next request reads, run while the gateway waits on a provider.

    At one connection the client's next request arrives while the last call still settles (its usage
    record, spend counters, routing statistics and metrics: about 45 µs on the benchmark machine) and
    waits for it, yet every call then spends longer than that with nothing to do while its provider
    answers. Deferred work runs in that gap: `soon()` (a call is about to wait on its provider) starts
    it, and so does a timer `delay` seconds after it was deferred, when no call comes. Whatever reads
    what deferred work writes awaits `drain()` first (the /metrics endpoint, the admin spend and usage
    reads, a graceful shutdown). Work runs in the order it was deferred, one item at a time: it is
    meant for writes that complete without suspending (the embedded store)."""

    __slots__ = ("_delay", "_pending", "_runner", "_timer")

    def __init__(self, delay: float = 0.002) -> None:
        self._delay = delay
        self._pending: deque[Callable[[], Awaitable[None]]] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def defer(self, work: Callable[[], Awaitable[None]]) -> None:
        self._pending.append(work)
        # One timer at a time, left to fire even when a caller's wait ran the work first: arming and
        # cancelling one per request cost more than the timer's rare empty turn.
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._on_timer)

    def soon(self) -> None:
        """The caller is about to wait: what is pending runs as soon as it does."""
        if self._pending and self._runner is None:
            self._start()

    async def drain(self) -> None:
        """Return once everything deferred so far has run."""
        self._start()
        runner = self._runner
        if runner is not None:
            await asyncio.shield(runner)
        if self._timer is not None and not self._pending:  # (a later event loop arms its own)
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._start()

    def _start(self) -> None:
        if self._runner is not None and self._runner.done():  # cancelled before it ever ran
            self._runner = None
        if self._runner is None and self._pending:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="idle-work")

    async def _run(self) -> None:
        try:
            while self._pending:
                work = self._pending.popleft()
                try:
                    await work()
                except Exception:  # deferred work handles its own failures; this only keeps the rest running
                    log.exception("deferred work failed")
        finally:
            self._runner = None
