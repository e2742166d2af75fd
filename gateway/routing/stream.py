"""A stream's reading after the attempt loop chose it: up to its first real event (the commit point),
then the rest, bounded in time, with every error raised from upstream text redacted.

Time bounds of a committed stream: it ends by the alias's deadline, and no read from the provider
waits longer than the alias's `stream_idle_timeout`. One timer serves every open stream (StreamClock,
ticking every TICK seconds while any is open): a read only flags that it is waiting and counts
itself, and the tick finds the streams that waited too long. A timer per stream, or an
`asyncio.timeout` per read, cost more than the rest of a stream's own work in the gateway (a timer
handle is tens of microseconds on uvloop). The bounds are kept to within one tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.errors import GatewayError, UpstreamProtocolError, UpstreamTimeoutError
from gateway.providers import StreamTranslator
from gateway.providers.redact import Redactor

TICK = 0.1


class StreamBound:
    """One stream's bounds. `reading`/`done_reading` bracket each read from the provider; the clock
    cancels the reading task when the stream passes its end or one read waited `idle` seconds, and
    `check_error` turns that cancellation into an UpstreamTimeoutError."""

    __slots__ = ("_cancelling", "_clock", "_quiet_since", "_reads", "_seen", "_task", "deployment", "end",
                 "expired", "fired", "idle", "waiting")

    def __init__(self, clock: StreamClock, deployment: str, seconds_left: float, idle: float) -> None:
        self._clock = clock
        self.deployment = deployment
        now = clock.now()
        self.end = now + seconds_left
        self.idle = idle
        self.fired: str | None = None
        self.expired = False
        self.waiting = False
        self._reads = self._seen = 0
        self._quiet_since = now
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    def reading(self) -> None:
        """A read from the provider begins."""
        if self.expired:
            raise self._timeout("total")
        if self._task is None:
            self._task = asyncio.current_task()
            self._clock.add(self)
        assert self._task is not None
        self._cancelling = self._task.cancelling()
        self._reads += 1
        self.waiting = True

    def done_reading(self) -> None:
        self.waiting = False

    def tick(self, now: float) -> None:
        if self._reads != self._seen or not self.waiting:
            self._seen, self._quiet_since = self._reads, now
        if now >= self.end:
            self.expired = True
            why = "total"
        elif self.waiting and now - self._quiet_since >= self.idle:
            why = "idle"
        else:
            return
        if self.waiting and self.fired is None and self._task is not None:
            self.fired = why
            self._task.cancel()

    def check_error(self) -> None:
        """Inside `except CancelledError` around a read: raise the timeout if this bound cancelled it
        (and nothing else did); otherwise return and let the caller re-raise the cancellation."""
        if self.fired is not None and self._task is not None and self._task.uncancel() <= self._cancelling:
            raise self._timeout(self.fired) from None

    def _timeout(self, why: str) -> UpstreamTimeoutError:
        if why == "idle":
            return UpstreamTimeoutError(f"The provider for '{self.deployment}' sent nothing for {self.idle:g}s "
                                        "in the middle of the stream.", code="stream_idle_timeout")
        return UpstreamTimeoutError(f"The stream from '{self.deployment}' did not finish within the model's "
                                    "timeout.")

    def stop(self) -> None:
        self.waiting = False
        if self._task is not None:
            self._clock.remove(self)
            self._task = None


class StreamClock:
    """The one timer of every open stream of an event loop (create it on that loop)."""

    def __init__(self, tick: float = TICK) -> None:
        self._loop = asyncio.get_running_loop()
        self.tick = tick
        self._open: set[StreamBound] = set()
        self._handle: asyncio.TimerHandle | None = None

    def now(self) -> float:
        return self._loop.time()

    def add(self, bound: StreamBound) -> None:
        self._open.add(bound)
        if self._handle is None:
            self._handle = self._loop.call_later(self.tick, self._run)

    def remove(self, bound: StreamBound) -> None:
        self._open.discard(bound)

    def _run(self) -> None:
        now = self._loop.time()
        for bound in list(self._open):
            bound.tick(now)
        self._handle = self._loop.call_later(self.tick, self._run) if self._open else None


async def first_output(chunks: AsyncIterator[bytes], translator: StreamTranslator, redactor: Redactor) -> bytes:
    """Read until the translator has something for the client (the commit point of a stream:
    comments and keep-alives give the client nothing, so they do not commit it)."""
    try:
        async for data in chunks:
            out = translator.feed(data)
            if out:
                return out
        out = translator.finish()
    except GatewayError as error:
        raise redactor.error(error) from None
    if not out or not translator.done:
        raise UpstreamProtocolError("The provider closed the stream before sending anything.")
    return out


async def rest(chunks: AsyncIterator[bytes], translator: StreamTranslator, redactor: Redactor,
               bound: StreamBound) -> AsyncIterator[bytes]:
    """The stream after its first output, within `bound`."""
    try:
        while True:
            bound.reading()
            try:
                data = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                bound.check_error()
                raise
            bound.done_reading()
            out = translator.feed(data)
            if out:
                yield out
        tail = translator.finish()
    except GatewayError as error:
        raise redactor.error(error) from None
    finally:
        bound.stop()
    if tail:
        yield tail
    if not translator.done:
        raise UpstreamProtocolError("The provider's stream ended before it was complete.")
