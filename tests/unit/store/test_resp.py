"""The request connection (gateway/store/resp.py): byte-for-byte the commands redis-py would send, replies
and errors as redis-py gives them, many concurrent callers on one connection each getting their own
replies, and recovery from a lost, refused or hung connection. Against the real Redis at 6379 (skipped
when absent) and small fake servers on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.store.resp import RequestBatch, RequestConnection, pack, request_connection_serves

REDIS_URL = "redis://127.0.0.1:6379/0"

args = st.one_of(st.binary(max_size=40), st.text(max_size=40), st.integers(-2**63, 2**63 - 1),
                 st.floats(allow_nan=False, allow_infinity=False))


@given(st.lists(st.lists(args, max_size=6).map(lambda rest: ["EVALSHA", *rest]), min_size=1, max_size=4))
@settings(max_examples=200)
def test_pack_matches_redis_py(commands: list[list[Any]]) -> None:
    connection = Connection()  # (redis-py splits a first argument holding spaces; ours are command names)
    expected = b"".join(b"".join(connection.pack_command(*command)) for command in commands)
    assert pack(commands) == expected


def test_which_urls_the_request_connection_serves() -> None:
    serves = request_connection_serves
    assert serves("redis://127.0.0.1:6379/0") and serves("redis://:pw@h:1/3") and serves("unix:///tmp/r.sock?db=2")
    assert not serves("rediss://h:6379/0")  # TLS stays on redis-py
    assert not serves("redis+sentinel://h:26379/main") and not serves("redis-cluster://h:7000")
    assert not serves("redis://h:6379/0?socket_keepalive=true")


@pytest.fixture
async def connection() -> AsyncIterator[RequestConnection]:
    client = RequestConnection.from_url(REDIS_URL, timeout=1.0)
    try:
        await client.execute([("PING",)])
    except RedisConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    try:
        yield client
    finally:
        await client.aclose()


async def test_replies_and_errors_come_back_in_place(connection: RequestConnection) -> None:
    key = f"t-resp-{uuid4().hex[:8]}"
    try:
        replies = await connection.execute([("SET", key, "v"), ("GET", key), ("INCR", key), ("EVALSHA", "0" * 40, 0),
                                      ("LRANGE", key + ":none", 0, -1), ("EVAL", "return {1, 'a', false}", 0)])
        assert replies[:2] == [b"OK", b"v"]
        assert isinstance(replies[2], ResponseError) and "not an integer" in str(replies[2])
        assert isinstance(replies[3], NoScriptError)
        assert replies[4:] == [[], [1, b"a", None]]
    finally:
        await connection.execute([("DEL", key)])


async def test_concurrent_callers_share_one_connection_and_get_their_own_replies(connection: RequestConnection) -> None:
    key = f"t-resp-{uuid4().hex[:8]}"

    async def caller(n: int) -> None:
        for i in range(20):
            replies = await connection.execute([("ECHO", f"{n}-{i}"), ("HINCRBY", key, str(n), 1)])
            assert replies == [f"{n}-{i}".encode(), i + 1]

    try:
        await asyncio.gather(*(caller(n) for n in range(50)))
    finally:
        await connection.execute([("DEL", key)])


async def test_batch_records_what_the_settle_step_queues(connection: RequestConnection) -> None:
    stream = f"t-resp-{uuid4().hex[:8]}"
    batch = RequestBatch(connection)
    batch.script_load("return 7")
    batch.evalsha("d8f8c9ab1b1b1eb8e25dfab0b0e2f1c59aa9bd0e", 0)  # not loaded: NOSCRIPT in place
    batch.eval("return ARGV[1]", 0, "x")
    batch.xadd(stream, {"r": b"{}"}, maxlen=10)
    batch.execute_command("XLEN", stream)
    try:
        sha, missing, echoed, entry_id, length = await batch.execute(raise_on_error=False)
        assert sha == hashlib.sha1(b"return 7").hexdigest().encode()
        assert isinstance(missing, NoScriptError) and echoed == b"x" and b"-" in entry_id and length == 1
        failing = RequestBatch(connection)
        failing.execute_command("INCR", stream)  # wrong type
        with pytest.raises(ResponseError):
            await failing.execute()
    finally:
        await connection.execute([("DEL", stream)])


async def test_a_selected_database_and_a_refused_password() -> None:
    client = RequestConnection.from_url("redis://127.0.0.1:6379/5", timeout=1.0)
    try:
        try:
            key = f"t-resp-{uuid4().hex[:8]}"
            await client.execute([("SET", key, 1, "EX", 10)])
        except RedisConnectionError:
            pytest.skip("no Redis at 127.0.0.1:6379")
        import redis

        direct = redis.Redis(db=5)
        try:
            assert direct.get(key) == b"1"
            direct.delete(key)
        finally:
            direct.close()
    finally:
        await client.aclose()
    wrong = RequestConnection.from_url("redis://:not-the-password@127.0.0.1:6379/0", timeout=1.0)
    with pytest.raises(AuthenticationError):  # this Redis has no password: AUTH is refused
        await wrong.execute([("PING",)])
    await wrong.aclose()


class FakeRedis:
    """A loopback server: answers `+PONG` to each command, or drops the connection, or never answers."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.open = 0  # connections the client has not closed yet
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.writers.append(writer)
        first = self.connections == 1
        try:
            while data := await reader.read(65536):
                if self.mode == "drop" and first:
                    writer.close()
                    return
                if (self.mode == "hang" and first) or self.mode == "mute":
                    continue
                writer.write(b"+PONG\r\n" * data.count(b"*1\r\n"))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()


