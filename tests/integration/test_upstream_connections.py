"""Upstream connections as the router sees them, through the real app (uvicorn, the official openai
SDK): a request dropped on a reused connection is a visible attempt, never a hidden re-send; time
spent waiting for a free connection is not the provider's fault."""

from __future__ import annotations

import asyncio
import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.support.openai_fake import chat_completion, openai_echo
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, metrics_show

MSG: Any = [{"role": "user", "content": "hello there"}]


class DropsSecondRequest(socketserver.ThreadingTCPServer):
    """An OpenAI-compatible upstream that answers the first request of each connection with
    keep-alive, then reads the second one and closes without answering it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.received = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), self._Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def count(self) -> None:
        with self.lock:
            self.received += 1

    class _Handler(socketserver.StreamRequestHandler):
        server: DropsSecondRequest

        def handle(self) -> None:
            for answered in (True, False):
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = self.rfile.readline()
                    if not line:
                        return
                    head += line
                length = next(int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                              if k.lower() == b"content-length")
                self.rfile.read(length)
                self.server.count()
                if answered:
                    body = json.dumps(chat_completion("fine", "x")).encode()
                    self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d"
                                     b"\r\n\r\n%s" % (len(body), body))
                    self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def dropping() -> Iterator[DropsSecondRequest]:
    server = DropsSecondRequest()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def config(base_url: str, model: dict[str, Any], **provider: Any) -> str:
    return json.dumps({"auth": {"required": False},
                       "providers": {"up": {"type": "openai", "base_url": base_url + "/v1", **provider}},
                       "models": {"m": {"deployments": [{"provider": "up", "model": "x"}], **model}}})


def test_a_request_dropped_on_a_reused_connection_is_an_attempt_the_router_sees(
        dropping: DropsSecondRequest, make_client: Callable[..., openai.OpenAI]) -> None:
    with GatewayServer(config(dropping.url, {"retries": 1})) as gw:
        client = make_client(gw.url + "/v1")
        assert client.chat.completions.create(model="m", messages=MSG).choices[0].message.content == "fine"
        second = client.chat.completions.with_raw_response.create(model="m", messages=MSG)
        assert second.parse().choices[0].message.content == "fine"
        # The dropped request was an attempt of its own, then retried on a fresh connection.
        assert second.headers["x-gateway-attempts"] == "2"
        assert dropping.received == 3


def test_without_retries_the_dropped_request_is_an_error_not_a_resend(
        dropping: DropsSecondRequest, make_client: Callable[..., openai.OpenAI]) -> None:
    with GatewayServer(config(dropping.url, {"retries": 0})) as gw:
        client = make_client(gw.url + "/v1")
        client.chat.completions.create(model="m", messages=MSG)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="m", messages=MSG)
        assert caught.value.status_code == 502
        assert caught.value.code == "bad_upstream_response"
        assert dropping.received == 2


def test_waiting_for_a_pool_slot_is_not_blamed_on_the_provider() -> None:
    """The issue's reproduction: pool_size 2, ttft_timeout 1s, 6 concurrent streams to a healthy
    upstream that sends its first token after 0.6 s. Streams queue for a connection for up to 1.2 s;
    all must succeed, none cools the deployment down, and the waits show in the metrics."""

    def slow_first_token(request: Recorded) -> Reply:
        reply = openai_echo(request)
        reply.first_chunk_delay = 0.6
        return reply

    async def six_streams(url: str) -> list[str]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0, timeout=30)

        async def one() -> str:
            stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        try:
            return await asyncio.gather(*(one() for _ in range(6)))
        finally:
            await client.close()

    with FakeUpstream(slow_first_token) as up, \
            GatewayServer(config(up.url, {"ttft_timeout": "1s", "timeout": "30s"}, pool_size=2)) as gw:
        assert asyncio.run(six_streams(gw.url)) == ["echo: hello there"] * 6
        text = metrics_show(gw.url, 'gateway_upstream_pool_exhausted_total{provider="up"} 4.0')
        assert 'gateway_upstream_pool_exhausted_total{provider="up"} 4.0' in text
        assert 'gateway_upstream_pool_wait_seconds_count{provider="up"} 4.0' in text
        assert 'gateway_routing_circuit_state{deployment="up/x"} 2.0' not in text
        assert len(up.requests) == 6


@pytest.mark.parametrize("source", ["provider", "environment"])
def test_provider_calls_go_through_the_configured_proxy(source: str, monkeypatch: pytest.MonkeyPatch,
                                                        make_client: Callable[..., openai.OpenAI]) -> None:
    """The fake upstream plays an HTTP forward proxy: it receives the absolute-form request for an
    origin that does not resolve, with the proxy credentials, and answers it."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with FakeUpstream(openai_echo) as proxy:
        proxy_url = f"http://gw:s3cret@127.0.0.1:{proxy.port}"
        settings = {"proxy": proxy_url} if source == "provider" else {}
        if source == "environment":
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the SDK's own calls to the gateway go direct
        with GatewayServer(config("http://llm.internal.invalid:8000", {}, **settings)) as gw:
            client = make_client(gw.url + "/v1")
            assert client.chat.completions.create(model="m", messages=MSG).choices[0].message.content == \
                "echo: hello there"
    (seen,) = proxy.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["host"] == "llm.internal.invalid:8000"
    assert seen.headers["proxy-authorization"] == "Basic Z3c6czNjcmV0"  # gw:s3cret
