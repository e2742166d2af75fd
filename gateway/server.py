"""The server's side of each client connection: uvicorn's httptools protocol, bounded.

The protocol bounds what one client may hold before the app sees its request (uvicorn bounds none
of it): the size and number of a request's header fields (431), the time its headers and its body may
take to arrive (408), how long a connection may wait for its first request, and how many connections
are open at once (503). Each refusal is an OpenAI-shaped JSON error, counted in
gateway_connections_refused_total. None of this costs a timer on the common path: a deadline is armed
only when a read ends with a request's head or body unfinished.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.config import ServerConfig
from gateway.endpoints.asgi import DISCONNECT_SLOT, DisconnectSlot
from gateway.errors import (
    GatewayError,
    HeadersTooLargeError,
    InvalidRequestError,
    RequestTimeoutError,
    TooManyConnectionsError,
)
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.middleware.edge import READ_TIMED_OUT
from gateway.runtime import Services

log = get_logger("server")


def _services(app: object) -> Services | None:
    """The gateway's services, under whatever uvicorn wrapped the app in (proxy headers, trace logging)."""
    for _ in range(4):
        state = getattr(app, "state", None)
        if state is not None:
            services = getattr(state, "services", None)
            return services if isinstance(services, Services) else None
        app = getattr(app, "app", None)
    return None


