"""Opening a connection: the address race (happy eyeballs), forward proxies and CONNECT tunnels.

uvloop's `create_connection` has no `happy_eyeballs_delay`, so the race is done here on plain
sockets, and the connection is then made on the winning socket.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.httpclient.connection import MAX_HEAD_BYTES, ConnectError, Connection

AddressInfo = tuple[Any, ...]  # one getaddrinfo entry: family, type, proto, canonname, address

# RFC 8305's recommended wait before the next address is tried alongside the first.
HAPPY_EYEBALLS_DELAY = 0.25
# The per-provider `proxy:` value that ignores the environment's proxies.
DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # a Proxy-Authorization value, from credentials in the proxy URL


def proxy_for(scheme: str, host: str, setting: str | None) -> Proxy | None:
    """The proxy a connection to `host` goes through: `setting` (a URL, or "direct"), or when unset
    the environment's HTTPS_PROXY / HTTP_PROXY, unless NO_PROXY names the host."""
    if setting == DIRECT:
        return None
    if setting is None:
        proxies = urllib.request.getproxies_environment()
        url = proxies.get(scheme)
        if not url or _bypassed(host, proxies.get("no", "")):
            return None
    else:
        url = setting
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"unsupported proxy {parts.scheme}://{parts.hostname or ''}: only http:// proxies are")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, parts.port or 80, authorization)


def _bypassed(host: str, no_proxy: str) -> bool:
    """NO_PROXY as curl reads it: `*`, or host names matching exactly or as a domain suffix
    (`example.com` and `.example.com` both cover `api.example.com`); a `:port` suffix is ignored."""
    host = host.lower().strip("[]")
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if entry.startswith("[") and "]" in entry:
            entry = entry[1:entry.index("]")]
        elif entry.count(":") == 1:
            entry = entry.partition(":")[0]
        entry = entry.lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


async def open_connection(host: str, port: int, *, ssl_context: ssl.SSLContext | None, proxy: Proxy | None,
                          max_decoded: int) -> Connection:
    """A connection to the origin (or, for plain http through a proxy, to the proxy). Raises
    ConnectError; the caller bounds the time."""
    loop = asyncio.get_running_loop()
    dial_host, dial_port = (proxy.host, proxy.port) if proxy is not None else (host, port)
    try:
        sock = await _race(dial_host, dial_port)
    except socket.gaierror:
        raise ConnectError(f"could not resolve host '{dial_host}'") from None
    except OSError as exc:
        raise ConnectError(exc.strerror or type(exc).__name__, exc.errno) from None
    try:
        def factory() -> Connection:
            return Connection(max_decoded)
        if proxy is not None and ssl_context is not None:
            return await _tunnel(loop, sock, factory, host, port, ssl_context, proxy)
        _, conn = await loop.create_connection(factory, sock=sock, ssl=ssl_context,
                                               server_hostname=host if ssl_context is not None else None)
        return conn
    except ssl.SSLError as exc:
        sock.close()
        raise ConnectError(f"TLS handshake failed: {exc.reason or type(exc).__name__}") from None
    except OSError as exc:
        sock.close()
        raise ConnectError(exc.strerror or type(exc).__name__, exc.errno) from None
    except BaseException:
        sock.close()
        raise


async def _race(host: str, port: int) -> socket.socket:
    """Connect to the first address that answers: the next address (the other family first) is
    tried alongside whenever the previous one has not connected within HAPPY_EYEBALLS_DELAY."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = _interleave(infos)
    pending: set[asyncio.Task[socket.socket]] = set()
    error: OSError | None = None
    try:
        for i, info in enumerate(addresses):
            pending.add(loop.create_task(_connect_one(info)))
            last = i == len(addresses) - 1
            while pending:
                done, pending = await asyncio.wait(pending, timeout=None if last else HAPPY_EYEBALLS_DELAY,
                                                   return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break  # none answered yet: start the next address alongside
                winner = _take_winner(done)
                if winner is not None:
                    return winner
                error = next(iter(done)).exception()  # type: ignore[assignment]
                if not last:
                    break  # all failed so far: the next address at once
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            task.add_done_callback(_close_late_winner)
    raise error or OSError("no address to connect to")


def _take_winner(done: set[asyncio.Task[socket.socket]]) -> socket.socket | None:
    winner = None
    for task in done:
        if task.exception() is None:
            if winner is None:
                winner = task.result()
            else:
                task.result().close()
    return winner


def _close_late_winner(task: asyncio.Task[socket.socket]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()


async def _connect_one(info: AddressInfo) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.get_running_loop().sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


def _interleave(infos: list[AddressInfo],
                ) -> list[AddressInfo]:
    """Alternate the address families, the resolver's first family first (RFC 8305)."""
    by_family: dict[int, list[AddressInfo]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    queues = list(by_family.values())
    out = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out


class _TunnelReply(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end >= 0 and not self.done.done():
            self.done.set_result(bytes(self.head[:end]))
        elif len(self.head) > MAX_HEAD_BYTES and not self.done.done():
            self.done.set_exception(ConnectError("the proxy's answer to CONNECT is too large"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectError("the proxy closed the connection during CONNECT"))


async def _tunnel(loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], Connection], host: str,
                  port: int, ssl_context: ssl.SSLContext, proxy: Proxy) -> Connection:
    """CONNECT through the proxy, then TLS with the origin inside the tunnel."""
    transport, reply = await loop.create_connection(_TunnelReply, sock=sock)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        auth = f"proxy-authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        transport.write(f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n{auth}\r\n".encode("latin-1"))
        head = await reply.done
        status_line = head.split(b"\r\n", 1)[0].split(b" ", 2)
        status = status_line[1] if len(status_line) > 1 else b""
        if not status.startswith(b"2"):
            raise ConnectError(f"the proxy refused the tunnel (HTTP {status.decode('latin-1')[:3]})")
        conn = factory()
        tls = await loop.start_tls(transport, conn, ssl_context, server_hostname=host)
        if tls is None:
            raise ConnectError("TLS inside the proxy tunnel could not start")
    except BaseException:
        transport.close()
        raise
    conn.connection_made(tls)
    return conn
