"""The server protocol: a response head leaves with the first bytes of its body, every byte leaves in
order, and nothing is held past the event loop's next turn or the connection's close."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.server import CoalescingTransport
from tests.support.servers import MOCK_CONFIG, GatewayServer, read_answer

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def write_eof(self) -> None:
        self.writes.append(b"<eof>")


def _wrap(loop: asyncio.AbstractEventLoop) -> tuple[CoalescingTransport, RecordingTransport]:
    inner = RecordingTransport()
    return CoalescingTransport(cast(asyncio.Transport, inner), loop), inner


async def test_head_and_body_leave_in_one_write() -> None:
    transport, inner = _wrap(asyncio.get_running_loop())
    transport.write(HEAD)
    assert inner.writes == []
    transport.write(b"{}")
    assert inner.writes == [HEAD + b"{}"]
    transport.write(b"5\r\nhello\r\n")  # later writes are not held
    assert inner.writes[-1] == b"5\r\nhello\r\n"


async def test_a_head_without_a_body_leaves_at_the_next_loop_turn() -> None:
    transport, inner = _wrap(asyncio.get_running_loop())
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]


async def test_close_sends_what_is_held_first() -> None:
    transport, inner = _wrap(asyncio.get_running_loop())
    transport.write(HEAD)
    transport.close()
    assert inner.writes == [HEAD] and inner.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert inner.writes == [HEAD]


async def test_writelines_and_write_eof_keep_the_order() -> None:
    transport, inner = _wrap(asyncio.get_running_loop())
    transport.write(HEAD)
    transport.writelines([b"{", b"}"])
    transport.write(HEAD)
    transport.write_eof()
    assert inner.writes == [HEAD + b"{}", HEAD, b"<eof>"]


async def test_other_calls_reach_the_wrapped_transport() -> None:
    transport, inner = _wrap(asyncio.get_running_loop())
    transport.pause_reading()
    assert inner.paused and not transport.is_closing()


@given(st.lists(st.one_of(st.binary(max_size=40), st.just(HEAD), st.just(b"HTTP/1.1 204\r\n\r\n")), max_size=12),
       st.sets(st.integers(0, 11)))
def test_every_byte_leaves_in_order(writes: list[bytes], turns: set[int]) -> None:
    """Whatever is written (heads, bodies, look-alikes), with loop turns between some writes: the
    bytes sent are the bytes written, in order, and nothing stays held after a turn."""

    async def run() -> None:
        transport, inner = _wrap(asyncio.get_running_loop())
        for i, data in enumerate(writes):
            transport.write(data)
            if i in turns:
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert b"".join(inner.writes) == b"".join(writes)

    asyncio.run(run())




@pytest.fixture(scope="module")
def gw() -> Any:
    with GatewayServer(MOCK_CONFIG) as server:
        yield server


def test_pipelined_requests_get_whole_answers_in_order(gw: GatewayServer) -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    post = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(post + b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        first_head, first_body, rest = read_answer(sock)
        second_head, second_body, _ = read_answer(sock, rest)
    assert first_head.startswith(b"HTTP/1.1 200") and b'"chat.completion"' in first_body
    assert second_head.startswith(b"HTTP/1.1 200") and second_body == b'{"status":"ok"}'


def test_a_head_request_gets_its_head(gw: GatewayServer) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"\r\n\r\n"):  # a head, and no body however long it says it is
            chunk = sock.recv(65536)
            assert chunk, f"the gateway closed the connection after {data!r}"
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n")