def error_response(error: GatewayError) -> bytes:
    """A whole answer, written by the protocol itself (there is no request for the app to answer):
    the error's OpenAI body, and the connection closed after it."""
    body = error.to_body()
    head = [STATUS_LINE[error.http_status], b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
    head.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in error.headers.items())
    return b"".join(head) + b"\r\n" + body


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (parsing, keep-alive, flow control, pipelining: all uvicorn's)
    with the bounds of `server:` on each connection, telling the app at once when its client is gone
    (a DisconnectSlot in the scope: without it, noticing costs the app a task per request that waits
    on `receive`)."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],  # (uvicorn's types)
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        services = _services(self.app)
        runtime = services.runtime if services is not None else None
        limits = runtime.config.server if runtime is not None else ServerConfig()
        self.metrics: Metrics | None = services.metrics if services is not None else None
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.max_connections = limits.max_connections
        # uvicorn declares an int; the event loop's timers take seconds as a float.
        self.timeout_keep_alive = cast(int, limits.keepalive_timeout)
        # Between requests and until a request's headers are complete; the bytes read meanwhile.
        self._reading_head = True
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio declares a BaseTransport; uvicorn's override narrows it to the Transport a TCP server gives.
        super().connection_made(cast(asyncio.Transport, transport))
        if len(self.connections) > self.max_connections:
            self._refuse(TooManyConnectionsError(
                "The gateway has too many open connections; retry shortly.", headers={"retry-after": "1"}),
                "max_connections")
            return
        # uvicorn arms its keep-alive timer only after a first answer: a connection that never sends
        # a request would be held forever.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and cycle.disconnected:
            slot = cycle.scope.get(DISCONNECT_SLOT)
            if isinstance(slot, DisconnectSlot):
                slot.lost()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._reading_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refused = exc.__context__  # what a parser callback raised, if one did
            if isinstance(refused, HeadersTooLargeError):
                self._refuse(refused, "headers_too_large")
            else:
                self._refuse(InvalidRequestError("The request is not valid HTTP/1.1.", code="invalid_http_request"),
                             "bad_request")
            return
        if self._reading_head:
            if self._head_bytes > self.max_header_bytes:
                self._refuse(self._too_large(), "headers_too_large")
            elif self._head_bytes and self._deadline is None:
                self._deadline = self.loop.call_later(self.header_timeout, self._head_late)
        elif self._deadline is None:
            cycle = self.cycle
            if cycle is not None and cycle.more_body and not cycle.response_complete:
                self._deadline = self.loop.call_later(self.body_timeout, self._body_late)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        if self._deadline is not None:
            self._disarm()
        if len(self.headers) > self.max_headers or (
                # The bytes read may include body bytes that came with the head: measure the head itself.
                self._head_bytes > self.max_header_bytes
                and len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > self.max_header_bytes):
            raise self._too_large()
        # uvicorn types the scope as the ASGI spec's TypedDict, which has no room for a server's extension keys.
        self.scope[DISCONNECT_SLOT] = DisconnectSlot()  # type: ignore[literal-required]
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0
        if self._deadline is not None:
            self._disarm()

    def _too_large(self) -> HeadersTooLargeError:
        return HeadersTooLargeError(f"The request's headers are too large: at most {self.max_headers} fields and "
                                    f"{self.max_header_bytes} bytes with the request line.")

    def _head_late(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A pipelined request arriving while the one before it is answered: its clock starts later.
            self._deadline = self.loop.call_later(self.header_timeout, self._head_late)
            return
        self._refuse(RequestTimeoutError(f"The request's headers did not arrive within {self.header_timeout:g}s."),
                     "header_timeout")

    def _body_late(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or (cycle.response_started and not cycle.response_complete):
            return
        if cycle.response_complete:  # answered already (say, 401 before the body): nobody waits for more
            self._count("body_timeout")
            self.transport.close()
            return
        cycle.scope[READ_TIMED_OUT] = True  # type: ignore[literal-required]  # (an extension key: see above)
        self._refuse(RequestTimeoutError(f"The request's body did not arrive within {self.body_timeout:g}s."),
                     "body_timeout")
        # The app is waiting for the rest of the body: it learns the client is gone, and answers nobody.
        cycle.disconnected = True
        cycle.message_event.set()

    def _refuse(self, error: GatewayError, reason: str) -> None:
        self._count(reason)
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(error_response(error))
            self.transport.close()

    def _count(self, reason: str) -> None:
        metrics = self.metrics
        if metrics is not None:
            metrics.child(metrics.connections_refused, reason).inc()

    def _disarm(self) -> None:
        deadline = self._deadline
        if deadline is not None:
            deadline.cancel()
            self._deadline = None


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


# Connections taken each time the listening socket is ready: a burst is let in at once, and one turn
# of the loop still cannot be spent accepting alone.
ACCEPT_BATCH = 256
# After the process ran out of file descriptors (EMFILE): how long to leave the queue to the kernel.
ACCEPT_PAUSE = 0.5
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Acceptor(asyncio.AbstractServer):
    """A server on one listening socket that accepts its connections itself, ACCEPT_BATCH at a time,
    and hands each to the event loop as an accepted socket.

    Why not uvloop's own server: libuv accepts one connection per turn of the loop, and a turn of a
    loop serving a thousand streams lasts tens of milliseconds, so a burst of new clients waited
    seconds in the listen queue while the kernel had long accepted them, and the queue overflowed
    into resets. A reader on the listening socket takes them all at once. (asyncio's own server
    already accepts in batches.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Callable[[], asyncio.BaseProtocol], backlog: int) -> None:
        self.loop = loop
        self._sock = sock
        self._factory = protocol_factory
        self._handing: set[asyncio.Task[None]] = set()
        self._open = True
        self._closed: asyncio.Future[None] = loop.create_future()
        sock.setblocking(False)
        sock.listen(backlog)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_DESCRIPTORS:
                    raise
                # The queue stays with the kernel until descriptors free up; a reader left in place
                # would spin on a socket that stays readable.
                self.loop.remove_reader(self._sock.fileno())
                self.loop.call_later(ACCEPT_PAUSE, self._resume)
                return
            conn.setblocking(False)
            task = self.loop.create_task(self._hand_over(conn))
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)

    async def _hand_over(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self._factory, conn)
        except OSError:  # the client left before its connection was set up
            conn.close()
        except Exception:  # a fault of ours: this client is dropped, the next ones are still served
            conn.close()
            log.exception("a new connection could not be set up")

    def _resume(self) -> None:
        if self._open:
            self.loop.add_reader(self._sock.fileno(), self._accept)

    # -- asyncio.AbstractServer ------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting, and close the listening socket."""
        if self._open:
            self._open = False
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()  # as asyncio's servers close theirs (the fd is this process's copy)
            self._closed.set_result(None)

    async def start_serving(self) -> None:
        return None  # serving since it was made

    async def serve_forever(self) -> None:
        await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        if self._handing:
            await asyncio.gather(*self._handing, return_exceptions=True)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def is_serving(self) -> bool:
        return self._open

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)


def uvloop_accepting() -> asyncio.AbstractEventLoop:
    """The event loop of `server.loop: uvloop` (uvicorn's `loop="gateway.server:uvloop_accepting"`,
    in every worker): uvloop, whose servers on a given socket (as `gateway serve` and its workers
    start them) accept through an Acceptor."""
    import uvloop

    class AcceptingLoop(uvloop.Loop):
        async def create_server(  # type: ignore[override]
                self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: Any = None, port: Any = None,
                *, sock: socket.socket | None = None, backlog: int = 100, ssl: Any = None,
                **options: Any) -> asyncio.AbstractServer:
            # (Any where asyncio's overloads take what they take: anything but a plain socket goes on.)
            if sock is None or ssl is not None or options:
                return await super().create_server(protocol_factory, host, port, sock=sock, backlog=backlog,
                                                   ssl=ssl, **options)
            return Acceptor(self, sock, protocol_factory, backlog)

    return AcceptingLoop()


# `server.loop` → uvicorn's `loop` setting.
LOOPS = {"uvloop": "gateway.server:uvloop_accepting", "asyncio": "asyncio"}


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
