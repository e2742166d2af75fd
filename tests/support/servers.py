"""Real servers on loopback for end-to-end tests: the gateway under uvicorn, and fake upstreams
that speak a provider's wire format, each on its own event loop in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiohttp import web

from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.server import GatewayHttpProtocol

# The smallest working config: no key needed, one alias `m` on the built-in mock provider.
MOCK_CONFIG = """
auth: {required: false}
providers:
  mock: {type: mock}
models:
  m: {deployments: [{provider: mock, model: x}]}
"""


def read_answer(sock: socket.socket, data: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One whole HTTP/1.1 answer read from `sock` after `data` (bytes already read): framed by
    Content-Length, or chunked up to its last chunk. (head, body, what came after it)."""

    def more() -> bytes:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        return chunk

    while b"\r\n\r\n" not in data:
        data += more()
    head, _, rest = data.partition(b"\r\n\r\n")
    lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    if lengths:
        while len(rest) < lengths[0]:
            rest += more()
        return head, rest[: lengths[0]], rest[lengths[0]:]
    while not rest.endswith(b"0\r\n\r\n"):
        rest += more()
    return head, rest, b""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorded:
    """One request as the fake upstream received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """What the fake upstream answers: a body, or SSE/binary chunks sent with delays."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    chunks: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    charset: str | None = None
    # Seconds before the headers, before the first chunk, and between chunks.
    delay: float = 0.0
    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0
    # Drop the connection after this many chunks (a provider dying mid-stream).
    cut_after: int | None = None
    # Hold the last chunk back until this is set (a provider slow to end its answer).
    hold_last: threading.Event | None = None


Handler = Callable[[Recorded], "Reply | Awaitable[Reply]"]


class FakeUpstream:
    """An HTTP server on a free loopback port. `handler` decides each answer; every request is
    recorded; streams the client abandoned are counted in `disconnects`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = Recorded(request.method, request.path, dict(request.query),
                            {k.lower(): v for k, v in request.headers.items()}, await request.read())
        self.requests.append(recorded)
        reply = self.handler(recorded)
        if not isinstance(reply, Reply):
            reply = await reply
        if reply.delay and not await _stays(request, reply.delay):
            self.disconnects += 1  # the gateway gave up on this answer while it was delayed
            return web.Response()
        if reply.chunks is None:
            body = reply.body if reply.body is not None else json.dumps(reply.json).encode()
            return web.Response(status=reply.status, body=body, headers=reply.headers,
                                content_type=reply.content_type or "application/json", charset=reply.charset)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.content_type = reply.content_type or "text/event-stream"
        if reply.charset:
            response.charset = reply.charset
        await response.prepare(request)
        try:
            for i, chunk in enumerate(reply.chunks):
                if reply.cut_after is not None and i >= reply.cut_after:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                pause = reply.first_chunk_delay if i == 0 else reply.chunk_delay
                if pause:
                    await asyncio.sleep(pause)
                if reply.hold_last is not None and i == len(reply.chunks) - 1:
                    await asyncio.get_running_loop().run_in_executor(None, reply.hold_last.wait, 10)
                await response.write(chunk)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return response


async def _stays(request: web.Request, seconds: float) -> bool:
    """Wait `seconds`; False as soon as the caller closes the connection instead."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        await asyncio.sleep(min(0.02, seconds))
    return True


class GatewayServer:
    """The real app under uvicorn (httptools, with the gateway's own protocol as `gateway serve` runs
    it; lifespan on) on a free loopback port."""

    def __init__(self, config: GatewayConfig | str, env: dict[str, str] | None = None) -> None:
        self.config = parse_config(config, env=env or {}) if isinstance(config, str) else config
        self.app = create_app(self.config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, loop="asyncio", http=GatewayHttpProtocol,
            access_log=False, log_level="warning", lifespan="on", timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def services(self) -> Any:
        return self.app.state.services

    def __enter__(self) -> GatewayServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)


@contextlib.contextmanager
def gateway(config: str, env: dict[str, str] | None = None) -> Iterator[GatewayServer]:
    with GatewayServer(config, env) as server:
        yield server


def sse_lines(events: list[Any], done: bool = True) -> list[bytes]:
    """JSON objects → SSE `data:` events, as OpenAI-compatible servers send them."""
    out = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


def metrics_show(base_url: str, line: str, seconds: float = 5.0) -> str:
    """The /metrics text once it holds `line`. The settle step (store writes, metrics) runs just after
    the response is sent, so a client that asks right after its answer may be a moment early."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        text = httpx.get(base_url + "/metrics", timeout=10).text
        if line in text or time.monotonic() > deadline:
            return text
        time.sleep(0.02)