async def test_a_dropped_connection_fails_the_calls_in_flight_and_the_next_call_reconnects() -> None:
    fake = FakeRedis("drop")
    async with fake as url:
        client = RequestConnection.from_url(url, timeout=0.5)
        with pytest.raises(RedisConnectionError):
            await client.execute([("PING",)])
        assert await client.execute([("PING",)]) == [b"PONG"]
        assert fake.connections == 2
        await client.aclose()


async def test_a_hung_connection_is_replaced_once_its_oldest_call_is_long_overdue() -> None:
    fake = FakeRedis("hang")
    async with fake as url:
        client = RequestConnection.from_url(url, timeout=0.05)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.execute([("PING",)])
        await asyncio.sleep(0.25)  # past 4 x timeout
        assert await client.execute([("PING",)]) == [b"PONG"]
        assert fake.connections == 2
        await client.aclose()


async def test_nothing_listening_is_a_connection_error() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = RequestConnection.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    with pytest.raises(RedisConnectionError):
        await client.execute([("PING",)])


def test_urls_pick_the_database_as_redis_py_does() -> None:
    assert RequestConnection.from_url("redis://127.0.0.1:6379/0?db=3", timeout=1).db == 3
    assert RequestConnection.from_url("redis://127.0.0.1:6379/2", timeout=1).db == 2
    assert RequestConnection.from_url("unix:///tmp/r.sock?db=4", timeout=1).db == 4


async def test_nothing_to_send_sends_nothing() -> None:
    assert await RequestConnection.from_url("redis://127.0.0.1:1/0", timeout=0.1).execute([]) == []


async def test_a_handshake_that_never_answers_leaves_no_socket_open() -> None:
    fake = FakeRedis("mute")
    async with fake as url:
        client = RequestConnection.from_url(url.replace("redis://", "redis://:secret@"), timeout=0.05)
        for _ in range(3):
            with pytest.raises(RedisConnectionError):
                await client.execute([("PING",)])
        await client.aclose()
        for _ in range(100):  # the server notices the closes on its next loop turns
            if fake.open == 0:
                break
            await asyncio.sleep(0.01)
        assert fake.connections == 3 and fake.open == 0


def behind_a_slow_lookup(url: str, delay: float) -> RequestConnection:
    """A client whose master lookup (as with Sentinel) takes `delay` seconds, then names `url`'s server."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    async def slow_lookup() -> tuple[str, int]:
        await asyncio.sleep(delay)
        return "127.0.0.1", port

    return RequestConnection(timeout=1.0, resolve=slow_lookup)


async def test_a_connect_every_caller_gave_up_on_still_serves_the_next_call() -> None:
    """A slow master lookup (Sentinel): the caller times out, the connect finishes anyway; the server
    then drops that connection; the next call must reconnect, not be sent into the dead one."""
    fake = FakeRedis("pong")
    async with fake as url:
        client = behind_a_slow_lookup(url, 0.1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await client.execute([("PING",)])
        for _ in range(100):
            if fake.connections:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)
        for writer in fake.writers:
            writer.close()  # the server drops it
        await asyncio.sleep(0.05)
        async with asyncio.timeout(2):
            assert await client.execute([("PING",)]) == [b"PONG"]
        assert fake.connections == 2
        await client.aclose()


async def test_closing_during_a_connect_leaves_nothing_open() -> None:
    fake = FakeRedis("pong")
    async with fake as url:
        client = behind_a_slow_lookup(url, 0.05)
        call = asyncio.ensure_future(client.execute([("PING",)]))
        await asyncio.sleep(0.01)
        await client.aclose()
        with pytest.raises(RedisConnectionError):  # an error the store handles, not a cancellation
            await call
        await asyncio.sleep(0.1)
        assert fake.open == 0
        with pytest.raises(RedisConnectionError):
            await client.execute([("PING",)])
