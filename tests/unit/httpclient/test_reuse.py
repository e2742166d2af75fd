"""When a keep-alive connection may carry the next request, and what happens when it fails."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from gateway.httpclient import Client, ProtocolError
from tests.support.rawhttp import RawServer, ok


async def test_a_request_is_never_sent_twice(client: Client) -> None:
    """The server answers the first request of a connection and drops the second one unanswered (as
    a server closing an idle connection at the moment it arrives does): the second request fails,
    and the server has seen it once."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(b"{}"))
        await writer.drain()
        await server.read_request(reader)  # received, maybe worked on, never answered

    server = RawServer(handler)
    async with server:
        assert await (await client.request("POST", server.url + "/", {}, b"first")).read() == b"{}"
        with pytest.raises(ProtocolError):
            await client.request("POST", server.url + "/", {}, b"second")
        assert [r.endswith(b"second") for r in server.requests] == [False, True]
        assert server.connections == 1


async def test_bytes_received_while_idle_retire_the_connection(client: Client) -> None:
    """An unsolicited answer on an idle connection (a 408 before closing, a stray response) must not be
    read as the answer to the next request."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await server.read_request(reader)
            writer.write(ok(body))
            await writer.drain()
            if body == b"first":
                writer.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()

    server = RawServer(handler)
    async with server:
        assert await (await client.request("POST", server.url + "/", {}, b"first")).read() == b"first"
        await asyncio.sleep(0.1)  # the stray 408 arrives while the connection is idle
        response = await client.request("POST", server.url + "/", {}, b"second")
        assert (response.status, await response.read()) == (200, b"second")
        assert server.connections == 2


async def test_idle_connections_expire_after_idle_timeout() -> None:
    client = Client(pool_size=2, connect_timeout=2, idle_timeout=0.1)
    async with RawServer() as server:
        await (await client.request("POST", server.url + "/", {}, b"1")).read()
        await (await client.request("POST", server.url + "/", {}, b"2")).read()
        assert server.connections == 1  # reused within the idle time
        await asyncio.sleep(0.3)
        await (await client.request("POST", server.url + "/", {}, b"3")).read()
        assert server.connections == 2
    client.close()


async def test_a_keep_alive_timeout_from_the_server_shortens_the_idle_time(client: Client) -> None:
    """`Keep-Alive: timeout=1` says the server closes after a second idle; the client keeps a second's
    margin (the server's clock started before the answer arrived), so it does not reuse it."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(ok(b"{}", b"keep-alive: timeout=1, max=100\r\n"))
            await writer.drain()

    server = RawServer(handler)
    async with server:
        for _ in range(2):
            await (await client.request("POST", server.url + "/", {}, b"")).read()
        assert server.connections == 2


async def test_expired_idle_connections_are_closed_not_kept() -> None:
    """After a burst, the connections it opened are closed once expired, though only the newest is
    ever checked out again."""
    closed = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal closed
        while True:
            try:
                await server.read_request(reader)
            except asyncio.IncompleteReadError:
                closed += 1
                return
            await asyncio.sleep(0.05)
            writer.write(ok(b"{}"))
            await writer.drain()

    server = RawServer(handler)
    client = Client(pool_size=8, connect_timeout=2, idle_timeout=0.2)
    async with server:
        burst = [client.request("POST", server.url + "/", {}, b"") for _ in range(4)]
        for response in await asyncio.gather(*burst):
            await response.read()
        for _ in range(6):  # steady traffic on the newest connection while the others expire
            await asyncio.sleep(0.05)
            await (await client.request("POST", server.url + "/", {}, b"")).read()
        await asyncio.sleep(0.1)
        assert (server.connections, closed) == (4, 3)
    client.close()



async def test_a_close_the_loop_has_not_read_yet_is_seen_before_reuse(client: Client) -> None:
    """The server (in a thread of its own) closes the idle connection while the event loop is busy
    elsewhere: its FIN waits unread in the socket. The client asks the socket before reusing a
    connection idle this long, instead of sending a request into a closed connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections = 0

    def serve() -> None:
        nonlocal connections
        for _ in range(2):
            conn, _ = listener.accept()
            connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(ok(b"{}"))  # keep-alive claimed
                time.sleep(0.2)  # then closed while idle

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    try:
        assert await (await client.request("POST", url, {}, b"")).read() == b"{}"
        time.sleep(1.3)  # noqa: ASYNC251 -- the point: a busy loop that does not read the close
        assert await (await client.request("POST", url, {}, b"")).read() == b"{}"
        assert connections == 2
    finally:
        thread.join(5)
        listener.close()
