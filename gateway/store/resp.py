"""The request connection: the Redis client of the per-request calls (the limiter's reserve and the
settle batch) on a single Redis server, one pipelined connection shared by every request, RESP packed
by hand, replies parsed by hiredis.

Why not redis-py for these: its asyncio client checks a connection out of a pool behind a lock, runs
every argument through its encoder and packs each command separately; measured on the benchmark that
costs the gateway 200-350 µs of CPU per round trip, more than the rest of a proxied request. Here a
round trip is one `bytes` join, one write per event-loop turn for all the requests that sent in that
turn, and one hiredis parse per read.

Replies come back in the order the commands went out (Redis answers a connection in order), so each
call just takes the next N replies. Errors are returned in place as redis-py's exception classes
(`NoScriptError`, `ReadOnlyError`, `ResponseError`...), so callers treat both clients alike; a lost
connection fails every call in flight with redis-py's `ConnectionError` and the next call reconnects.

A Sentinel-managed master is served too: the sentinels are asked for its address at each connect
(through redis-py's Sentinel client) and after a failed call (`follow`). Cluster and TLS stay on
redis-py (store/topology.py: `request_connection`)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

Command = Sequence[Any]


def request_connection_serves(url: str) -> bool:
    """Whether `url` names one plain-TCP or unix-socket Redis this client can serve."""
    parts = urlsplit(url)
    return parts.scheme in ("redis", "unix") and not parts.query.replace("db=", "").strip("0123456789")


def pack(commands: Sequence[Command]) -> bytes:
    """RESP arrays of bulk strings, as redis-py would encode them (str as UTF-8, numbers as text)."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, bytes):
                data = arg
            elif isinstance(arg, str):
                data = arg.encode()
            elif isinstance(arg, int):
                data = b"%d" % arg
            elif isinstance(arg, float):
                data = repr(arg).encode()
            else:
                raise TypeError(f"cannot send {type(arg).__name__} to Redis")
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _error(reply: hiredis.ReplyError) -> RedisError:
    return BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call,no-any-return]


def _convert(reply: Any) -> Any:
    if isinstance(reply, hiredis.ReplyError):
        return _error(reply)
    if isinstance(reply, list):
        return [_convert(item) for item in reply]
    return reply


