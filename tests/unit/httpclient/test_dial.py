"""Opening connections: forward proxies (absolute form for http, CONNECT tunnels for https),
NO_PROXY, the address race across families, and what a failed name lookup says."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.httpclient import Client, ConnectError
from tests.support.rawhttp import RawServer, ok


class ConnectProxy:
    """A forward proxy on loopback: CONNECT opens a tunnel it pipes both ways; any other request
    (absolute form) it answers itself. Records every request head it receives."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.heads: list[bytes] = []
        self.port = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnectProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://user:p%40ss@127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            if not head.startswith(b"CONNECT "):
                writer.write(ok(b'{"via":"proxy"}'))
                await writer.drain()
                return
            if self.refuse:
                writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                return
            host, _, port = head.split(b" ")[1].decode().rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    yield monkeypatch


@pytest.fixture
async def tls_server(certificate: tuple[Path, Path]) -> AsyncIterator[int]:
    key, cert = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(b'{"tls":true}'))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_http_goes_through_http_proxy_in_absolute_form(no_proxy_env: pytest.MonkeyPatch) -> None:
    async with ConnectProxy() as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        client = Client(pool_size=2, connect_timeout=2)
        response = await client.request("POST", "http://upstream.example:8000/v1/x?a=1", {}, b"")
        assert await response.read() == b'{"via":"proxy"}'
        client.close()
    head = proxy.heads[0]
    assert head.startswith(b"POST http://upstream.example:8000/v1/x?a=1 HTTP/1.1\r\n")
    assert b"host: upstream.example:8000\r\n" in head
    assert b"proxy-authorization: Basic dXNlcjpwQHNz\r\n" in head  # user:p@ss


async def test_https_is_tunnelled_with_connect(no_proxy_env: pytest.MonkeyPatch, tls_server: int,
                                               certificate: tuple[Path, Path]) -> None:
    async with ConnectProxy() as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        client = Client(pool_size=2, connect_timeout=2, ca_file=str(certificate[1]))
        response = await client.request("POST", f"https://localhost:{tls_server}/", {}, b"")
        assert await response.read() == b'{"tls":true}'
        client.close()
    assert proxy.heads[0].startswith(f"CONNECT localhost:{tls_server} HTTP/1.1\r\n".encode())
    assert b"proxy-authorization: Basic dXNlcjpwQHNz\r\n" in proxy.heads[0]


async def test_a_per_provider_proxy_overrides_the_environment(no_proxy_env: pytest.MonkeyPatch) -> None:
    async with ConnectProxy() as proxy, RawServer() as server:
        no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        client = Client(pool_size=2, connect_timeout=2, proxy=f"127.0.0.1:{proxy.port}")
        assert await (await client.request("POST", "http://upstream.example/", {}, b"")).read() == b'{"via":"proxy"}'
        client.close()
        direct = Client(pool_size=2, connect_timeout=2, proxy="direct")
        assert await (await direct.request("POST", server.url + "/", {}, b"1")).read() == b'{"echo":1}'
        direct.close()


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "localhost,127.0.0.1:80", ".0.0.1"])
async def test_no_proxy_hosts_go_direct(no_proxy_env: pytest.MonkeyPatch, no_proxy: str) -> None:
    async with RawServer() as server:
        no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        no_proxy_env.setenv("NO_PROXY", no_proxy)
        client = Client(pool_size=2, connect_timeout=2)
        assert await (await client.request("POST", server.url + "/", {}, b"2")).read() == b'{"echo":2}'
        client.close()


async def test_a_refused_tunnel_is_a_connect_error(no_proxy_env: pytest.MonkeyPatch) -> None:
    async with ConnectProxy(refuse=True) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        client = Client(pool_size=2, connect_timeout=2)
        with pytest.raises(ConnectError, match=r"proxy refused the tunnel \(HTTP 403\)"):
            await client.request("POST", "https://upstream.example/", {}, b"")
        client.close()


async def test_a_blackholed_first_address_does_not_hold_up_the_next(no_proxy_env: pytest.MonkeyPatch) -> None:
    """The first address never answers (a full listen queue drops SYNs, as a blackholed IPv6 route
    does); the next is tried alongside after the happy-eyeballs delay, long before connect_timeout."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    filler = socket.create_connection(hole.getsockname())  # fills the queue: later SYNs are dropped
    loop = asyncio.get_running_loop()

    async def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", hole.getsockname()),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    no_proxy_env.setattr(loop, "getaddrinfo", resolve)
    try:
        async with RawServer() as server:
            client = Client(pool_size=2, connect_timeout=5)
            request = client.request("POST", f"http://dual-stack.example:{server.port}/", {}, b"3")
            assert await (await asyncio.wait_for(request, 3)).read() == b'{"echo":3}'
            client.close()
    finally:
        filler.close()
        hole.close()


async def test_a_name_that_does_not_resolve_says_so(no_proxy_env: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    no_proxy_env.setattr(loop, "getaddrinfo", resolve)
    client = Client(pool_size=2, connect_timeout=2)
    with pytest.raises(ConnectError) as caught:
        await client.request("POST", "http://no-such-host.invalid/", {}, b"")
    assert caught.value.reason == "could not resolve host 'no-such-host.invalid'"
    assert caught.value.errno is None
    client.close()
