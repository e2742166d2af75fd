"""The Anthropic Messages API through the real app, driven by the official `anthropic` SDK: passed
through byte for byte to an Anthropic deployment (recorded Anthropic traffic served by a loopback
fake), translated to an OpenAI-compatible one and to the mock, and every gateway feature on the way
(keys, errors in Anthropic's shape, limits, cache, accounting, model-name patterns)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.openai_fake import openai_echo
from tests.support.sdk_clients import opened
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, sse_lines

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded-traffic" / "anthropic"
KEY = "sk-gw-messages-0123456789abcdef"
NARROW = "sk-gw-narrow-0123456789abcdef"
FRUGAL = "sk-gw-frugal-0123456789abcdef"
PROVIDER_KEY = "sk-ant-provider-secret-0123456789"

CONFIG = """
auth:
  keys:
    - {{name: app, key: "{key}"}}
    - {{name: narrow, key: "{narrow}", models: [mock], limits: {{rpm: 2}}}}
    - {{name: frugal, key: "{frugal}", budget: {{usd: 0.01, period: day}}}}
accounting: {{prices_file: "{prices}"}}
providers:
  ant: {{type: anthropic, base_url: "{ant}", api_key: "{provider_key}"}}
  oai: {{type: openai, base_url: "{oai}/v1"}}
  mock: {{type: mock}}
models:
  claude: {{deployments: [{{provider: ant, model: claude-haiku-4-5-20251001}}], retries: 0}}
  gpt: {{deployments: [{{provider: oai, model: gpt-5-mini}}], retries: 0}}
  mock: {{deployments: [{{provider: mock, model: echo}}]}}
  cached:
    deployments: [{{provider: ant, model: claude-haiku-4-5-20251001}}]
    cache: {{ttl: 1h}}
model_patterns:
  "claude-sonnet-*": claude
