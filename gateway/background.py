"""A background task owned by one object: started once, stopped by cancelling it and waiting for it
to finish (the config watcher, the store monitor, the runtime-keys refresher)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.logs import get_logger

log = get_logger("background")

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
