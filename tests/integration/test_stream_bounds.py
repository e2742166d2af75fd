"""A stream's time bounds through the real app: once committed, the alias `timeout` bounds the whole
stream and `stream_idle_timeout` the wait for each event, and a stream cut by either ends with an
error event; SSE comments and keep-alives sent before the first real event do not commit a stream,
so a stalled deployment still falls back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.openai_fake import chat_chunks, openai_echo
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, sse_lines

MSG = [{"role": "user", "content": "hello there"}]


def events(text: str) -> list[Any]:
    """The `data:` payloads of an SSE body, parsed (the [DONE] marker as a string)."""
    out: list[Any] = []
    for event in text.split("\n\n"):
        if event.startswith("data: "):
            payload = event.removeprefix("data: ")
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def stalls_after_one_chunk(request: Recorded) -> Reply:
    chunks = sse_lines(chat_chunks("one two three", request.json["model"], include_usage=True))
    return Reply(chunks=chunks, chunk_delay=30.0)


def never_ends(request: Recorded) -> Reply:
    """A chunk every 0.1 s, for far longer than the alias allows."""
    chunk = sse_lines(chat_chunks("word", request.json["model"], include_usage=False)[1:2], done=False)[0]
    return Reply(chunks=[chunk] * 600, chunk_delay=0.1)


@pytest.fixture(scope="module")
def bounded() -> Iterator[GatewayServer]:
    with FakeUpstream(stalls_after_one_chunk) as stalled, FakeUpstream(never_ends) as endless:
        config = {
            "auth": {"required": False},
            "providers": {"stalled": {"type": "openai", "base_url": f"{stalled.url}/v1"},
                          "endless": {"type": "openai", "base_url": f"{endless.url}/v1"}},
            "models": {
                "idle": {"deployments": [{"provider": "stalled", "model": "m"}], "stream_idle_timeout": "300ms"},
                "total": {"deployments": [{"provider": "endless", "model": "m"}], "timeout": "1s"},
            },
        }
        with GatewayServer(json.dumps(config)) as gw:
            yield gw


def stream(gw: GatewayServer, model: str) -> httpx.Response:
    body = {"model": model, "messages": MSG, "stream": True}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=20)


def test_a_stream_that_goes_quiet_is_cut_with_an_error_event(bounded: GatewayServer) -> None:
    answer = stream(bounded, "idle")
    assert answer.status_code == 200
    got = events(answer.text)
    assert got[0]["choices"][0]["delta"]["role"] == "assistant"
    assert got[-1]["error"]["code"] == "stream_idle_timeout"
    assert "[DONE]" not in got


def test_the_alias_timeout_bounds_the_whole_stream(bounded: GatewayServer) -> None:
    answer = stream(bounded, "total")
    got = events(answer.text)
    assert len(got) > 2, "the stream was under way"
    assert got[-1]["error"]["code"] == "upstream_timeout"
    assert "did not finish within" in got[-1]["error"]["message"]


@pytest.mark.parametrize(("comments", "pause"), [([b": PROCESSING\n\n"], 8.0), ([b": ping\n\n"] * 50, 0.1)],
                         ids=["processing-then-stall", "pings"])
def test_comments_before_the_first_event_do_not_commit_the_stream(comments: list[bytes], pause: float) -> None:
    def queueing(request: Recorded) -> Reply:
        return Reply(chunks=[*comments, *(openai_echo(request).chunks or [])], chunk_delay=pause)

    with FakeUpstream(queueing) as slow, FakeUpstream(openai_echo) as spare:
        config = {
            "auth": {"required": False},
            "providers": {"slow": {"type": "openai", "base_url": f"{slow.url}/v1"},
                          "spare": {"type": "openai", "base_url": f"{spare.url}/v1"}},
            "models": {"m": {"deployments": [{"provider": "slow", "model": "a", "name": "slow"},
                                             {"provider": "spare", "model": "b", "name": "spare", "priority": 1}],
                             "strategy": "priority", "ttft_timeout": "500ms", "retries": 1}},
        }
        with GatewayServer(json.dumps(config)) as gw:
            answer = stream(gw, "m")
    assert answer.headers["x-gateway-deployment"] == "spare"
    assert ": PROCESSING" not in answer.text and ": ping" not in answer.text
    assert events(answer.text)[-1] == "[DONE]"
