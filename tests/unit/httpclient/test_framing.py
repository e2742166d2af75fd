"""Request headers the client refuses to write, and answers it reads with bounds: header size and
count, interim 1xx answers, bodies cut by a reset, bodies that inflate."""

from __future__ import annotations

import asyncio
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.httpclient import Client, HeaderError, ProtocolError
from tests.support.rawhttp import RawServer, ok, reset


@pytest.mark.parametrize("headers", [
    {"authorization": "Bearer sk\r\nx-injected: 1"},
    {"authorization": "Bearer sk\nx-injected: 1"},
    {"x-a": "one\rtwo"},
    {"x-a": "nul\0"},
    {"x-a\r\nx-injected": "1"},
    {"x a": "1"},
    {"x-a:": "1"},
])
async def test_headers_that_would_split_are_refused_before_sending(client: Client,
                                                                    headers: dict[str, str]) -> None:
    async with RawServer() as server:
        with pytest.raises(HeaderError):
            await client.request("POST", server.url + "/", headers, b"")
        assert server.connections == 0


@settings(max_examples=200, deadline=None)
@given(name=st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), value=st.text(max_size=20))
def test_a_written_header_is_one_line(name: str, value: str) -> None:
    """Whatever the value, what goes on the wire is exactly one header line, or nothing."""
    client = Client(pool_size=1, connect_timeout=1)
    pool, _ = client._resolve("http://127.0.0.1:1/")
    try:
        head = pool._encode("POST", "/", {name: value}, b"").decode("latin-1")
    except HeaderError:
        assert any(c in value for c in "\r\n\0") or not all(ord(c) < 256 for c in value)
        return
    lines = head.split("\r\n")
    assert lines[3] == f"{name}: {value}" and lines[4:] == ["", ""]


async def test_interim_answers_are_skipped(client: Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(ok(b'{"final":true}'))
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    async with server:
        response = await client.request("POST", server.url + "/", {}, b"")
        assert response.status == 200
        assert "link" not in response.headers
        assert await response.read() == b'{"final":true}'


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(20_000)) + b"content-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (1024 * 1024) + b"\r\ncontent-length: 0\r\n\r\n",
], ids=["20000-headers", "1MB-header"])
async def test_answer_headers_are_bounded(client: Client, head: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(head)
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    async with server:
        with pytest.raises(ProtocolError, match="headers exceed"):
            await client.request("POST", server.url + "/", {}, b"")


async def test_an_unterminated_header_line_is_bounded(client: Client) -> None:
    """A header line that never ends: the client gives up past the bound instead of buffering on."""
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nx-endless: ")
        while sent < 50 * 1024 * 1024:
            writer.write(b"a" * 65536)
            sent += 65536
            await writer.drain()

    server = RawServer(handler)
    async with server:
        with pytest.raises(ProtocolError, match="headers exceed"):
            await client.request("POST", server.url + "/", {}, b"")
    assert sent < 50 * 1024 * 1024


async def test_a_close_delimited_body_cut_by_a_reset_fails(client: Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{\"partial\": ")
        await writer.drain()
        await asyncio.sleep(0.05)
        reset(writer)

    server = RawServer(handler)
    async with server:
        response = await client.request("POST", server.url + "/", {}, b"")
        with pytest.raises(ProtocolError, match="broke"):
            await response.read()


async def test_a_gzip_bomb_is_refused_past_the_bound() -> None:
    client = Client(pool_size=1, connect_timeout=2, max_decoded=1024 * 1024)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = compressor.compress(b"\0" * (64 * 1024 * 1024)) + compressor.flush()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(bomb, b"content-encoding: gzip\r\n"))
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    async with server:
        response = await client.request("POST", server.url + "/", {}, b"")
        with pytest.raises(ProtocolError, match="inflates"):
            await response.read()
    client.close()


async def test_a_body_past_the_read_limit_fails(client: Client) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(b"x" * 300_000))
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    async with server:
        response = await client.request("POST", server.url + "/", {}, b"")
        with pytest.raises(ProtocolError, match="larger than 100000"):
            await response.read(100_000)
