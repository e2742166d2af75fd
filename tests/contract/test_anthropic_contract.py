"""End to end through the real gateway (uvicorn, real sockets) with the official openai SDK as the
client and a fake upstream speaking the Anthropic Messages wire format. Each case asserts what the
SDK got back and what the fake upstream received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

APP_KEY = "sk-gw-app-anthropic-0123456789"
UPSTREAM_KEY = "sk-ant-upstream-secret-value"
MODEL = "claude-sonnet-4-5-20250929"

CONFIG = """
auth:
  required: true
  keys:
    - {{name: app, key: "${{APP_KEY}}"}}
providers:
  anthropic: {{type: anthropic, base_url: "{url}", api_key: "{upstream_key}", anthropic_version: "2023-06-01"}}
models:
  claude:
    deployments: [{{provider: anthropic, model: {model}}}]
    retries: 0
  claude-lenient:
    deployments: [{{provider: anthropic, model: {model}}}]
    drop_unsupported_params: true
"""


# ---------------------------------------------------------------------------------------------
# The fake Anthropic upstream
# ---------------------------------------------------------------------------------------------


def message(content: list[dict[str, Any]], *, stop_reason: str = "end_turn", input_tokens: int = 20,
            output_tokens: int = 7, cache_read: int = 0, cache_write: int = 0) -> dict[str, Any]:
    return {"id": "msg_fake01", "type": "message", "role": "assistant", "model": MODEL, "content": content,
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}}


def sse(events: list[dict[str, Any]]) -> list[bytes]:
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]


def stream_events(blocks: list[dict[str, Any]], *, stop_reason: str = "end_turn",
                  input_tokens: int = 20, output_tokens: int = 7, cache_read: int = 0) -> list[bytes]:
    """A full Messages stream: each block is {"type": "text", "parts": [...]} or
    {"type": "tool_use", "id", "name", "parts": [partial_json, ...]}."""
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {
        **message([], input_tokens=input_tokens, output_tokens=1, cache_read=cache_read), "stop_reason": None}},
        {"type": "ping"}]
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            events += [{"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": p}}
                       for p in block["parts"]]
        else:
            events.append({"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
            events += [{"type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": p}} for p in block["parts"]]
        events.append({"type": "content_block_stop", "index": i})
    events.append({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                   "usage": {"output_tokens": output_tokens}})
    events.append({"type": "message_stop"})
    return sse(events)


def last_user_text(body: dict[str, Any]) -> str:
    content = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if b.get("type") == "text")


def anthropic_echo(request: Recorded) -> Reply:
    text = "echo: " + last_user_text(request.json)
    if request.json.get("stream"):
        return Reply(chunks=stream_events([{"type": "text", "parts": [text[:5], text[5:]]}]))
    return Reply(json=message([{"type": "text", "text": text}]))


def anthropic_error(status: int, error_type: str, text: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, headers=headers or {}, json={
        "type": "error", "error": {"type": error_type, "message": text}, "request_id": "req_fake"})


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(anthropic_echo) as fake:
        yield fake


@pytest.fixture
def gw(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    config = CONFIG.format(url=upstream.url, upstream_key=UPSTREAM_KEY, model=MODEL)
    with GatewayServer(config, env={"APP_KEY": APP_KEY}) as server:
        yield server


@pytest.fixture
def client(gw: GatewayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=APP_KEY, max_retries=0, timeout=10) as sdk:
        yield sdk


def sent(upstream: FakeUpstream) -> dict[str, Any]:
    body: dict[str, Any] = upstream.requests[-1].json
    return body


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def test_plain_chat(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hello world"}], temperature=1.5, max_tokens=50)
    assert completion.choices[0].message.content == "echo: hello world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (20, 7)
    request = upstream.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == UPSTREAM_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert APP_KEY not in str(request.headers)
    assert request.json == {"model": MODEL, "messages": [{"role": "user", "content": "hello world"}],
                            "max_tokens": 50, "temperature": 1.0}


def test_system_prompt_and_default_max_tokens(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="claude", messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}])
    body = sent(upstream)
    assert body["system"] == "You are terse."
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 64000


def test_multi_turn(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(model="claude", messages=[
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"}, {"role": "user", "content": "four"}])
    assert completion.choices[0].message.content == "echo: three four"
    assert sent(upstream)["messages"] == [
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
        {"role": "user", "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}]}]


def test_image_input(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}}]}])
    assert sent(upstream)["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}}]


WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_tools_with_a_tool_round_trip(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: Reply(json=message([
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        stop_reason="tool_use"))
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER],
                                           tool_choice="required")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("toolu_1", "get_weather", {"city": "Paris"})
    body = sent(upstream)
    assert body["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                              "input_schema": WEATHER["function"]["parameters"]}]
    assert body["tool_choice"] == {"type": "any"}

    upstream.handler = anthropic_echo
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}]
    client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER])
    assert sent(upstream)["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"}]}]


def test_parallel_tool_calls(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: Reply(json=message([
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Tokyo"}}],
        stop_reason="tool_use"))
    completion = client.chat.completions.create(model="claude", messages=[
        {"role": "user", "content": "Paris and Tokyo?"}], tools=[WEATHER])
    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, json.loads(c.function.arguments)["city"]) for c in calls] == [
        ("toolu_a", "Paris"), ("toolu_b", "Tokyo")]
    assert "tool_choice" not in sent(upstream)

    upstream.handler = anthropic_echo
    client.chat.completions.create(model="claude", messages=[
        {"role": "user", "content": "Paris and Tokyo?"},
        {"role": "assistant", "tool_calls": [
            {"id": "toolu_a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_b", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "25C"}],
        tools=[WEATHER], parallel_tool_calls=False)
    body = sent(upstream)
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_b", "content": "25C"}]}
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_json_modes(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: Reply(json=message([
        {"type": "tool_use", "id": "toolu_j", "name": "json_response", "input": {"city": "Paris", "temp": 18}}],
        stop_reason="tool_use"))
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}}}
    completion = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                                response_format={"type": "json_schema", "json_schema": {
                                                    "name": "weather", "schema": schema}})
    assert json.loads(completion.choices[0].message.content or "") == {"city": "Paris", "temp": 18}
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None
    body = sent(upstream)
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert body["tools"][0]["input_schema"] == schema

    upstream.handler = lambda r: Reply(json=message([{"type": "text", "text": '{"ok": true}'}]))
    completion = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                                response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content or "") == {"ok": True}
    assert "JSON" in sent(upstream)["system"]


def test_stop_sequences(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: Reply(json=message([{"type": "text", "text": "1, 2, "}], stop_reason="stop_sequence"))
    completion = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "count"}],
                                                stop=["3", "END"])
    assert completion.choices[0].finish_reason == "stop"
    assert sent(upstream)["stop_sequences"] == ["3", "END"]
    upstream.handler = lambda r: Reply(json=message([{"type": "text", "text": "1, 2"}], stop_reason="max_tokens"))
    completion = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "count"}],
                                                stop="3", max_completion_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert sent(upstream)["stop_sequences"] == ["3"]
    assert sent(upstream)["max_tokens"] == 3


def test_streaming_text_and_usage_on_stream_end(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: Reply(chunks=stream_events(
        [{"type": "text", "parts": ["Hel", "lo", " there"]}], input_tokens=11, output_tokens=3, cache_read=4),
        chunk_delay=0.001)
    chunks = list(client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert sent(upstream)["stream"] is True

    with_usage = list(client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    last = with_usage[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (15, 3, 18)
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 4
    assert with_usage[-2].choices[0].finish_reason == "stop"


def test_streaming_tool_calls_reassemble_byte_exact(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    paris = ['{"ci', 'ty": "Pa', 'ris", "note": "caf\\u00e9 ', '\\"quoted\\""}']
    tokyo = ["", '{"city"', ': "Tōkyō"}']
    upstream.handler = lambda r: Reply(chunks=stream_events([
        {"type": "text", "parts": ["Checking both."]},
        {"type": "tool_use", "id": "toolu_p", "name": "get_weather", "parts": paris},
        {"type": "tool_use", "id": "toolu_t", "name": "get_weather", "parts": tokyo}], stop_reason="tool_use"))
    chunks = list(client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                                 tools=[WEATHER], stream=True))
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            slot = calls.setdefault(delta_call.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += delta_call.id or ""
            if delta_call.function is not None:
                slot["name"] += delta_call.function.name or ""
                slot["arguments"] += delta_call.function.arguments or ""
    assert calls == {0: {"id": "toolu_p", "name": "get_weather", "arguments": "".join(paris)},
                     1: {"id": "toolu_t", "name": "get_weather", "arguments": "".join(tokyo)}}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(("status", "error_type", "exception"), [
    (400, "invalid_request_error", openai.BadRequestError),
    # The provider refusing the gateway's own key is a gateway fault: 502, the provider's text not echoed.
    (401, "authentication_error", openai.InternalServerError),
    (403, "permission_error", openai.InternalServerError),
    (404, "not_found_error", openai.NotFoundError),
    (429, "rate_limit_error", openai.RateLimitError),
    (500, "api_error", openai.InternalServerError),
    (529, "overloaded_error", openai.InternalServerError),
])
def test_error_classes(client: openai.OpenAI, upstream: FakeUpstream, status: int, error_type: str,
                       exception: type[openai.APIStatusError]) -> None:
    upstream.handler = lambda r: anthropic_error(status, error_type, f"upstream says {error_type}")
    with pytest.raises(exception) as info:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    if status in (401, 403):
        assert (info.value.status_code, info.value.code) == (502, "upstream_auth_error")
        assert "upstream says" not in info.value.message
    else:
        assert info.value.status_code == status
        assert f"upstream says {error_type}" in info.value.message
    assert UPSTREAM_KEY not in str(info.value.body)


def test_context_length_error(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: anthropic_error(
        400, "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "context_length_exceeded"
    assert "prompt is too long" in info.value.message


def test_unsupported_parameter_is_a_400_before_the_upstream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], logprobs=True)
    assert info.value.param == "logprobs"
    assert upstream.requests == []


def test_an_alias_may_opt_into_dropping_unsupported_parameters(client: openai.OpenAI,
                                                                upstream: FakeUpstream) -> None:
    answer = client.chat.completions.create(model="claude-lenient", messages=[{"role": "user", "content": "x"}],
                                            logprobs=True, seed=3)
    assert answer.choices[0].message.content == "echo: x"
    assert "logprobs" not in sent(upstream) and "seed" not in sent(upstream)


def test_error_event_inside_a_stream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: Reply(chunks=stream_events([{"type": "text", "parts": ["Hel"]}])[:4] + sse(
        [{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]))
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                            stream=True))
