"""Keep-alive pools per origin, and the answer a request returns."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urlsplit

from gateway.httpclient.connection import ConnectError, Connection, HeaderError, ProtocolError
from gateway.httpclient.dial import Proxy, open_connection, proxy_for

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Header names already checked (a provider sends the same handful on every request); bounded.
_GOOD_NAMES: set[str] = set()

# Seconds idle after which a connection's socket is checked (one system call) before it is reused.
PROBE_AFTER_IDLE = 1.0
# Told the seconds a request waited for a free connection, when the pool was full.
PoolWaitObserver = Callable[[float], None]


class Response:
    """An answer whose headers have arrived; the body is read whole or streamed."""

    __slots__ = ("_conn", "_pool", "_released", "headers", "status")

    def __init__(self, conn: Connection, pool: Pool) -> None:
        self._conn = conn
        self._pool = pool
        self._released = False
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; past `limit` bytes (after decoding), a ProtocolError."""
        conn = self._conn
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                # Taking what arrived as it arrives keeps back-pressure from pausing a body that is
                # being read whole (a large answer would otherwise never complete).
                data = conn.take_body()
                if data:
                    size += len(data)
                    if limit is not None and size > limit:
                        raise ProtocolError(f"the answer is larger than {limit} bytes")
                    parts.append(data)
                if conn.complete:
                    break
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
            if conn.error is not None:
                raise conn.error
            return parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            self._release()

    async def chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        try:
            while True:
                data = conn.take_body()
                if data:
                    yield data
                    continue
                if conn.complete:
                    return
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        finally:
            self._release()

    def close(self) -> None:
        """Abandon the answer: the connection is dropped (so the server stops producing it) unless
        it was already read to the end."""
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._conn)


