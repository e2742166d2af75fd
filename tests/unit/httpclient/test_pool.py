"""The upstream HTTP/1.1 client against raw asyncio servers that frame answers every legal way."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from pathlib import Path

import pytest

from gateway.httpclient import Client, ConnectError, Pool, ProtocolError
from tests.support.rawhttp import RawServer, ok
from tests.support.servers import free_port


async def test_content_length_answers_reuse_one_connection(client: Client) -> None:
    server = RawServer()
    async with server:
        for i in range(3):
            response = await client.request("POST", server.url + "/v1/x?a=1", {"x-k": "v"}, b"%d" % i)
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.read() == b'{"echo":%d}' % i
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /v1/x?a=1 HTTP/1.1\r\n")
        assert f"host: 127.0.0.1:{server.port}".encode() in first
        assert b"x-k: v\r\n" in first and b"content-length: 1\r\n" in first


async def test_chunked_answer_streams_as_it_arrives(client: Client) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n")
        writer.write(b"6\r\ndata: \r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"5\r\nhello\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    async with server:
        response = await client.request("POST", server.url + "/s", {}, b"{}")
        chunks = response.chunks()
        assert await chunks.__anext__() == b"data: "  # before the server sent the rest
        release.set()
        rest = [c async for c in chunks]
        assert b"".join(rest) == b"hello"


async def test_body_delimited_by_the_end_of_the_connection(client: Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npart one, part two")
        await writer.drain()

    server = RawServer(handler)
    async with server:
        response = await client.request("POST", server.url + "/", {}, b"")
        assert await response.read() == b"part one, part two"


async def test_an_idle_connection_the_server_closed_is_not_reused(client: Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(b"{}"))  # keep-alive claimed, but the server closes right after
        await writer.drain()

    server = RawServer(handler)
    async with server:
        assert await (await client.request("POST", server.url + "/", {}, b"a")).read() == b"{}"
        await asyncio.sleep(0.05)
        assert await (await client.request("POST", server.url + "/", {}, b"b")).read() == b"{}"
        assert server.connections == 2


async def test_connection_refused_is_a_connect_error(client: Client) -> None:
    with pytest.raises(ConnectError) as caught:
        await client.request("POST", f"http://127.0.0.1:{free_port()}/", {}, b"")
    assert caught.value.errno is not None


async def test_a_server_dying_mid_body_is_a_protocol_error(client: Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a little")
        await writer.drain()

    server = RawServer(handler)
    async with server:
        response = await client.request("POST", server.url + "/", {}, b"")
        with pytest.raises(ProtocolError):
            await response.read()


async def test_garbage_is_a_protocol_error(client: Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)

    server = RawServer(handler)
    async with server:
        with pytest.raises(ProtocolError):
            await client.request("POST", server.url + "/", {}, b"")


async def test_abandoning_a_stream_closes_its_connection(client: Client) -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        await writer.drain()
        await reader.read()  # returns at EOF: the client dropped the connection
        closed.set()

    server = RawServer(handler)
    async with server:
        response = await client.request("POST", server.url + "/", {}, b"")
        assert await response.chunks().__anext__() == b"abcd"
        response.close()
        await asyncio.wait_for(closed.wait(), 2)


async def test_pool_size_bounds_concurrent_connections() -> None:
    pool_client = Client(pool_size=1, connect_timeout=2)
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await server.read_request(reader)
            except asyncio.IncompleteReadError:
                return
            await gate.wait()
            writer.write(ok(b"{}"))
            await writer.drain()

    server = RawServer(handler)
    async with server:
        first = asyncio.ensure_future(pool_client.request("POST", server.url + "/", {}, b""))
        second = asyncio.ensure_future(pool_client.request("POST", server.url + "/", {}, b""))
        await asyncio.sleep(0.1)
        assert len(server.requests) == 1  # the second waits for the only slot
        gate.set()
        assert await (await first).read() == b"{}"
        assert await (await second).read() == b"{}"
        assert server.connections == 1
    pool_client.close()


async def test_gzip_and_large_bodies(client: Client) -> None:
    big = b"x" * (1024 * 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(gzip.compress(b'{"zipped":true}'), b"content-encoding: gzip\r\n"))
        await server.read_request(reader)
        writer.write(ok(big))
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    async with server:
        assert await (await client.request("POST", server.url + "/", {}, b"")).read() == b'{"zipped":true}'
        response = await client.request("POST", server.url + "/", {}, b"")
        received = b"".join([chunk async for chunk in response.chunks()])
        assert received == big


async def test_tls_with_a_given_ca(certificate: tuple[Path, Path]) -> None:
    key, cert = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(b'{"tls":true}'))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        trusting = Client(pool_size=2, connect_timeout=2, ca_file=str(cert))
        response = await trusting.request("POST", f"https://localhost:{port}/", {}, b"")
        assert await response.read() == b'{"tls":true}'
        trusting.close()
        default = Client(pool_size=2, connect_timeout=2)
        with pytest.raises(ConnectError) as caught:
            await default.request("POST", f"https://localhost:{port}/", {}, b"")
        assert "TLS" in caught.value.reason
        default.close()
    finally:
        server.close()
        await server.wait_closed()


def test_only_http_urls() -> None:
    with pytest.raises(ValueError):
        Pool("ftp://example/", size=1, connect_timeout=1)


async def test_a_body_larger_than_the_read_buffer_is_read_whole(client: Client) -> None:
    """Back-pressure pauses reading past the high-water mark; reading a whole body must resume it."""
    big = bytes(range(256)) * 8192  # 2 MiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(big))
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    async with server:
        response = await client.request("POST", server.url + "/", {}, b"")
        assert await asyncio.wait_for(response.read(), 5) == big


async def test_an_abandoned_paused_answer_does_not_poison_the_pool() -> None:
    """An answer that arrived whole while reading was paused, then abandoned, must not go back to the
    pool paused (the next request on it would never see its answer)."""
    pool = Pool("http://127.0.0.1:1", size=2, connect_timeout=2)
    big = b"y" * (600 * 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await server.read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(ok(big))
            await writer.drain()

    server = RawServer(handler)
    async with server:
        pool = Pool(server.url, size=2, connect_timeout=2)
        first = await pool.request("POST", "/", {}, b"")
        await asyncio.sleep(0.2)  # the whole answer arrives; reading pauses past the high-water mark
        first.close()
        second = await asyncio.wait_for(pool.request("POST", "/", {}, b""), 5)
        assert await asyncio.wait_for(second.read(), 5) == big
    pool.close()