class _Call:
    __slots__ = ("future", "left", "replies", "sent")

    def __init__(self, future: asyncio.Future[list[Any]], left: int) -> None:
        self.future = future
        self.left = left
        self.replies: list[Any] = []
        self.sent = time.monotonic()


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.calls: deque[_Call] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def send(self, payload: bytes, call: _Call) -> None:
        if self.lost is not None:  # closed since the caller looked: fail now, nothing would answer
            call.future.set_exception(self.lost)
            return
        # Writes from every request in this loop turn leave in one syscall.
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(payload)
        self.calls.append(call)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        calls = self.calls
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if not calls:  # a reply nobody asked for: the stream is out of step, start over
                self.close(RedisConnectionError("unexpected reply from Redis"))
                return
            call = calls[0]
            call.replies.append(reply)
            call.left -= 1
            if call.left == 0:
                calls.popleft()
                if not call.future.done():  # the caller may have given up (its timeout)
                    call.future.set_result(call.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(RedisConnectionError(f"Redis connection lost: {exc or 'closed by the server'}"))

    def close(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        while self.calls:
            call = self.calls.popleft()
            if not call.future.done():
                call.future.set_exception(self.lost)
        if self.transport is not None:
            self.transport.abort()


class RequestConnection:
    """One pipelined connection to one Redis, shared by every request's calls, opened on first use and
    again after a loss. With
    `resolve` (Sentinel: ask the sentinels for the master) the address is looked up at each connect."""

    def __init__(self, *, timeout: float, host: str = "127.0.0.1", port: int = 6379, unix_path: str = "",
                 username: str | None = None, password: str | None = None, db: int = 0,
                 resolve: Callable[[], Awaitable[tuple[str, int]]] | None = None) -> None:
        self.timeout = timeout
        self.host, self.port, self.unix_path = host, port, unix_path
        self.username, self.password, self.db = username, password, db
        self.resolve = resolve
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, timeout: float) -> RequestConnection:
        parts = urlsplit(url)
        unix = parts.scheme == "unix"
        query_db = dict(p.partition("=")[::2] for p in parts.query.split("&") if p).get("db", "")
        return cls(timeout=timeout, host=parts.hostname or "127.0.0.1", port=parts.port or 6379,
                   unix_path=parts.path if unix else "",
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   db=int(query_db or (parts.path.strip("/") if not unix else "") or 0))  # ?db= wins, as in redis-py

    def follow(self, host: str, port: int) -> None:
        """(Sentinel) The master is at host:port now: if that is not where this client is connected,
        drop the connection, and the next call connects (and resolves) again."""
        conn = self._conn
        if conn is not None and (host, port) != (self.host, self.port):
            conn.close(RedisConnectionError("the master moved"))

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send the commands in one write; their replies in order, errors as exception objects."""
        if not commands:
            return []
        conn = self._conn
        if conn is None or conn.lost is not None or self._stalled(conn):
            conn = await self._connected()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        conn.send(pack(commands), _Call(future, len(commands)))
        replies = await future
        return [_convert(reply) for reply in replies]

    def _stalled(self, conn: _Connection) -> bool:
        """The oldest call has waited far past the timeout: Redis (or the path to it) is hung, and a
        connection that never errors would otherwise hold every later call too."""
        if conn.calls and time.monotonic() - conn.calls[0].sent > 4 * self.timeout:
            conn.close(RedisConnectionError("Redis stopped answering"))
            return True
        return False

    async def _connected(self) -> _Connection:
        """The connection, opening one if needed: one attempt at a time, shared by every caller, and
        finished (or failed) even if they all give up waiting."""
        if self._closed:
            raise RedisConnectionError("client closed")
        connecting = self._connecting
        if connecting is None:
            connecting = self._connecting = asyncio.ensure_future(self._connect())
            connecting.add_done_callback(self._connect_done)
        try:
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if connecting.cancelled() and (task is None or task.cancelling() == 0):
                # Only aclose() cancels the shared connect, and the caller was not cancelled itself:
                # an error the caller handles, not a cancellation.
                raise RedisConnectionError("client closed") from None
            raise

    def _connect_done(self, task: asyncio.Future[_Connection]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have timed out

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                if self.resolve is not None:
                    self.host, self.port = await self.resolve()
                if self.unix_path:
                    _, conn = await loop.create_unix_connection(_Connection, self.unix_path)
                else:
                    _, conn = await loop.create_connection(_Connection, self.host, self.port)
                setup: list[Command] = []
                if self.password is not None:
                    setup.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
                if self.db:
                    setup.append(("SELECT", self.db))
                if setup:
                    future: asyncio.Future[list[Any]] = loop.create_future()
                    conn.send(pack(setup), _Call(future, len(setup)))
                    failed = next((r for r in await future if isinstance(r, hiredis.ReplyError)), None)
                    if failed is not None:
                        raise _error(failed)
        except BaseException as exc:
            if conn is not None:  # opened, but the handshake failed or timed out: do not leak it
                conn.close(RedisConnectionError("connection setup failed"))
            if isinstance(exc, OSError):
                raise RedisConnectionError(f"cannot connect to Redis: {exc}") from None
            raise
        if self._closed:  # closed while connecting
            conn.close(RedisConnectionError("client closed"))
            raise RedisConnectionError("client closed")
        if self._conn is not None:
            self._conn.close(RedisConnectionError("replaced"))
        self._conn = conn
        return conn

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._conn is not None:
            self._conn.close(RedisConnectionError("client closed"))
            self._conn = None


class RequestBatch:
    """The part of redis-py's pipeline API the settle batch uses, recorded for one `execute`."""

    def __init__(self, client: RequestConnection) -> None:
        self.client = client
        self.commands: list[Command] = []

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> None:
        self.commands.append(("EVALSHA", sha, numkeys, *args))

    def eval(self, source: str, numkeys: int, *args: Any) -> None:
        self.commands.append(("EVAL", source, numkeys, *args))

    def script_load(self, source: str) -> None:
        self.commands.append(("SCRIPT", "LOAD", source))

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)

    def xadd(self, name: str, fields: dict[str, Any], *, maxlen: int | None = None, approximate: bool = True) -> None:
        command: list[Any] = ["XADD", name]
        if maxlen is not None:
            command += ["MAXLEN", "~", maxlen] if approximate else ["MAXLEN", maxlen]
        command.append("*")
        for field, value in fields.items():
            command += (field, value)
        self.commands.append(command)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        results = await self.client.execute(self.commands)
        if raise_on_error:
            failed = next((r for r in results if isinstance(r, ResponseError)), None)
            if failed is not None:
                raise failed
        return results