class Pool:
    """Keep-alive connections to one origin (scheme, host, port), at most `size` at once."""

    def __init__(self, url: str, *, size: int, connect_timeout: float, idle_timeout: float = 4.0,
                 ssl_context: ssl.SSLContext | None = None, proxy: Proxy | None = None,
                 max_decoded: int = 32 * 1024 * 1024, on_wait: PoolWaitObserver | None = None) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        if self.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {self.scheme!r}")
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        default_port = self.port == (443 if self.scheme == "https" else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not self.host.startswith("["):  # IPv6 literal
            self.host_header = f"[{self.host}]" if default_port else f"[{self.host}]:{self.port}"
        self.ssl = (ssl_context or ssl.create_default_context()) if self.scheme == "https" else None
        self.proxy = proxy
        # Plain http through a proxy: requests go to the proxy in absolute form.
        self._absolute = f"http://{self.host_header}" if proxy is not None and self.ssl is None else ""
        self._extra_head = (f"proxy-authorization: {proxy.authorization}\r\n"
                            if self._absolute and proxy is not None and proxy.authorization else "")
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_decoded = max_decoded
        self.on_wait = on_wait
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    async def request(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
                      on_slot: Callable[[], None] | None = None) -> Response:
        """Send one request (`target` is the path and query, already encoded) and wait for the
        answer's headers. `on_slot` runs once the request holds a connection slot (the time before
        was spent waiting for the pool, not for the server). Never sent twice: a failure after the
        request went out is the caller's to see."""
        payload = self._encode(method, target, headers, body)
        slots = self._slots
        if slots.locked():
            waited_from = time.monotonic()
            await slots.acquire()
            if self.on_wait is not None:
                self.on_wait(time.monotonic() - waited_from)
        else:
            await slots.acquire()
        try:
            if on_slot is not None:
                on_slot()
            conn = await self._checkout()
            return await self._exchange(conn, payload)
        except BaseException:
            slots.release()
            raise

    def _encode(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> bytes:
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        # Each field has exactly one CR and one LF, its own, and no NUL: nothing can split it.
        if fields.count("\n") != len(headers) or fields.count("\r") != len(headers) or "\0" in fields:
            raise HeaderError(next(n for n, v in headers.items() if not _clean(n) or not _clean(v)))
        if not _GOOD_NAMES.issuperset(headers):
            for name in headers:
                if not _TOKEN.fullmatch(name):
                    raise HeaderError(name)
            if len(_GOOD_NAMES) < 1024:
                _GOOD_NAMES.update(headers)
        if " " in target or not target.isprintable():
            raise HeaderError(":path")
        head = (f"{method} {self._absolute}{target} HTTP/1.1\r\nhost: {self.host_header}\r\n"
                f"content-length: {len(body)}\r\n{self._extra_head}{fields}\r\n")
        try:
            return head.encode("latin-1") + body
        except UnicodeEncodeError:
            raise HeaderError(next((n for n, v in headers.items() if not v.isascii()), ":path")) from None

    async def _exchange(self, conn: Connection, payload: bytes) -> Response:
        assert conn.transport is not None
        conn.transport.write(payload)
        try:
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        except BaseException:
            conn.close()
            raise
        return Response(conn, self)

    async def _checkout(self) -> Connection:
        now = time.monotonic()
        idle = self._idle
        while idle:
            conn = idle.pop()
            # A server that closes idle connections sooner than it says: after a quiet spell, ask the
            # socket, as the loop may not have read the close yet (a request on it would be lost).
            if conn.alive(now) and (now - conn.idle_since < PROBE_AFTER_IDLE or not conn.readable()):
                conn.reset()
                return conn
            conn.close()
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await open_connection(self.host, self.port, ssl_context=self.ssl, proxy=self.proxy,
                                             max_decoded=self.max_decoded)
        except TimeoutError:
            raise ConnectError("connect timed out") from None

    def release(self, conn: Connection) -> None:
        """Back to the pool when the exchange finished cleanly; otherwise closed."""
        self._slots.release()
        if not self._closed and conn.reusable():
            conn.park(self.idle_timeout)
            if self._idle and not self._idle[0].alive(time.monotonic()):
                self._prune()
            self._idle.append(conn)
        else:
            conn.close()

    def _prune(self) -> None:
        """Checkout takes the newest idle connection, so after a burst the oldest would linger."""
        now = time.monotonic()
        alive = []
        for conn in self._idle:
            if conn.alive(now):
                alive.append(conn)
            else:
                conn.close()
        self._idle = alive

    def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def _clean(text: str) -> bool:
    return "\r" not in text and "\n" not in text and "\0" not in text


class Client:
    """Pools by origin, for one provider (its base URL and any URL its adapter builds)."""

    def __init__(self, *, pool_size: int, connect_timeout: float, idle_timeout: float = 4.0,
                 ca_file: str | None = None, verify: bool = True, proxy: str | None = None,
                 max_decoded: int = 32 * 1024 * 1024, on_pool_wait: PoolWaitObserver | None = None) -> None:
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._ssl: ssl.SSLContext | None = None
        self._ca_file = ca_file
        self._verify = verify
        self._proxy = proxy
        self._max_decoded = max_decoded
        self._on_pool_wait = on_pool_wait
        self._pools: dict[str, Pool] = {}
        # URL → (pool, request target): adapters reuse a handful of URLs, so each is split once.
        self._targets: dict[str, tuple[Pool, str]] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = ssl.create_default_context(cafile=self._ca_file)
            if not self._verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        return self._ssl

    def _resolve(self, url: str) -> tuple[Pool, str]:
        found = self._targets.get(url)
        if found is not None:
            return found
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        pool = self._pools.get(origin)
        if pool is None:
            context = self._ssl_context() if parts.scheme == "https" else None
            proxy = proxy_for(parts.scheme, parts.hostname or "", self._proxy)
            pool = self._pools[origin] = Pool(origin, size=self._pool_size, connect_timeout=self._connect_timeout,
                                              idle_timeout=self._idle_timeout, ssl_context=context, proxy=proxy,
                                              max_decoded=self._max_decoded, on_wait=self._on_pool_wait)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if len(self._targets) > 4096:
            self._targets.clear()
        self._targets[url] = (pool, target)
        return pool, target

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                      on_slot: Callable[[], None] | None = None) -> Response:
        pool, target = self._resolve(url)
        return await pool.request(method, target, headers, body, on_slot)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._targets.clear()
