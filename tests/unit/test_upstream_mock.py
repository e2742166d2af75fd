"""The in-process mock upstream leaves the event loop a turn while it produces a long stream."""

from __future__ import annotations

import asyncio

import orjson

from gateway.config import MockProvider
from gateway.providers.base import UpstreamRequest
from gateway.upstream import MockClient


async def test_a_long_mock_stream_gives_other_tasks_a_turn() -> None:
    client = MockClient(MockProvider(type="mock"))
    body = {"model": "lorem", "max_tokens": 2000, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    request = UpstreamRequest("POST", "mock://m/chat/completions", {}, orjson.dumps(body), stream=True)
    response = await client.send(request)
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    neighbour = asyncio.ensure_future(other())
    await asyncio.sleep(0)
    before = turns
    chunks = [chunk async for chunk in response.chunks()]
    neighbour.cancel()
    assert len(chunks) > 2000
    assert turns - before >= len(chunks) // 100, "the other task ran while the stream was produced"
