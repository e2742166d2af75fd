"""The upstream client as the router sees it: transport failures mapped to the gateway's errors, and
the provider settings that bound an answer."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import httpclient
from gateway.config import OpenAIProvider
from gateway.errors import InternalError, UpstreamConnectError, UpstreamProtocolError
from gateway.metrics import Metrics
from gateway.providers import UpstreamRequest
from gateway.upstream import HttpClient, _HttpResponse
from tests.support.rawhttp import RawServer, ok


def provider(**settings: Any) -> OpenAIProvider:
    return OpenAIProvider(type="openai", **{"max_event_bytes": 1024, "max_response_bytes": 4096, **settings})


def post(url: str, headers: dict[str, str] | None = None, stream: bool = False) -> UpstreamRequest:
    return UpstreamRequest("POST", url, headers or {}, b"{}", stream)


def sse_server(events: list[bytes], content_type: bytes = b"text/event-stream") -> RawServer:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in events:
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    return server


async def test_a_host_that_does_not_resolve_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolve)
    client = HttpClient("vllm", provider(proxy="direct"))
    with pytest.raises(UpstreamConnectError) as caught:
        await client.send(post("http://vllm.internal:8000/v1/chat/completions"))
    assert caught.value.message == "Could not reach provider 'vllm': could not resolve host 'vllm.internal'."
    await client.close()


async def test_a_header_that_would_split_is_an_internal_error_without_its_value() -> None:
    async with RawServer() as server:
        client = HttpClient("p", provider())
        with pytest.raises(InternalError) as caught:
            await client.send(post(server.url + "/", {"authorization": "Bearer sk-secret\r\nx-injected: 1"}))
        assert "authorization" in caught.value.message and "sk-secret" not in caught.value.message
        assert not caught.value.retryable and server.connections == 0
        await client.close()


async def test_a_body_past_max_response_bytes_is_a_bad_upstream_answer() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(ok(b"x" * 5000))
        await writer.drain()
        await reader.read()

    server = RawServer(handler)
    async with server:
        client = HttpClient("p", provider())
        response = await client.send(post(server.url + "/"))
        with pytest.raises(UpstreamProtocolError, match="larger than 4096 bytes"):
            await response.read()
        await client.close()


async def test_an_sse_event_past_max_event_bytes_is_a_bad_upstream_answer() -> None:
    """A provider sending one endless line (100 MB in the issue) is cut at the bound, not buffered."""
    fine = b"data: " + b"a" * 900 + b"\n\n"
    endless = b"data: " + b"b" * 600
    async with sse_server([fine, fine, endless, endless, endless]) as server:
        client = HttpClient("p", provider())
        response = await client.send(post(server.url + "/", stream=True))
        with pytest.raises(UpstreamProtocolError, match="larger than 1024 bytes"):
            async for _ in response.chunks():
                pass
        await client.close()


@pytest.mark.parametrize("separator", [b"\n\n", b"\r\n\r\n"])
async def test_many_events_add_up_past_the_event_bound_without_tripping_it(separator: bytes) -> None:
    events = [b"data: " + b"c" * 700 + separator for _ in range(10)]
    async with sse_server(events) as server:
        client = HttpClient("p", provider())
        response = await client.send(post(server.url + "/", stream=True))
        assert b"".join([d async for d in response.chunks()]) == b"".join(events)
        await client.close()


async def test_binary_streams_have_no_event_bound() -> None:
    frames = [b"\0" * 800 for _ in range(5)]  # Bedrock's event stream: no blank lines
    async with sse_server(frames, b"application/vnd.amazon.eventstream") as server:
        client = HttpClient("p", provider())
        response = await client.send(post(server.url + "/", stream=True))
        assert b"".join([d async for d in response.chunks()]) == b"".join(frames)
        await client.close()


async def test_waits_for_a_full_pool_are_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            await gate.wait()
            writer.write(ok(b"{}"))
            await writer.drain()

    metrics = Metrics()
    server = RawServer(handler)
    async with server:
        client = HttpClient("busy", provider(pool_size=1), metrics)
        first = asyncio.ensure_future(client.send(post(server.url + "/")))
        second = asyncio.ensure_future(client.send(post(server.url + "/")))
        await asyncio.sleep(0.1)
        gate.set()
        await (await first).read()
        await (await second).read()
        await client.close()
    sample = metrics.registry.get_sample_value
    assert sample("gateway_upstream_pool_exhausted_total", {"provider": "busy"}) == 1
    assert sample("gateway_upstream_pool_wait_seconds_count", {"provider": "busy"}) == 1
    assert any(r.message.startswith("upstream connection pool exhausted") for r in caplog.records)


class SplitAnswer:
    """An answer whose body arrives in exactly these reads."""

    status = 200
    headers = {"content-type": "text/event-stream"}

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def chunks(self) -> AsyncIterator[bytes]:
        for data in self.reads:
            yield data


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


async def relay(reads: list[bytes], limit: int) -> bytes:
    answer = _HttpResponse(cast(httpclient.Response, SplitAnswer(reads)), "p", 1 << 20, limit)
    return b"".join([d async for d in answer.chunks()])


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 64), min_size=1, max_size=8), crlf=st.booleans(),
       cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_events_within_the_bound_pass_however_the_reads_split(sizes: list[int], crlf: bool, cuts: list[int]) -> None:
    """Each event is at most 72 bytes (with its blank line); the bound is 72: never tripped, whether a
    read ends mid-event or in the middle of the blank line."""
    end = b"\r\n\r\n" if crlf else b"\n\n"
    events = [b"data: " + b"x" * (size - len(end) + 2 if size >= len(end) else 0) + end for size in sizes]
    body = b"".join(events)
    assert all(len(e) <= 72 for e in events)
    assert asyncio.run(relay(split(body, cuts), 72)) == body


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_an_event_past_the_bound_trips_however_the_reads_split(cuts: list[int]) -> None:
    body = b"data: ok\n\n" + b"data: " + b"y" * 80 + b"\n\n"
    with pytest.raises(UpstreamProtocolError):
        asyncio.run(relay(split(body, cuts), 72))
