"""One keep-alive HTTP/1.1 connection as an asyncio protocol over the httptools (llhttp) parser."""

from __future__ import annotations

import asyncio
import collections
import select
import time
import zlib
from typing import Any

import httptools

# Past this much unread body, reading from the socket pauses until the consumer catches up.
HIGH_WATER = 256 * 1024
# An answer's status line and headers: real providers send 1-4 KB in 10-40 headers.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 256


class ConnectError(Exception):
    """The connection could not be made: the request never left the gateway."""

    def __init__(self, reason: str, errno: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errno = errno


class ProtocolError(Exception):
    """The request went out and the answer failed: the server broke the connection, answered
    something that is not HTTP, or answered past a bound."""


class HeaderError(ValueError):
    """A request header the client refuses to write (a line break or NUL would split it)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"header {name!r} has a name or value with CR, LF or NUL, or is not latin-1")
        self.name = name


class _AfterTheAnswer(Exception):
    """Another message began after the answer was complete."""


class Connection(asyncio.Protocol):
    """Carries one exchange at a time (no pipelining). Between exchanges it is idle: bytes that
    arrive then (an unsolicited 408, a stray answer) make it unusable rather than being read as the
    next request's answer."""

    __slots__ = ("_body", "_body_size", "_decoder", "_head_bytes", "_header_count", "_headers", "_paused",
                 "_waiter", "closed", "complete", "error", "framed", "headers_done", "idle", "idle_since",
                 "idle_until", "keep_alive", "max_decoded", "parser", "status", "transport")

    def __init__(self, max_decoded: int = 32 * 1024 * 1024) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle = False
        self.idle_since = self.idle_until = 0.0
        self.max_decoded = max_decoded
        self._paused = False
        self.reset()

    def reset(self) -> None:
        """Ready for the next exchange."""
        if self._paused and self.transport is not None:
            self.transport.resume_reading()
        self.idle = False
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._header_count = 0
        self.headers_done = False
        self.complete = False
        self.framed = False  # Content-Length or chunked: the end is known without closing
        self.keep_alive = False
        self.error: BaseException | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._body_size = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.idle or self.error is not None:
            self._fail(ProtocolError("the server sent bytes nobody asked for"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("unexpected protocol upgrade"))
            return
        except httptools.HttpParserError as exc:
            if self.complete:  # bytes after the whole answer: the answer stands, the connection goes
                self.keep_alive = False
                self.close()
            else:
                self._fail(ProtocolError(f"invalid HTTP response: {exc}"))
            return
        if not self.headers_done:
            # llhttp buffers a header line until it ends, so the bound is on bytes received.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES or self._header_count > MAX_HEADERS:
                self._fail(ProtocolError(f"the answer's headers exceed {MAX_HEAD_BYTES} bytes or "
                                         f"{MAX_HEADERS} fields"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.error is None and not self.complete and not self.idle:
            if self.headers_done and not self.framed and exc is None:
                self.complete = True  # a body delimited by a clean end of the connection
            elif exc is not None:
                self.error = ProtocolError(f"the connection broke mid-exchange ({type(exc).__name__})")
            elif not self.headers_done:
                self.error = ProtocolError("the server closed the connection before answering")
            else:
                self.error = ProtocolError("the connection closed mid-answer")
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    # -- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:
            raise _AfterTheAnswer  # stops the parser: see data_received

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count <= MAX_HEADERS:
            self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        # Asked here: llhttp answers "no" once the message is complete, whatever the headers said.
        self.keep_alive = self.parser.should_keep_alive()
        headers = self._headers
        self.framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()
        encoding = headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            self._decoder = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, detected
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.error is not None:
            return
        decoder = self._decoder
        if decoder is not None:
            # Bounded: a few KB of gzip can inflate to gigabytes.
            body = decoder.decompress(body, self.max_decoded)
            if decoder.unconsumed_tail:
                self._fail(ProtocolError(f"the answer inflates past {self.max_decoded} bytes"))
                return
        if body:
            self._body.append(body)
            self._body_size += len(body)
            if self._body_size > HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        if self.error is not None:
            return
        if not self.headers_done:
            # The end of an interim answer: forget its headers, parse the next one.
            self._headers = {}
            self._header_count = 0
            self._head_bytes = 0
            return
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self._body.append(rest)
        self.complete = True
        self._wake()

    # -- the client side ------------------------------------------------------------------------
    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until something happens (headers, body, the end, an error)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take_body(self) -> bytes:
        body = self._body
        if not body:
            return b""
        data = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self._body_size = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    def reusable(self) -> bool:
        """Back into the pool only when the exchange ended cleanly: complete, framed, keep-alive, and
        read to its end (an abandoned answer may have reading paused, or bytes nobody took)."""
        return (self.complete and self.error is None and not self.closed and self.transport is not None
                and not self.transport.is_closing() and self.keep_alive and self.framed
                and not self._paused and not self._body)

    def park(self, idle_timeout: float) -> None:
        """Idle in the pool until `idle_timeout` from now, or less when the server said (with
        `Keep-Alive: timeout=N`) that it closes sooner: a second early, as its clock started first."""
        advertised = _keep_alive_timeout(self._headers.get("keep-alive"))
        if advertised is not None:
            idle_timeout = min(idle_timeout, advertised - 1.0)
        self.idle = True
        self.idle_since = time.monotonic()
        self.idle_until = self.idle_since + idle_timeout

    def alive(self, now: float) -> bool:
        """An idle connection that may carry the next request: still open, nothing unexpected
        received, within its idle time."""
        return (not self.closed and self.error is None and now < self.idle_until and self.transport is not None
                and not self.transport.is_closing())

    def readable(self) -> bool:
        """Whether the socket has something the event loop has not read yet: after a quiet spell, the
        end of the connection (the server closed it while idle) may be waiting there."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        try:
            ready, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(ready)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def _keep_alive_timeout(value: str | None) -> float | None:
    if not value:
        return None
    for part in value.split(","):
        key, _, number = part.partition("=")
        if key.strip().lower() == "timeout":
            try:
                return float(number.strip())
            except ValueError:
                return None
    return None
