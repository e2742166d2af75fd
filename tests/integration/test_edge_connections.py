"""What one client connection may hold, through the real server on raw sockets (a client library would
hide it): the size and number of header fields (431), the time a request's head and body may take
(408), how long a connection may wait for a request, and how many may be open (503). Every refusal is
an OpenAI-shaped JSON error, counted by reason in gateway_connections_refused_total."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.support.redis_topologies import wait_for
from tests.support.servers import MOCK_CONFIG, GatewayServer, read_answer

LIMITS = """
server: {max_header_bytes: 4096, max_headers: 20, header_timeout: 0.3s, body_timeout: 0.3s,
         keepalive_timeout: 0.3s, max_connections: 4}
"""
CHAT = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    with GatewayServer(MOCK_CONFIG + LIMITS) as server:
        yield server


def connect(gw: GatewayServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def refusal(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    """The server's answer to a refused request, and that it closed the connection after it."""
    head, body, _ = read_answer(sock)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert sock.recv(1) == b"", "the connection stays open after a refusal"
    return int(lines[0].split()[1]), headers, orjson.loads(body)["error"]


def refusals(gw: GatewayServer, reason: str) -> float:
    """gateway_connections_refused_total for `reason` (counted before the refusal is written)."""
    prefix = f'gateway_connections_refused_total{{reason="{reason}"}} '
    (line,) = [line for line in httpx.get(gw.url + "/metrics").text.splitlines() if line.startswith(prefix)]
    return float(line.split()[-1])


@contextlib.contextmanager
def server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """uvicorn's own error log (it does not reach the root logger) captured too."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            yield
    finally:
        uvicorn_log.removeHandler(caplog.handler)


def test_an_unterminated_header_line_is_refused_once_it_passes_the_bound(gw: GatewayServer) -> None:
    before = refusals(gw, "headers_too_large")
    with connect(gw) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nx-filler: ")
        sent = 0
        while not select.select([sock], [], [], 0.05)[0]:
            assert sent < 1024 * 1024, "1 MB of one header line was read without an answer"
            sock.sendall(b"a" * 1024)
            sent += 1024
        status, headers, error = refusal(sock)
    assert status == 431 and headers["connection"] == "close"
    assert error["code"] == "request_header_fields_too_large" and error["type"] == "invalid_request_error"
    assert sent <= 8 * 1024  # refused within a read or two of the bound (4 KiB), not at the end of the line
    assert refusals(gw, "headers_too_large") == before + 1


@pytest.mark.parametrize("head", [
    b"x-big: " + b"b" * 8000 + b"\r\n",  # one finished field past the byte bound, in one read
    b"".join(b"x-%d: 1\r\n" % i for i in range(50)),  # small fields past the count bound
], ids=["bytes", "count"])
def test_a_finished_head_past_a_bound_is_refused(gw: GatewayServer, head: bytes) -> None:
    with connect(gw) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n" + head +
                     b"content-length: %d\r\n\r\n%s" % (len(CHAT), CHAT))
        status, _, error = refusal(sock)
    assert status == 431 and error["code"] == "request_header_fields_too_large"


def test_a_head_within_the_bounds_is_served(gw: GatewayServer) -> None:
    fields = b"".join(b"x-%d: %s\r\n" % (i, b"v" * 100) for i in range(15))
    with connect(gw) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n" + fields +
                     b"content-length: %d\r\n\r\n%s" % (len(CHAT), CHAT))
        head, _, _ = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 200 ")


def test_a_head_that_does_not_arrive_times_out(gw: GatewayServer) -> None:
    before = refusals(gw, "header_timeout")
    with connect(gw) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")
        status, headers, error = refusal(sock)
    assert status == 408 and error["code"] == "request_timeout" and headers["content-type"] == "application/json"
    assert refusals(gw, "header_timeout") == before + 1


def test_a_body_that_does_not_arrive_times_out_with_one_access_line(gw: GatewayServer,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    before = refusals(gw, "body_timeout")
    with server_errors(caplog), connect(gw) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 1000\r\n\r\n{\"model\"")
        status, _, error = refusal(sock)
        assert status == 408 and error["code"] == "request_timeout"
        wait_for(lambda: any(r.name == "gateway.access" for r in caplog.records), "the access line")
    lines = [r for r in caplog.records if r.name == "gateway.access"]
    assert [r.fields["status"] for r in lines] == [408]  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert refusals(gw, "body_timeout") == before + 1


def test_a_client_leaving_mid_body_leaves_one_access_line_and_no_traceback(
        gw: GatewayServer, caplog: pytest.LogCaptureFixture) -> None:
    with server_errors(caplog):
        with connect(gw) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 1000\r\n\r\n{\"m")
        wait_for(lambda: any(r.name == "gateway.access" for r in caplog.records), "the access line")
    lines = [r for r in caplog.records if r.name == "gateway.access"]
    assert [r.fields["status"] for r in lines] == [499]  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_an_idle_connection_is_closed(gw: GatewayServer) -> None:
    with connect(gw) as sock:
        assert sock.recv(1) == b""  # closed by the server (keepalive_timeout), not by this test's timeout
    with connect(gw) as sock:  # and after an answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        read_answer(sock)
        assert sock.recv(1) == b""


def test_connections_past_the_bound_are_refused() -> None:
    with GatewayServer(MOCK_CONFIG + "server: {max_connections: 3, keepalive_timeout: 30s}") as gw:
        with contextlib.ExitStack() as held:
            for _ in range(3):
                sock = held.enter_context(connect(gw))
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
                read_answer(sock)  # served, and kept open
            with connect(gw) as extra:
                status, headers, error = refusal(extra)
        assert status == 503 and headers["retry-after"] == "1" and error["code"] == "too_many_connections"
        assert refusals(gw, "max_connections") == 1


@pytest.mark.parametrize(("request_line", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nbad header\r\n\r\n", 400),
])
def test_what_the_parser_refuses_is_an_openai_error(gw: GatewayServer, request_line: bytes, status: int) -> None:
    with connect(gw) as sock:
        sock.sendall(request_line)
        got, headers, error = refusal(sock)
    assert got == status and headers["content-type"] == "application/json"
    assert error == {"message": "The request is not valid HTTP/1.1.", "type": "invalid_request_error",
                     "param": None, "code": "invalid_http_request"}


@pytest.mark.parametrize("method", [b"GET", b"OPTIONS"])
def test_an_asterisk_target_is_a_404(gw: GatewayServer, method: bytes) -> None:
    with connect(gw) as sock:
        sock.sendall(method + b" * HTTP/1.1\r\nhost: gw\r\n\r\n")
        head, body, _ = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 404 ") and orjson.loads(body)["error"]["code"] == "unknown_url"