"""


def recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return data


def replay(name: str) -> Reply:
    """A recorded Anthropic answer, byte for byte."""
    response = recording(name)["response"]
    body = response["body"].encode()
    if response["headers"].get("content-type", "").startswith("text/event-stream"):
        return Reply(status=response["status"], chunks=[body[i:i + 97] for i in range(0, len(body), 97)],
                     content_type="text/event-stream")
    return Reply(status=response["status"], body=body, content_type="application/json")


class Anthropic:
    """A fake Anthropic API answering each call with the recording named in `answers` (by turn)."""

    def __init__(self) -> None:
        self.answers: list[str] = []

    def __call__(self, request: Recorded) -> Reply:
        return replay(self.answers.pop(0))


@pytest.fixture
def fake_anthropic() -> Iterator[tuple[FakeUpstream, Anthropic]]:
    handler = Anthropic()
    with FakeUpstream(handler) as upstream:
        yield upstream, handler


@pytest.fixture
def fake_openai() -> Iterator[FakeUpstream]:
    with FakeUpstream(openai_echo) as upstream:
        yield upstream


@pytest.fixture
def gw(fake_anthropic: tuple[FakeUpstream, Anthropic], fake_openai: FakeUpstream) -> Iterator[GatewayServer]:
    prices = ""  # the price table the gateway ships
    text = CONFIG.format(key=KEY, narrow=NARROW, frugal=FRUGAL, ant=fake_anthropic[0].url, oai=fake_openai.url,
                         provider_key=PROVIDER_KEY, prices=prices)
    with GatewayServer(text) as server:
        yield server


def client(gw: GatewayServer, key: str = KEY) -> anthropic.Anthropic:
    return opened(anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=60))


HEADERS = {"anthropic-beta": "interleaved-thinking-2025-05-14,context-management-2025-06-27"}


def test_passthrough_forwards_the_body_and_anthropic_headers_and_returns_the_answer_untouched(
        gw: GatewayServer, fake_anthropic: tuple[FakeUpstream, Anthropic]) -> None:
    upstream, answers = fake_anthropic
    answers.answers.append("thinking")
    body = {"model": "claude", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Think: 2+2?",
                                                       "cache_control": {"type": "ephemeral", "scope": "x"}}]},
                         {"role": "system", "content": "mid-conversation system"}],
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "a_future_field": {"kept": True}}
    response = httpx.post(f"{gw.url}/v1/messages?beta=true", json=body, timeout=10,
                          headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", **HEADERS})
    assert response.status_code == 200, response.text
    assert response.content == recording("thinking")["response"]["body"].encode()
    sent = upstream.requests[-1]
    assert sent.json == {**body, "model": "claude-haiku-4-5-20251001"}
    assert sent.headers["anthropic-beta"] == HEADERS["anthropic-beta"]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-api-key"] == PROVIDER_KEY  # the gateway's key upstream, never the client's
    answers.answers.append("thinking")
    message = client(gw).messages.create(model="claude", max_tokens=2048,
                                         messages=[{"role": "user", "content": "Think: 2+2?"}])
    assert message.content[0].type == "thinking"
    assert message.content[0].signature


def test_passthrough_stream_reaches_the_client_byte_for_byte_and_the_sdk_reads_it(
        gw: GatewayServer, fake_anthropic: tuple[FakeUpstream, Anthropic]) -> None:
    _, answers = fake_anthropic
    recorded = recording("stream_thinking_then_tool_use")
    answers.answers.append("stream_thinking_then_tool_use")
    with httpx.stream("POST", f"{gw.url}/v1/messages", timeout=10, headers={"authorization": f"Bearer {KEY}"},
                      json={**recorded["recorded_request"]["body"], "model": "claude"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(response.iter_bytes())
    assert raw == recorded["response"]["body"].encode()
    answers.answers.append("stream_thinking_then_tool_use")
    with client(gw).messages.stream(model="claude", max_tokens=64000, messages=[
            {"role": "user", "content": "Use the fixed_version tool."}]) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content][-1] == "tool_use"
    assert any(block.type == "thinking" and block.signature for block in final.content)
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens > 0


def test_provider_errors_pass_through_in_anthropic_words(gw: GatewayServer,
                                                         fake_anthropic: tuple[FakeUpstream, Anthropic]) -> None:
    _, answers = fake_anthropic
    answers.answers.append("error_400_invalid_request")
    with pytest.raises(anthropic.BadRequestError) as info:
        client(gw).messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    recorded = recording("error_400_invalid_request")["response"]["body"]
    assert info.value.response.content == recorded.encode()
    assert info.value.response.headers.get("request-id")


def test_an_overloaded_provider_is_a_529_the_sdk_sees(gw: GatewayServer,
                                                      fake_anthropic: tuple[FakeUpstream, Anthropic]) -> None:
    upstream, _ = fake_anthropic
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.handler = lambda request: Reply(status=529, json=overloaded)
    with pytest.raises(anthropic.APIStatusError) as info:
        client(gw).messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529
    assert info.value.body == overloaded


def test_translated_to_an_openai_compatible_deployment(gw: GatewayServer, fake_openai: FakeUpstream) -> None:
    message = client(gw).messages.create(model="gpt", max_tokens=50, system="Be brief.",
                                         messages=[{"role": "user", "content": "hello there"}])
    assert message.content[0].type == "text" and message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn"
    sent = fake_openai.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_tokens"] == 50 or sent.get("max_completion_tokens") == 50
    with client(gw).messages.stream(model="gpt", max_tokens=50,
                                    messages=[{"role": "user", "content": "stream me"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream me"
    assert final.usage.output_tokens > 0


def test_tool_calls_and_reasoning_translate_both_ways(gw: GatewayServer, fake_openai: FakeUpstream) -> None:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5-mini"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "Let me look."},
                              "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                                    "function": {"name": "Read", "arguments": ""}}]},
                              "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
            "arguments": '{"file_path": "notes.txt"}'}}]}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}},
    ]
    fake_openai.handler = lambda request: Reply(chunks=sse_lines(chunks))
    tools = [{"name": "Read", "description": "Read a file",
              "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]
    with client(gw).messages.stream(model="gpt", max_tokens=100, tools=tools,  # type: ignore[arg-type]
                                    messages=[{"role": "user", "content": "read notes.txt"}]) as stream:
        final = stream.get_final_message()
    kinds = [block.type for block in final.content]
    assert kinds == ["thinking", "tool_use"]
    assert final.content[1].input == {"file_path": "notes.txt"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    sent = fake_openai.requests[-1].json
    assert sent["tools"][0]["function"]["name"] == "Read"
    fake_openai.handler = openai_echo
    tool_use_id = final.content[1].id  # type: ignore[union-attr]
    answer = client(gw).messages.create(model="gpt", max_tokens=100, tools=tools, messages=[  # type: ignore[arg-type]
        {"role": "user", "content": "read notes.txt"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_use_id, "name": "Read",
                                           "input": {"file_path": "notes.txt"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": "hi!"}]}])
    assert answer.content[0].type == "text"
    sent = fake_openai.requests[-1].json
    assert sent["messages"][1]["tool_calls"][0]["id"] == tool_use_id
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": tool_use_id, "content": "hi!"}


def test_the_mock_answers_in_messages_form(gw: GatewayServer) -> None:
    message = client(gw).messages.create(model="mock", max_tokens=20,
                                         messages=[{"role": "user", "content": "echo this"}])
    assert message.type == "message" and message.role == "assistant"
    assert "echo this" in message.content[0].text  # type: ignore[union-attr]
    with client(gw).messages.stream(model="mock", max_tokens=20,
                                    messages=[{"role": "user", "content": "and this"}]) as stream:
        assert "and this" in "".join(stream.text_stream)


def test_gateway_errors_reach_the_sdk_as_its_own_classes(gw: GatewayServer) -> None:
    ask: dict[str, Any] = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(anthropic.AuthenticationError) as auth:
        client(gw, "sk-wrong-key-0000000000000").messages.create(model="mock", **ask)
    assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError):
        client(gw, NARROW).messages.create(model="claude", **ask)
    with pytest.raises(anthropic.NotFoundError):
        client(gw).messages.create(model="no-such-model", **ask)
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(gw).messages.create(model="mock", messages=[], max_tokens=5)
    assert bad.value.body["type"] == "error"  # type: ignore[index]
    client(gw, NARROW).messages.create(model="mock", **ask)
    client(gw, NARROW).messages.create(model="mock", **ask)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client(gw, NARROW).messages.create(model="mock", **ask)
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_count_tokens_models_and_model_patterns(gw: GatewayServer,
                                                fake_anthropic: tuple[FakeUpstream, Anthropic]) -> None:
    counted = client(gw).messages.count_tokens(model="claude", messages=[{"role": "user", "content": "hello world"}])
    assert counted.input_tokens > 0
    page = client(gw).models.list()
    assert {m.id for m in page.data} >= {"claude", "gpt", "mock"}
    assert all(m.type == "model" for m in page.data)
    upstream, answers = fake_anthropic
    answers.answers.append("thinking")
    client(gw).messages.create(model="claude-sonnet-4-5-20250929", max_tokens=2048,
                               messages=[{"role": "user", "content": "x"}])
    assert upstream.requests[-1].json["model"] == "claude-haiku-4-5-20251001"


def test_a_cached_messages_answer_replays_as_messages(gw: GatewayServer,
                                                      fake_anthropic: tuple[FakeUpstream, Anthropic]) -> None:
    upstream, answers = fake_anthropic
    answers.answers.extend(["thinking", "stream_tool_use"])
    ask: dict[str, Any] = {"model": "cached", "max_tokens": 64,
                           "messages": [{"role": "user", "content": "the same question"}]}
    headers = {"x-api-key": KEY}
    first = httpx.post(f"{gw.url}/v1/messages", json=ask, headers=headers, timeout=60)
    again = httpx.post(f"{gw.url}/v1/messages", json=ask, headers=headers, timeout=60)
    assert first.headers["x-gateway-cache"] == "MISS" and again.headers["x-gateway-cache"] == "HIT"
    assert again.content == first.content
    streamed = httpx.post(f"{gw.url}/v1/messages", json={**ask, "stream": True}, headers=headers, timeout=60)
    replayed = httpx.post(f"{gw.url}/v1/messages", json={**ask, "stream": True}, headers=headers, timeout=60)
    assert streamed.headers["x-gateway-cache"] == "MISS" and replayed.headers["x-gateway-cache"] == "HIT"
    assert replayed.content == streamed.content
    assert len(upstream.requests) == 2


def test_usage_of_a_passthrough_stream_is_accounted(gw: GatewayServer,
                                                    fake_anthropic: tuple[FakeUpstream, Anthropic]) -> None:
    _, answers = fake_anthropic
    answers.answers.append("stream_tool_use")
    with client(gw).messages.stream(model="claude", max_tokens=100,
                                    messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_message()
    metrics = httpx.get(f"{gw.url}/metrics", timeout=60).text  # (a scrape runs every waiting settle first)
    line = next(line for line in metrics.splitlines() if line.startswith("gateway_tokens_total{")
                and 'alias="claude"' in line and 'direction="completion"' in line)
    assert float(line.rsplit(" ", 1)[1]) == final.usage.output_tokens
    assert 'gateway_dialect_requests_total{dialect="messages",status_class="2xx"} 1.0' in metrics


def test_a_spent_budget_refuses_the_next_call_in_anthropic_words(
        gw: GatewayServer, fake_anthropic: tuple[FakeUpstream, Anthropic]) -> None:
    """The budget reservation prices a Messages call at its alias's price (prompt plus max_tokens):
    within the budget it runs and is charged, then the next one is refused with a 402 billing_error
    (a 429 would send Claude Code retrying for nothing)."""
    _, answers = fake_anthropic
    answers.answers.append("thinking")
    small = {"max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}
    client(gw, FRUGAL).messages.create(model="claude", **small)  # type: ignore[arg-type]
    with pytest.raises(anthropic.APIStatusError) as refused:
        client(gw, FRUGAL).messages.create(model="claude", max_tokens=4096,
                                           messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert len(answers.answers) == 0  # the refused call never reached the provider
