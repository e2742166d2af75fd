"""Load shedding through the real app: past `models.<alias>.max_in_flight` (or the worker's
`server.max_in_flight`) calls in flight, one more is answered at once 503 `gateway_overloaded` with
`Retry-After`, in the client's dialect, and counted; the bound frees up as the held streams end."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.openai_fake import chat_chunks, openai_echo
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, metrics_show, sse_lines

MSG: Any = [{"role": "user", "content": "hello"}]
CONFIG = """
auth: {{required: false}}
server: {{max_in_flight: 3}}
providers: {{up: {{type: openai, base_url: "{url}/v1", api_key: x}}}}
models:
  bounded: {{max_in_flight: 2, deployments: [{{provider: up, model: m}}]}}
  other: {{deployments: [{{provider: up, model: m}}]}}
"""


class Held:
    """Streams that send their first chunk and hold their last one until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, request: Recorded) -> Reply:
        if not request.json.get("stream"):
            return openai_echo(request)
        chunks = sse_lines(chat_chunks("hello there", request.json["model"], include_usage=False))
        return Reply(chunks=chunks, hold_last=self.release)


@pytest.fixture
def held() -> Iterator[tuple[Held, GatewayServer]]:
    script = Held()
    with FakeUpstream(script) as upstream, GatewayServer(CONFIG.format(url=upstream.url)) as gw:
        try:
            yield script, gw
        finally:
            script.release.set()


def shed(gw: GatewayServer, scope: str, alias: str) -> str:
    return f'gateway_requests_shed_total{{alias="{alias}",scope="{scope}"}}'


def test_an_alias_past_its_bound_answers_503_with_retry_after_at_once(
        held: tuple[Held, GatewayServer], make_client: Callable[..., openai.OpenAI]) -> None:
    script, gw = held
    sdk = make_client(gw.url + "/v1")
    streams = [sdk.chat.completions.create(model="bounded", messages=MSG, stream=True) for _ in range(2)]
    with pytest.raises(openai.InternalServerError) as refused:
        sdk.chat.completions.create(model="bounded", messages=MSG)
    assert refused.value.status_code == 503 and refused.value.code == "gateway_overloaded"
    assert refused.value.response.headers["retry-after"] == "1"
    assert "bounded" in refused.value.message
    messages = httpx.post(gw.url + "/v1/messages", timeout=10, headers={"anthropic-version": "2023-06-01"},
                          json={"model": "bounded", "max_tokens": 10, "messages": MSG})
    assert messages.status_code == 503 and messages.headers["retry-after"] == "1"
    assert messages.json()["type"] == "error"  # the Messages API's own error shape
    # Another alias still has room: the worker's bound (3) is not reached yet.
    other = sdk.chat.completions.create(model="other", messages=MSG, stream=True)
    with pytest.raises(openai.InternalServerError) as worker:
        sdk.chat.completions.create(model="other", messages=MSG)
    assert worker.value.status_code == 503 and "gateway" in worker.value.message
    script.release.set()
    for stream in [*streams, other]:
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "hello there"
    text = metrics_show(gw.url, shed(gw, "worker", "other") + " 1.0")
    assert shed(gw, "alias", "bounded") + " 2.0" in text and shed(gw, "worker", "other") + " 1.0" in text
    # The held streams ended: the bound is free again.
    answer = sdk.chat.completions.create(model="bounded", messages=MSG)
    assert answer.choices[0].message.content == "echo: hello"
