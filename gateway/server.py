"""The server's side of each client connection: uvicorn's httptools protocol, with every response head
sent together with the first bytes of its body.

uvicorn writes a response's status line and headers as one send and its body as another. On a
keep-alive connection that is two system calls and two TCP segments per answer, and on loopback the
sender also pays the receiver's share of the TCP work: measured here, the second write cost about
as much CPU as everything the gateway's own code does to route a request. Holding the head until
the body's first bytes follow (they always do at once for the gateway's answers, JSON or the first
SSE event) makes one send of the two.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD_START = b"HTTP/1."
_HEAD_END = b"\r\n\r\n"


class CoalescingTransport:
    """A transport that holds a response head until the next write and sends both as one.

    Correctness never rests on recognising a head: every write leaves in order, and a held one goes
    at the next write, before the transport closes, or at the event loop's next turn (an answer
    whose body is late, or a response that has none), whichever comes first. Everything but the
    writes and `close` is the wrapped transport's own (`abort` drops a held head with the rest)."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(_HEAD_START) and data.endswith(_HEAD_END):
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (parsing, keep-alive, flow control, pipelining: all uvicorn's)
    writing through a CoalescingTransport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts: a port that is taken fails at once,
    before the store, the background tasks and the lifespan exist (and could hold the exit up)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, calling `on_listening` once it accepts connections (the lifespan has started)
    and `on_stopped` once its shutdown, lifespan included, is done."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None],
                 on_stopped: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_listening = on_listening
        self.on_stopped = on_stopped

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_listening()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        self.on_stopped()
