"""The server protocol under the real app: uvicorn's keep-alive and pipelining through the gateway's
bounded protocol."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.support.servers import MOCK_CONFIG, GatewayServer, read_answer


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
