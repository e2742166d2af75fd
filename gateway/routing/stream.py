"""A stream's reading after the attempt loop chose it: up to its first real event (the commit point),
then the rest, bounded in time, with every error raised from upstream text redacted.

Time bounds of a committed stream: it ends by the alias's deadline, and no read from the provider
waits longer than the alias's `stream_idle_timeout`. One timer per stream does both (StreamBound):
a read only notes when it began, and the timer, when it fires, checks whether the read it finds
has waited too long. An `asyncio.timeout` around every read would cost a timer and a context object
per network read, several times the rest of the per-chunk work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.errors import GatewayError, UpstreamProtocolError, UpstreamTimeoutError
from gateway.providers import StreamTranslator
from gateway.providers.redact import Redactor


class StreamBound:
    """Cancels the stream's reading task when the stream passes its end (loop time) or one read has
    waited `idle` seconds; `check_error` then turns that cancellation into an UpstreamTimeoutError."""

    __slots__ = ("_cancelling", "_handle", "_loop", "_since", "_task", "deployment", "end", "fired", "idle")

    def __init__(self, deployment: str, seconds_left: float, idle: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.deployment = deployment
        self.end = self._loop.time() + seconds_left
        self.idle = idle
        self.fired: str | None = None
        self._since: float | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._handle: asyncio.TimerHandle | None = None

    def reading(self) -> None:
        """A read from the provider begins."""
        now = self._loop.time()
        if now >= self.end:
            raise self._timeout("total")
        self._since = now
        task = self._task = asyncio.current_task()
        assert task is not None
        self._cancelling = task.cancelling()
        if self._handle is None:
            self._handle = self._loop.call_at(min(self.end, now + self.idle), self._check)

    def done_reading(self) -> None:
        self._since = None

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None or self._task is None:
            return  # not waiting on the provider (the client is reading): the next read rearms
        now = self._loop.time()
        if now >= self.end:
            self.fired = "total"
        elif now - since >= self.idle:
            self.fired = "idle"
        else:
            self._handle = self._loop.call_at(min(self.end, since + self.idle), self._check)
            return
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
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._task = None


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
