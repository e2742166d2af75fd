"""A stream whose client is gone before its first byte could be sent still settles: its upstream is
closed and its reservations released (driven at the ASGI level, where `send` can fail at will)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gateway.app import create_app
from gateway.config import parse_config

CONFIG = """
auth: {required: true, keys: [{name: app, key: sk-app-0123456789abcdef, limits: {max_parallel: 1}}]}
providers: {m: {type: mock, chunk_delay: 10ms}}
models: {demo: {deployments: [{provider: m, model: echo}]}}
"""
BODY = b'{"model": "demo", "stream": true, "messages": [{"role": "user", "content": "one two three"}]}'


async def call(app: Any, fail_on_start: bool) -> int:
    statuses: list[int] = []
    messages = [{"type": "http.request", "body": BODY, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
            if fail_on_start:
                raise OSError("the client is gone")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
             "headers": [(b"authorization", b"Bearer sk-app-0123456789abcdef"),
                         (b"content-type", b"application/json")], "state": {}}
    with contextlib.suppress(OSError):  # the failing client
        await app(scope, receive, send)
    return statuses[0]


async def test_a_stream_that_could_not_start_still_releases_its_lease() -> None:
    app = create_app(parse_config(CONFIG, env={}))
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                         startup.get, lifespan_send))
    await started.wait()
    try:
        assert await call(app, fail_on_start=True) == 200
        # max_parallel is 1: the second stream is admitted only if the first one's lease was released.
        assert await call(app, fail_on_start=False) == 200
    finally:
        await startup.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(lifespan, 5)
