"""The Anthropic adapter: request translation field by field, answers and streams from the Messages
API reference, streams split at random places, and error mapping per Anthropic error type."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.config import AnthropicProvider
from gateway.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    UpstreamError,
    UpstreamProtocolError,
)
from gateway.providers import build_provider
from gateway.providers.anthropic import AnthropicAdapter, AnthropicStream, default_max_tokens
from gateway.providers.anthropic_request import JSON_OBJECT_INSTRUCTION
from gateway.schemas import Operation

DATA = Path(__file__).resolve().parents[2] / "data" / "anthropic"
MODEL = "claude-sonnet-4-5-20250929"


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def translate(body: dict[str, Any], *, stream: bool = False, **kwargs: Any) -> dict[str, Any]:
    body = {"model": "claude", **body}
    before = copy.deepcopy(body)
    request = AnthropicAdapter().build_request(Operation.CHAT, body, MODEL, stream=stream, **kwargs)
    assert body == before, "the client's body must not be mutated"
    result: dict[str, Any] = orjson.loads(request.body)
    return result


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def test_plain_request_url_headers_and_body() -> None:
    adapter = AnthropicAdapter(version="2023-06-01", headers={"anthropic-beta": "prompt-caching"})
    request = adapter.build_request(Operation.CHAT, {"model": "claude", "messages": [user("Hello")]},
                                    MODEL, stream=False)
    assert request.method == "POST"
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {"content-type": "application/json", "anthropic-version": "2023-06-01",
                               "anthropic-beta": "prompt-caching"}
    assert "x-api-key" not in request.headers
    assert request.stream is False
    assert orjson.loads(request.body) == {
        "model": MODEL, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64000}


@pytest.mark.parametrize(("base_url", "url"), [
    ("http://fake:9000", "http://fake:9000/v1/messages"),
    ("http://fake:9000/", "http://fake:9000/v1/messages"),
    ("http://fake:9000/v1", "http://fake:9000/v1/messages"),
    ("http://fake:9000/proxy/v1/", "http://fake:9000/proxy/v1/messages"),
])
def test_base_url(base_url: str, url: str) -> None:
    assert AnthropicAdapter(base_url).url == url


def test_stream_flag() -> None:
    assert translate({"messages": [user("hi")]}, stream=True)["stream"] is True
    assert "stream" not in translate({"messages": [user("hi")], "stream": True})


def test_system_and_developer_are_hoisted() -> None:
    out = translate({"messages": [
        {"role": "system", "content": "Be terse."},
        user("Hi"),
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        user("Again"),
    ]})
    assert out["system"] == [{"type": "text", "text": "Be terse."},
                             {"type": "text", "text": "Answer in French."}]
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                            {"type": "text", "text": "Again"}]}]


def test_single_system_message_is_a_string() -> None:
    out = translate({"messages": [{"role": "system", "content": "Be terse."}, user("Hi")]})
    assert out["system"] == "Be terse."
    assert out["messages"] == [{"role": "user", "content": "Hi"}]


def test_multi_turn_and_merging_of_consecutive_roles() -> None:
    out = translate({"messages": [
        user("one"), user("two"),
        {"role": "assistant", "content": "three"}, {"role": "assistant", "content": "four"},
        user("five"),
    ]})
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "three"},
                                          {"type": "text", "text": "four"}]},
        {"role": "user", "content": "five"},
    ]


def test_empty_messages_are_skipped_and_prefill_is_trimmed() -> None:
    out = translate({"messages": [user("Hi"), {"role": "assistant", "content": ""}, user("Hey"),
                                  {"role": "assistant", "content": "The answer is: "}]})
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Hey"}]},
        {"role": "assistant", "content": "The answer is:"},
    ]


def test_images_by_url_and_data_url() -> None:
    out = translate({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
         "cache_control": {"type": "ephemeral"}},
    ]}]})
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
         "cache_control": {"type": "ephemeral"}},
    ]


@pytest.mark.parametrize("url", ["data:image/png,rawbytes", "data:;base64,abc", "data:image/png;base64"])
def test_bad_data_url(url: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]})
    assert info.value.param == "messages[0].content[0].image_url.url"


def test_unsupported_content_part() -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]})
    assert info.value.param == "messages[0].content[0].type"


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time"}}


def test_tools_definitions() -> None:
    out = translate({"messages": [user("Weather?")], "tools": [WEATHER, CLOCK]})
    assert out["tools"] == [
        {"name": "get_weather", "description": "Get the weather",
         "input_schema": WEATHER["function"]["parameters"]},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in out


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ({"type": "function", "function": {"name": "get_weather"}}, False,
     {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
    (None, True, None),
])
def test_tool_choice(choice: object, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {"messages": [user("Weather?")], "tools": [WEATHER]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert translate(body).get("tool_choice") == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    out = translate({"messages": [user("Hi")], "tool_choice": "none"})
    assert "tool_choice" not in out and "tools" not in out


def test_bad_tool_choice() -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate({"messages": [user("Hi")], "tools": [WEATHER], "tool_choice": "sometimes"})
    assert info.value.param == "tool_choice"


def test_tool_round_trip_messages() -> None:
    out = translate({"tools": [WEATHER], "messages": [
        user("Weather in Paris and Tokyo?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "25C"}]},
        user("And tomorrow?"),
    ]})
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Paris and Tokyo?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "25C"}]},
            {"type": "text", "text": "And tomorrow?"},
        ]},
    ]


def test_assistant_text_with_tool_calls_and_tool_results_first() -> None:
    out = translate({"tools": [WEATHER], "messages": [
        user("Weather?"),
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        user("(waiting)"),
        {"role": "tool", "tool_call_id": "call_1", "content": ""},
    ]})
    assert out["messages"][1]["content"][0] == {"type": "text", "text": "Let me check."}
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1"}, {"type": "text", "text": "(waiting)"}]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_bad_tool_call_arguments(arguments: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate({"messages": [user("x"), {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]}]})
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_tool_message_without_id() -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate({"messages": [user("x"), {"role": "tool", "content": "r"}]})
    assert info.value.param == "messages[1].tool_call_id"


def test_function_role_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate({"messages": [user("x"), {"role": "function", "name": "f", "content": "r"}]})
    assert info.value.param == "messages[1].role"


@pytest.mark.parametrize(("body", "expected"), [
    ({}, 64000),
    ({"max_tokens": 100}, 100),
    ({"max_completion_tokens": 200}, 200),
    ({"max_tokens": 100, "max_completion_tokens": 200}, 200),
])
def test_max_tokens(body: dict[str, Any], expected: int) -> None:
    assert translate({"messages": [user("x")], **body})["max_tokens"] == expected


@pytest.mark.parametrize(("model", "expected"), [
    ("claude-3-haiku-20240307", 4096),
    ("claude-3-opus-20240229", 4096),
    ("claude-3-5-sonnet-20241022", 8192),
    ("claude-3-5-haiku-latest", 8192),
    ("claude-3-7-sonnet-20250219", 64000),
    ("claude-sonnet-4-20250514", 64000),
    ("claude-opus-4-20250514", 32000),
    ("claude-opus-4-0", 32000),
    ("claude-opus-4-1-20250805", 32000),
    ("claude-opus-4-5-20251101", 64000),
    ("claude-haiku-4-5", 64000),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", 8192),
    ("claude-sonnet-5", 64000),
    ("claude-2.1", 4096),
    ("my-finetune", 4096),
])
def test_default_max_tokens_table(model: str, expected: int) -> None:
    assert default_max_tokens(model) == expected


def test_sampling_parameters() -> None:
    out = translate({"messages": [user("x")], "temperature": 1.7, "top_p": 0.9, "stop": ["END", "STOP"],
                     "user": "user-42", "top_k": 40})
    assert out["temperature"] == 1.0
    assert out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END", "STOP"]
    assert out["metadata"] == {"user_id": "user-42"}
    assert out["top_k"] == 40
    single = translate({"messages": [user("x")], "temperature": 0.3, "stop": "END"})
    assert single["temperature"] == 0.3
    assert single["stop_sequences"] == ["END"]


def test_json_object_adds_an_instruction() -> None:
    out = translate({"messages": [{"role": "system", "content": "Be terse."}, user("x")],
                     "response_format": {"type": "json_object"}})
    assert out["system"] == [{"type": "text", "text": "Be terse."},
                             {"type": "text", "text": JSON_OBJECT_INSTRUCTION}]
    assert translate({"messages": [user("x")], "response_format": {"type": "json_object"}})["system"] \
        == JSON_OBJECT_INSTRUCTION
    assert "system" not in translate({"messages": [user("x")], "response_format": {"type": "text"}})


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_json_schema_is_a_forced_tool() -> None:
    out = translate({"messages": [user("x")], "response_format": {
        "type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}})
    assert out["tools"] == [{"name": "json_response",
                             "description":
                                 "Give the final answer as this tool's input. (response format: city)",
                             "input_schema": SCHEMA}]
    assert out["tool_choice"] == {"type": "tool", "name": "json_response"}


@pytest.mark.parametrize(("choice", "expected"), [
    (None, {"type": "any"}),
    ("auto", {"type": "any"}),
    ("none", {"type": "tool", "name": "json_response"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_json_schema_with_client_tools(choice: object, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {"messages": [user("x")], "tools": [WEATHER], "response_format": {
        "type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}}
    if choice is not None:
        body["tool_choice"] = choice
    out = translate(body)
    assert [tool["name"] for tool in out["tools"]] == ["get_weather", "json_response"]
    assert out["tool_choice"] == expected


def test_json_schema_errors() -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate({"messages": [user("x")], "response_format": {"type": "json_schema", "json_schema": {}}})
    assert info.value.param == "response_format.json_schema.schema"
    reserved = {"type": "function", "function": {"name": "json_response"}}
    with pytest.raises(InvalidRequestError) as info:
        translate({"messages": [user("x")], "tools": [reserved], "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}})
    assert info.value.param == "tools[0].function.name"


@pytest.mark.parametrize(("name", "value"), [
    ("logprobs", True), ("top_logprobs", 3), ("n", 2), ("presence_penalty", 0.5),
    ("frequency_penalty", -1), ("logit_bias", {"50256": -100}), ("seed", 7),
    ("functions", [{"name": "f"}]), ("function_call", "auto"), ("modalities", ["text", "audio"]),
    ("audio", {"voice": "alloy", "format": "wav"}),
])
def test_unsupported_parameters(name: str, value: object) -> None:
    body = {"messages": [user("x")], name: value}
    with pytest.raises(InvalidRequestError) as info:
        translate(body)
    assert info.value.param == name
    assert info.value.code == "unsupported_parameter"
    assert name not in translate(body, drop_unsupported_params=True)
    adapter = AnthropicAdapter(drop_unsupported_params=True)
    request = adapter.build_request(Operation.CHAT, {"model": "c", **body}, MODEL, stream=False)
    assert name not in orjson.loads(request.body)


@pytest.mark.parametrize(("name", "value"), [
    ("logprobs", False), ("n", 1), ("presence_penalty", 0), ("frequency_penalty", 0.0), ("logit_bias", {}),
    ("modalities", ["text"]), ("store", True), ("metadata", {"a": "b"}), ("service_tier", "auto"),
])
def test_harmless_defaults_are_accepted_and_not_forwarded(name: str, value: object) -> None:
    assert name not in translate({"messages": [user("x")], name: value})


@pytest.mark.parametrize("operation", [Operation.EMBEDDINGS, Operation.COMPLETIONS])
def test_only_chat(operation: Operation) -> None:
    adapter = AnthropicAdapter()
    assert operation not in adapter.capabilities.operations
    assert Operation.CHAT in adapter.capabilities.operations
    with pytest.raises(InvalidRequestError):
        adapter.build_request(operation, {"model": "c", "input": "x"}, MODEL, stream=False)


def test_registry_builds_adapter_and_x_api_key_credentials() -> None:
    cfg = AnthropicProvider(type="anthropic", api_key=SecretStr("sk-ant-test"), base_url="http://fake",
                            anthropic_version="2024-01-01")
    provider = build_provider("anthropic", cfg)
    request = provider.adapter.build_request(Operation.CHAT, {"model": "c", "messages": [user("x")]},
                                             MODEL, stream=False)
    assert request.url == "http://fake/v1/messages"
    assert request.headers["anthropic-version"] == "2024-01-01"
    provider.credentials.apply(request)
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert "authorization" not in request.headers
    assert "sk-ant-test" not in repr(provider.credentials)


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------


def parse(name: str) -> tuple[dict[str, Any], Any]:
    parsed = AnthropicAdapter().parse_response(Operation.CHAT, 200, fixture(name))
    assert orjson.loads(parsed.body) == parsed.data
    return parsed.data, parsed.usage


def test_text_response_with_cache_usage() -> None:
    data, usage = parse("message_text.json")
    assert data["id"] == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "claude-sonnet-4-5-20250929"
    assert data["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "Hi! My name is Claude.", "refusal": None}}]
    assert data["usage"] == {"prompt_tokens": 4195, "completion_tokens": 503, "total_tokens": 4698,
                             "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 100}}
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_write_tokens) \
        == (4195, 503, 2000, 100)


def test_tool_use_response() -> None:
    data, usage = parse("message_tool_use.json")
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the weather in both cities."
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'}},
        {"id": "toolu_01B09q90qw90lq917835lq8", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"location":"Paris, France","unit":"celsius"}'}},
    ]
    assert usage.prompt_tokens == 472 and usage.completion_tokens == 89


def test_json_tool_response_is_message_text() -> None:
    data, _ = parse("message_json_tool.json")
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert orjson.loads(choice["message"]["content"]) == {
        "elements": [{"location": "San Francisco", "temperature": 58, "condition": "sunny"}]}


@pytest.mark.parametrize(("stop_reason", "expected"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "content_filter"),
    ("pause_turn", "stop"), ("model_context_window_exceeded", "length"), ("something_new", "stop"),
])
def test_stop_reasons(stop_reason: str, expected: str) -> None:
    message = orjson.loads(fixture("message_text.json"))
    message["stop_reason"] = stop_reason
    parsed = AnthropicAdapter().parse_response(Operation.CHAT, 200, orjson.dumps(message))
    assert parsed.data["choices"][0]["finish_reason"] == expected


def test_thinking_blocks_are_ignored() -> None:
    message = orjson.loads(fixture("message_text.json"))
    message["content"].insert(0, {"type": "thinking", "thinking": "hmm", "signature": "sig"})
    parsed = AnthropicAdapter().parse_response(Operation.CHAT, 200, orjson.dumps(message))
    assert parsed.data["choices"][0]["message"]["content"] == "Hi! My name is Claude."


@pytest.mark.parametrize("body", [b"not json", b"[1]"])
def test_unreadable_response(body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        AnthropicAdapter().parse_response(Operation.CHAT, 200, body)


# ---------------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------------


def run(
    raw: bytes, pieces: list[bytes] | None = None, *, usage: bool = True
) -> tuple[bytes, AnthropicStream]:
    stream = AnthropicStream(usage, created=1700000000)
    out = b"".join(stream.feed(piece) for piece in (pieces or [raw]))
    return out + stream.finish(), stream


def chunks(output: bytes) -> list[dict[str, Any]]:
    assert output.endswith(b"data: [DONE]\n\n")
    events = output.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    return [orjson.loads(event.removeprefix(b"data: ")) for event in events[:-2]]


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(raw)) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


def test_text_stream() -> None:
    output, stream = run(fixture("stream_text.txt"))
    got = chunks(output)
    base = {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "object": "chat.completion.chunk",
            "created": 1700000000, "model": "claude-sonnet-4-5-20250929"}
    assert [c["choices"][0]["delta"] for c in got[:-1]] == [
        {"role": "assistant", "content": ""}, {"content": "Hello"}, {"content": "!"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in got[:-1]] == [None, None, None, "stop"]
    assert all({k: c[k] for k in base} == base for c in got)
    assert all(c["usage"] is None for c in got[:-1])
    assert got[-1] == {**base, "choices": [], "usage": {
        "prompt_tokens": 35, "completion_tokens": 15, "total_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 10}}}
    assert stream.done and stream.finish_reason == "stop"
    assert stream.usage is not None
    got_usage = stream.usage
    assert (got_usage.prompt_tokens, got_usage.completion_tokens, got_usage.cached_tokens) == (35, 15, 10)


def test_text_stream_without_client_usage() -> None:
    output, stream = run(fixture("stream_text.txt"), usage=False)
    got = chunks(output)
    assert all("usage" not in c for c in got)
    assert got[-1]["choices"][0]["finish_reason"] == "stop"
    assert stream.usage is not None and stream.usage.completion_tokens == 15


def test_crlf_stream() -> None:
    raw = fixture("stream_text.txt")
    assert run(raw.replace(b"\n", b"\r\n"))[0] == run(raw)[0]


def reassemble(got: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in got:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls") or ():
                slot = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] += call.get("id") or ""
                slot["name"] += (call.get("function") or {}).get("name") or ""
                slot["arguments"] += (call.get("function") or {}).get("arguments") or ""
    return calls


def test_tool_stream() -> None:
    output, stream = run(fixture("stream_tool_use.txt"))
    got = chunks(output)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in got if c["choices"])
    assert text == "Okay, let's check the weather for San Francisco, CA:"
    assert reassemble(got) == {0: {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                                   "arguments": '{"location": "San Francisco, CA", "unit": "fahrenheit"}'}}
    first_call = next(c for c in got if c["choices"] and "tool_calls" in c["choices"][0]["delta"])
    assert first_call["choices"][0]["delta"]["tool_calls"] == [{
        "index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
        "function": {"name": "get_weather", "arguments": ""}}]
    assert stream.finish_reason == "tool_calls"
    assert got[-1]["usage"]["completion_tokens"] == 89


def test_parallel_tool_stream_indexes_count_tool_calls_not_blocks() -> None:
    output, stream = run(fixture("stream_parallel_tools.txt"))
    got = chunks(output)
    assert reassemble(got) == {
        0: {"id": "toolu_01Paris", "name": "get_weather", "arguments": '{"location": "Paris"}'},
        1: {"id": "toolu_01Tokyo", "name": "get_weather",
            "arguments": '{"location": "Tōkyō", "unit": "celsius"}'},
        2: {"id": "toolu_01Clock", "name": "get_time", "arguments": "{}"},
    }
    # The thinking block opening the answer is reasoning text, then its signature; never a tool call.
    deltas = [c["choices"][0]["delta"] for c in got if c["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "Two cities, two calls."
    assert stream.finish_reason == "tool_calls"
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.cached_tokens, stream.usage.cache_write_tokens) \
        == (1512, 1200, 300)


def test_json_tool_stream_is_content() -> None:
    output, stream = run(fixture("stream_json_tool.txt"))
    got = chunks(output)
    assert reassemble(got) == {}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in got if c["choices"])
    assert text == ('{"elements": [{"location": "San Francisco", "temperature": 58, '
                    '"condition": "sunny"}]}')
    assert stream.finish_reason == "stop"


def test_stream_error_event_raises() -> None:
    stream = AnthropicStream(False)
    with pytest.raises(UpstreamError) as info:
        stream.feed(fixture("stream_error.txt"))
    assert info.value.http_status == 529
    assert info.value.retryable
    assert info.value.message == "Overloaded"
    assert info.value.to_dict()["error"]["type"] == "overloaded_error"


def test_truncated_stream_has_no_done() -> None:
    raw = fixture("stream_text.txt")
    cut = raw[: raw.index(b"event: message_stop")]
    stream = AnthropicStream(True, created=1)
    output = stream.feed(cut) + stream.finish()
    assert b"[DONE]" not in output
    assert not stream.done
    assert stream.finish_reason == "stop"


def test_unterminated_last_event_is_handled_by_finish() -> None:
    raw = fixture("stream_text.txt").rstrip(b"\n")
    output, stream = run(raw)
    assert stream.done and output.endswith(b"data: [DONE]\n\n")


def test_invalid_json_in_stream() -> None:
    with pytest.raises(UpstreamProtocolError):
        AnthropicStream(False).feed(b"event: message_start\ndata: {nope\n\n")


STREAMS = ["stream_text.txt", "stream_tool_use.txt", "stream_parallel_tools.txt", "stream_json_tool.txt"]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(STREAMS), cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=40),
       usage=st.booleans())
def test_random_splits_give_identical_output(name: str, cuts: list[int], usage: bool) -> None:
    raw = fixture(name)
    whole, _ = run(raw, usage=usage)
    pieces = split_at(raw, cuts)
    assert b"".join(pieces) == raw
    assert run(raw, pieces, usage=usage)[0] == whole


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=30))
def test_random_splits_byte_by_byte_arguments(cuts: list[int]) -> None:
    raw = fixture("stream_parallel_tools.txt")
    output, _ = run(raw, split_at(raw, cuts))
    assert reassemble(chunks(output))[1]["arguments"] == '{"location": "Tōkyō", "unit": "celsius"}'


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

ERRORS = orjson.loads(fixture("errors.json"))


@pytest.mark.parametrize(("name", "retryable"), [
    ("invalid_request_error", False), ("authentication_error", False), ("billing_error", False),
    ("permission_error", False), ("not_found_error", False), ("request_too_large", False),
    ("rate_limit_error", True), ("api_error", True), ("overloaded_error", True),
])
def test_error_mapping(name: str, retryable: bool) -> None:
    case = ERRORS[name]
    error = AnthropicAdapter().parse_error(case["status"], orjson.dumps(case["body"]), {})
    assert isinstance(error, UpstreamError)
    assert error.http_status == case["status"]
    assert error.message == case["body"]["error"]["message"]
    assert error.to_dict()["error"]["type"] == name
    assert error.retryable is retryable
    assert error.provider == "anthropic"


def test_rate_limit_retry_after() -> None:
    case = ERRORS["rate_limit_error"]
    error = AnthropicAdapter().parse_error(429, orjson.dumps(case["body"]), {"retry-after": "17"})
    assert isinstance(error, UpstreamError)
    assert error.retry_after == 17.0
    assert error.headers == {"retry-after": "17"}


def test_prompt_too_long_is_context_length() -> None:
    case = ERRORS["prompt_too_long"]
    error = AnthropicAdapter().parse_error(400, orjson.dumps(case["body"]), {})
    assert isinstance(error, ContextLengthExceededError)
    assert error.code == "context_length_exceeded"
    assert error.http_status == 400
    assert error.message == "prompt is too long: 208310 tokens > 200000 maximum"
    body = {"type": "error", "error": {"type": "invalid_request_error", "message":
            "input length and `max_tokens` exceed context limit: 197779 + 64000 > 200000, decrease input "
            "length or `max_tokens` and try again"}}
    assert isinstance(AnthropicAdapter().parse_error(400, orjson.dumps(body), {}), ContextLengthExceededError)


def test_unreadable_error_body() -> None:
    error = AnthropicAdapter().parse_error(502, b"<html>Bad Gateway</html>", {})
    assert isinstance(error, UpstreamError)
    assert error.http_status == 502 and error.retryable
    assert "Bad Gateway" in error.message
    empty = AnthropicAdapter().parse_error(503, b"", {})
    assert empty.http_status == 503 and empty.message == "Anthropic answered HTTP 503."
