"""Bedrock Converse adapter: request translation, responses, event streams, errors, SigV4."""

from __future__ import annotations

import base64
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from yarl import URL

from gateway.config import BedrockProvider
from gateway.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    UpstreamError,
    UpstreamProtocolError,
)
from gateway.providers import build_provider
from gateway.providers.bedrock import BedrockAdapter
from gateway.providers.bedrock_stream import BedrockStream
from gateway.providers.credentials import SigV4Credentials
from gateway.schemas import Operation
from tests.support import aws_eventstream as es
from tests.support.bedrock_fake import sigv4_signature

DATA = Path(__file__).parents[2] / "data" / "bedrock"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image-bytes").decode()


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def frames(name: str) -> bytes:
    return es.stream(orjson.loads(fixture(name)))


@pytest.fixture
def adapter() -> BedrockAdapter:
    return BedrockAdapter("us-west-2")


def converse(adapter: BedrockAdapter, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    body = {"model": "claude", **body}
    request = adapter.build_request(Operation.CHAT, body, MODEL, stream=False, **kw)
    return dict(orjson.loads(request.body))


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


HI = {"model": "c", "messages": [user("hi")]}


# -- request: URL, headers ------------------------------------------------------------------------


def test_url_headers_and_signing_facts(adapter: BedrockAdapter) -> None:
    request = adapter.build_request(Operation.CHAT, HI, MODEL, stream=False)
    assert request.url == f"https://bedrock-runtime.us-west-2.amazonaws.com/model/{MODEL}/converse"
    assert request.method == "POST" and request.stream is False
    assert request.headers == {"content-type": "application/json", "accept": "application/json"}
    assert request.signing == {"service": "bedrock", "region": "us-west-2"}


def test_stream_url_and_accept(adapter: BedrockAdapter) -> None:
    request = adapter.build_request(Operation.CHAT, HI, MODEL, stream=True)
    assert request.url.endswith(f"/model/{MODEL}/converse-stream")
    assert request.headers["accept"] == "application/vnd.amazon.eventstream"
    assert request.stream is True


def test_arn_model_id_is_one_encoded_segment(adapter: BedrockAdapter) -> None:
    arn = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
    url = adapter.url(arn, stream=False)
    assert url == ("https://bedrock-runtime.us-west-2.amazonaws.com/model/arn:aws:bedrock:us-west-2:123456789012:"
                   "inference-profile%2Fus.anthropic.claude-3-haiku-20240307-v1:0/converse")
    # The HTTP client (aiohttp/yarl) sends this path byte for byte, so the signature covers the wire path.
    assert URL(url).raw_path == urlsplit(url).path


def test_base_url_override() -> None:
    adapter = BedrockAdapter("eu-central-1", "http://127.0.0.1:9000/")
    assert adapter.url("m", stream=True) == "http://127.0.0.1:9000/model/m/converse-stream"


@pytest.mark.parametrize("operation", [Operation.COMPLETIONS, Operation.EMBEDDINGS])
def test_other_operations_unsupported(adapter: BedrockAdapter, operation: Operation) -> None:
    with pytest.raises(InvalidRequestError):
        adapter.build_request(operation, {"model": "m", "prompt": "x", "input": "x"}, MODEL, stream=False)
    assert adapter.capabilities.operations == frozenset({Operation.CHAT})


# -- request: messages ----------------------------------------------------------------------------


def test_system_and_plain_messages(adapter: BedrockAdapter) -> None:
    sent = converse(adapter, {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        user("Hello"),
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": [{"type": "text", "text": "And?"}, {"type": "text", "text": "More"}]},
    ]})
    assert sent["system"] == [{"text": "You are terse."}, {"text": "Answer in French."}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"text": "Hello"}]},
        {"role": "assistant", "content": [{"text": "Bonjour"}]},
        {"role": "user", "content": [{"text": "And?"}, {"text": "More"}]},
    ]
    assert set(sent) == {"system", "messages"}


def test_consecutive_same_role_messages_merge(adapter: BedrockAdapter) -> None:
    sent = converse(adapter, {"messages": [user("a"), user("b")]})
    assert sent["messages"] == [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]


def test_image_data_url(adapter: BedrockAdapter) -> None:
    sent = converse(adapter, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
    ]}]})
    assert sent["messages"][0]["content"] == [
        {"text": "What is this?"},
        {"image": {"format": "png", "source": {"bytes": PNG}}},
    ]


@pytest.mark.parametrize(("url", "code"), [
    ("https://example.com/cat.png", "unsupported_parameter"),
    (f"data:image/tiff;base64,{PNG}", "invalid_image_format"),
    ("data:image/png;base64,@@not base64@@", "invalid_image_format"),
])
def test_bad_images_are_400(adapter: BedrockAdapter, url: str, code: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        converse(adapter, {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]})
    assert info.value.code == code
    assert info.value.param == "messages[0].content[0].image_url"


def test_tool_round_trip_messages(adapter: BedrockAdapter) -> None:
    sent = converse(adapter, {"messages": [
        user("Top songs on WZPZ and WKRP?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "tooluse_1", "type": "function",
             "function": {"name": "top_song", "arguments": '{"sign":"WZPZ"}'}},
            {"id": "tooluse_2", "type": "function", "function": {"name": "top_song", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": "Elemental Hotel"},
        {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "Rock"}]},
        user("Thanks. Which is better?"),
    ]})
    assert sent["messages"] == [
        {"role": "user", "content": [{"text": "Top songs on WZPZ and WKRP?"}]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song", "input": {"sign": "WZPZ"}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "top_song", "input": {}}},
        ]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "Elemental Hotel"}]}},
            {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "Rock"}]}},
            {"text": "Thanks. Which is better?"},
        ]},
    ]


def test_bad_tool_arguments_are_400(adapter: BedrockAdapter) -> None:
    with pytest.raises(InvalidRequestError) as info:
        converse(adapter, {"messages": [user("x"), {"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{nope"}}]}]})
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


# -- request: parameters and tools ----------------------------------------------------------------


def test_inference_config(adapter: BedrockAdapter) -> None:
    sent = converse(adapter, {"messages": [user("x")], "max_tokens": 100, "temperature": 0.3, "top_p": 0.9,
                              "stop": ["END", "STOP"], "user": "u-1",
                              "stream_options": {"include_usage": True}})
    assert sent["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.3, "topP": 0.9,
                                       "stopSequences": ["END", "STOP"]}
    assert converse(adapter, {"messages": [user("x")], "max_completion_tokens": 7, "max_tokens": 100,
                              "stop": "END"})["inferenceConfig"] == {"maxTokens": 7, "stopSequences": ["END"]}


def test_additional_model_request_fields(adapter: BedrockAdapter) -> None:
    sent = converse(adapter, {"messages": [user("x")], "additional_model_request_fields": {"top_k": 40}})
    assert sent["additionalModelRequestFields"] == {"top_k": 40}


TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "top_song", "description": "Get the most popular song",
                                      "parameters": {"type": "object",
                                                     "properties": {"sign": {"type": "string"}},
                                                     "required": ["sign"]}}},
    {"type": "function", "function": {"name": "now"}},
]


@pytest.mark.parametrize(("choice", "expected"), [
    (None, None),
    ("auto", {"auto": {}}),
    ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "top_song"}}, {"tool": {"name": "top_song"}}),
])
def test_tool_config(adapter: BedrockAdapter, choice: Any, expected: Any) -> None:
    body: dict[str, Any] = {"messages": [user("x")], "tools": TOOLS}
    if choice is not None:
        body["tool_choice"] = choice
    config = converse(adapter, body)["toolConfig"]
    assert config["tools"] == [
        {"toolSpec": {"name": "top_song", "description": "Get the most popular song",
                      "inputSchema": {"json": TOOLS[0]["function"]["parameters"]}}},
        {"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
    ]
    assert config.get("toolChoice") == expected


def test_tool_choice_none(adapter: BedrockAdapter) -> None:
    no_history = {"messages": [user("x")], "tools": TOOLS, "tool_choice": "none"}
    assert "toolConfig" not in converse(adapter, no_history)
    history = [user("x"), {"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "now", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": "noon"}]
    with pytest.raises(InvalidRequestError) as info:
        converse(adapter, {"messages": history, "tools": TOOLS, "tool_choice": "none"})
    assert info.value.param == "tool_choice"
    dropped = converse(adapter, {"messages": history, "tools": TOOLS, "tool_choice": "none"},
                       drop_unsupported_params=True)
    assert dropped["toolConfig"]["toolChoice"] == {"auto": {}}


@pytest.mark.parametrize(("param", "value"), [
    ("n", 2), ("logprobs", True), ("top_logprobs", 2), ("presence_penalty", 0.5), ("frequency_penalty", 0.1),
    ("seed", 7), ("logit_bias", {"50256": -100}), ("parallel_tool_calls", False),
    ("response_format", {"type": "json_object"}),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
])
def test_unsupported_parameters(param: str, value: Any) -> None:
    body = {"messages": [user("x")], param: value}
    with pytest.raises(InvalidRequestError) as info:
        converse(BedrockAdapter(), body)
    assert info.value.param == param and info.value.http_status == 400
    # Dropped per call, or for the whole adapter.
    assert converse(BedrockAdapter(), body, drop_unsupported_params=True)["messages"]
    assert set(converse(BedrockAdapter(drop_unsupported_params=True), body)) == {"messages"}


def test_harmless_values_of_unsupported_parameters_pass(adapter: BedrockAdapter) -> None:
    sent = converse(adapter, {"messages": [user("x")], "n": 1, "logprobs": False, "parallel_tool_calls": True,
                              "response_format": {"type": "text"}})
    assert set(sent) == {"messages"}


def test_body_not_mutated(adapter: BedrockAdapter) -> None:
    body = {"model": "m", "messages": [{"role": "system", "content": "s"}, user("x")], "tools": TOOLS,
            "tool_choice": "auto", "stop": "x"}
    snapshot = orjson.dumps(body)
    adapter.build_request(Operation.CHAT, body, MODEL, stream=True)
    assert orjson.dumps(body) == snapshot


# -- responses ------------------------------------------------------------------------------------


def test_text_response(adapter: BedrockAdapter) -> None:
    parsed = adapter.parse_response(Operation.CHAT, 200, fixture("converse_text.json"), model="claude")
    data = parsed.data
    assert orjson.loads(parsed.body) == data
    assert data["object"] == "chat.completion" and data["model"] == "claude"
    assert data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("Here is a list of 3 pop songs")
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 125, "completion_tokens": 60, "total_tokens": 185,
                             "prompt_tokens_details": {"cached_tokens": 0}}
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (125, 60)


def test_tool_use_response(adapter: BedrockAdapter) -> None:
    data = adapter.parse_response(Operation.CHAT, 200, fixture("converse_tool_use.json")).data
    message = data["choices"][0]["message"]
    assert message["content"] == "I'll look up the most popular song on WZPZ."
    assert message["tool_calls"] == [
        {"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function",
         "function": {"name": "top_song", "arguments": '{"sign":"WZPZ"}'}},
        {"id": "tooluse_2Xv8aWOnS2ynvMqFLxBOQw", "type": "function",
         "function": {"name": "top_song", "arguments": '{"sign":"WKRP"}'}},
    ]
    assert data["choices"][0]["finish_reason"] == "tool_calls"


def test_cached_usage_and_length(adapter: BedrockAdapter) -> None:
    parsed = adapter.parse_response(Operation.CHAT, 200, fixture("converse_cached.json"))
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.cached_tokens, parsed.usage.cache_write_tokens) == (
        2120, 1800, 300)
    assert parsed.data["usage"]["prompt_tokens_details"] == {"cached_tokens": 1800, "cache_write_tokens": 300}
    assert parsed.data["usage"]["total_tokens"] == 2125
    assert parsed.data["choices"][0]["finish_reason"] == "length"


def test_guardrail_is_content_filter(adapter: BedrockAdapter) -> None:
    data = adapter.parse_response(Operation.CHAT, 200, fixture("converse_guardrail.json")).data
    assert data["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"stopReason": "end_turn"}'])
def test_malformed_responses(adapter: BedrockAdapter, body: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        adapter.parse_response(Operation.CHAT, 200, body)


# -- streams --------------------------------------------------------------------------------------


def run(raw: bytes, cuts: Sequence[int] = (), wants_usage: bool = False) -> tuple[bytes, BedrockStream]:
    stream = BedrockStream(wants_usage, model="claude", response_id="chatcmpl-test", created=1700000000)
    out, start = [], 0
    for cut in [*sorted(cuts), len(raw)]:
        out.append(stream.feed(raw[start:cut]))
        start = cut
    out.append(stream.finish())
    return b"".join(out), stream


def chunks(out: bytes) -> list[dict[str, Any]]:
    events = [e for e in out.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    assert events[-1] == b"data: [DONE]"
    return [orjson.loads(e[6:]) for e in events[:-1]]


def test_text_stream() -> None:
    out, stream = run(frames("stream_text.json"), wants_usage=True)
    parsed = chunks(out)
    for chunk in parsed:
        assert (chunk["id"], chunk["object"], chunk["created"], chunk["model"]) == (
            "chatcmpl-test", "chat.completion.chunk", 1700000000, "claude")
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in parsed if c["choices"])
    assert text == "Hello, world — ünïcödé ✓"
    assert parsed[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"] == {"prompt_tokens": 13, "completion_tokens": 7, "total_tokens": 20,
                                   "prompt_tokens_details": {"cached_tokens": 0}}
    assert stream.done and stream.finish_reason == "stop"
    assert stream.usage is not None and stream.usage.completion_tokens == 7


def test_text_stream_without_client_usage() -> None:
    out, stream = run(frames("stream_text.json"))
    assert all(c["choices"] for c in chunks(out))
    assert stream.usage is not None and stream.usage.prompt_tokens == 13


def test_tool_stream() -> None:
    out, stream = run(frames("stream_tools.json"), wants_usage=True)
    parsed = chunks(out)
    calls: dict[int, dict[str, str]] = {}
    for chunk in parsed:
        for delta in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            if "id" in delta:
                assert delta["type"] == "function"
                call["id"] = delta["id"]
                call["name"] = delta["function"]["name"]
            call["arguments"] += delta["function"]["arguments"]
    assert calls == {
        0: {"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song",
            "arguments": '{"sign": "WZPZ", "note": "é\\"q\\""}'},
        1: {"id": "tooluse_2Xv8aWOnS2ynvMqFLxBOQw", "name": "top_song", "arguments": '{"sign": "WKRP"}'},
        2: {"id": "tooluse_noargs", "name": "now", "arguments": "{}"},
    }
    assert parsed[1]["choices"][0]["delta"] == {"content": "Checking both stations."}
    assert stream.finish_reason == "tool_calls"
    assert parsed[-1]["usage"]["prompt_tokens"] == 2375
    assert parsed[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2000}
    assert stream.usage is not None and stream.usage.cached_tokens == 2000


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_stream_split_anywhere_gives_identical_output(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["stream_text.json", "stream_tools.json"]))
    raw = frames(name)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=20))
    wants = data.draw(st.booleans())
    assert run(raw, cuts, wants)[0] == run(raw, [], wants)[0]


def test_stream_byte_by_byte() -> None:
    raw = frames("stream_tools.json")
    assert run(raw, list(range(len(raw))), True)[0] == run(raw, [], True)[0]


def test_message_stop_without_metadata_completes_at_eof() -> None:
    events = orjson.loads(fixture("stream_text.json"))[:-1]
    stream = BedrockStream(True, response_id="x", created=1)
    out = stream.feed(es.stream(events))
    assert not stream.done and not out.endswith(b"data: [DONE]\n\n")
    finished = stream.finish()
    assert (finished, stream.done, stream.usage) == (b"data: [DONE]\n\n", True, None)


def test_cut_stream_is_not_done() -> None:
    events = orjson.loads(fixture("stream_text.json"))[:3]
    out, stream = run(es.stream(events))
    assert not stream.done and b"[DONE]" not in out


def test_metadata_before_message_stop() -> None:
    events = orjson.loads(fixture("stream_text.json"))
    events[-1], events[-2] = events[-2], events[-1]
    out, stream = run(es.stream(events), wants_usage=True)
    parsed = chunks(out)
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop" and parsed[-1]["usage"]["total_tokens"] == 20
    assert stream.done


def test_exception_event_raises_after_partial_output() -> None:
    raw = frames("stream_throttled.json")
    stream = BedrockStream(False)
    first = es.stream(orjson.loads(fixture("stream_throttled.json"))[:2])
    assert b"Partial" in stream.feed(first)
    with pytest.raises(UpstreamError) as info:
        stream.feed(raw[len(first):])
    assert info.value.http_status == 429 and info.value.retryable
    assert info.value.code == "ThrottlingException"
    assert "Too many requests" in info.value.message


@pytest.mark.parametrize(("kind", "message", "status"), [
    ("validationException", "Input is too long for requested model.", None),
    ("validationException", "messages: text content blocks must be non-empty", 400),
    ("modelStreamErrorException", "The model failed mid-stream", 424),
    ("serviceUnavailableException", "Service unavailable", 503),
    ("internalServerException", "Internal error", 500),
    ("modelTimeoutException", "Model timed out", 408),
])
def test_stream_exception_types(kind: str, message: str, status: int | None) -> None:
    with pytest.raises(Exception) as info:
        BedrockStream(False).feed(es.exception(kind, message))
    if status is None:
        assert isinstance(info.value, ContextLengthExceededError)
    else:
        assert isinstance(info.value, UpstreamError) and info.value.http_status == status
    assert info.value.message == message


def test_error_frame() -> None:
    frame = es.encode_frame({":message-type": "error", ":error-code": "InternalFailure",
                             ":error-message": "boom"}, b"")
    with pytest.raises(UpstreamError) as info:
        BedrockStream(False).feed(frame)
    assert info.value.code == "InternalFailure" and info.value.message == "boom"


def test_corrupt_frame_is_protocol_error() -> None:
    raw = bytearray(es.event("messageStart", {"role": "assistant"}))
    raw[-6] ^= 0xFF  # flip a payload byte: the message CRC no longer matches
    with pytest.raises(UpstreamProtocolError):
        BedrockStream(False).feed(bytes(raw))


def test_events_after_done_are_ignored() -> None:
    raw = frames("stream_text.json")
    stream = BedrockStream(False, response_id="x", created=1)
    stream.feed(raw)
    late = es.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "late"}})
    assert stream.feed(late) == b""


# -- HTTP errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("error_type", "status", "message"), [
    ("ThrottlingException", 429, "Too many requests, please wait before trying again."),
    ("ValidationException", 400, "Malformed input request: #: extraneous key [foo] is not permitted"),
    ("AccessDeniedException", 403, "You don't have access to the model with the specified model ID."),
    ("ResourceNotFoundException", 404, "Could not resolve the foundation model from the model identifier."),
    ("ModelTimeoutException", 408, "Model has timed out in processing the request."),
    ("ServiceUnavailableException", 503, "Service is unavailable. Try again later."),
    ("InternalServerException", 500, "The server encountered an internal error."),
    ("ModelNotReadyException", 429, "Model is not ready for inference."),
])
def test_http_errors(adapter: BedrockAdapter, error_type: str, status: int, message: str) -> None:
    headers = {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               "x-amzn-RequestId": "d8c4b7d9-0000"}
    error = adapter.parse_error(status, orjson.dumps({"message": message}), headers)
    assert isinstance(error, UpstreamError)
    assert error.http_status == status and error.message == message and error.code == error_type
    assert error.retryable == (status in (408, 429) or status >= 500)
    assert error.provider == "bedrock"


@pytest.mark.parametrize("message", [
    "Input is too long for requested model.",
    "The model returned the following errors: prompt is too long: 208310 tokens > 200000 maximum",
    "This model's maximum context length is 8192 tokens. Please reduce the length of the prompt",
    "The max tokens requested exceed the model's context window",
])
def test_context_length_errors(adapter: BedrockAdapter, message: str) -> None:
    error = adapter.parse_error(400, orjson.dumps({"message": message}),
                                {"x-amzn-errortype": "ValidationException"})
    assert isinstance(error, ContextLengthExceededError)
    assert error.code == "context_length_exceeded" and error.message == message


def test_error_type_from_body_and_retry_after(adapter: BedrockAdapter) -> None:
    error = adapter.parse_error(429, b'{"__type": "ThrottlingException", "Message": "slow down"}',
                                {"Retry-After": "3"})
    assert isinstance(error, UpstreamError)
    assert error.code == "ThrottlingException" and error.message == "slow down"
    assert error.retry_after == 3.0 and error.headers == {"retry-after": "3"}


def test_error_without_json(adapter: BedrockAdapter) -> None:
    error = adapter.parse_error(502, b"<html>Bad Gateway</html>", {})
    assert error.http_status == 502 and "Bad Gateway" in error.message


# -- SigV4 ----------------------------------------------------------------------------------------

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _independent_signature(method: str, url: str, headers: dict[str, str], body: bytes, signed: list[str],
                           secret: str, region: str, service: str = "bedrock") -> str:
    """The server's side of SigV4, written from the AWS specification (not botocore), over the URL as
    the HTTP client puts it on the wire."""
    wire = URL(url)
    lower = {k.lower(): v for k, v in headers.items()}
    lower.setdefault("host", wire.raw_authority)
    return sigv4_signature(method, wire.raw_path, lower, body, signed, secret, region, service)


def _signed(model: str = MODEL, token: str | None = None) -> tuple[Any, dict[str, str]]:
    adapter = BedrockAdapter("us-west-2")
    request = adapter.build_request(Operation.CHAT, HI, model, stream=True)
    SigV4Credentials(KEY, SECRET, token, region="us-west-2").apply(request)
    auth = request.headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/")
    fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    return request, fields


ARN = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.meta.llama3-1-8b-instruct-v1:0"


@pytest.mark.parametrize("model", [MODEL, ARN])
def test_sigv4_header_verifies_independently(model: str) -> None:
    request, fields = _signed(model)
    assert fields["Credential"].endswith("/us-west-2/bedrock/aws4_request")
    signed = fields["SignedHeaders"].split(";")
    assert {"host", "x-amz-date", "content-type", "accept"} <= set(signed)
    expected = _independent_signature("POST", request.url, request.headers, request.body, signed, SECRET,
                                      "us-west-2")
    assert fields["Signature"] == expected


def test_sigv4_recomputed_with_botocore_and_fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime

    import botocore.auth
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    fixed = datetime.datetime(2024, 5, 1, 12, 30, 0)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: fixed)
    request, fields = _signed()
    assert request.headers["x-amz-date"] == "20240501T123000Z"
    assert fields["Credential"] == f"{KEY}/20240501/us-west-2/bedrock/aws4_request"
    unsigned = {k: v for k, v in request.headers.items() if k not in ("authorization", "x-amz-date")}
    again = AWSRequest(method="POST", url=request.url, data=request.body, headers=unsigned)
    SigV4Auth(Credentials(KEY, SECRET), "bedrock", "us-west-2").add_auth(again)
    assert again.headers["Authorization"] == request.headers["authorization"]
    # A different body must not verify.
    tampered = AWSRequest(method="POST", url=request.url, data=request.body + b" ", headers=unsigned)
    SigV4Auth(Credentials(KEY, SECRET), "bedrock", "us-west-2").add_auth(tampered)
    assert tampered.headers["Authorization"] != request.headers["authorization"]


def test_sigv4_session_token_is_sent_and_signed() -> None:
    request, fields = _signed(token="SESSION-TOKEN")
    assert request.headers["x-amz-security-token"] == "SESSION-TOKEN"
    assert "x-amz-security-token" in fields["SignedHeaders"].split(";")


def test_sigv4_credentials_from_env_and_config() -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_SESSION_TOKEN": "tok"}
    creds = SigV4Credentials.from_config(None, None, None, region="eu-west-1", env=env)
    request = BedrockAdapter("eu-west-1").build_request(
        Operation.CHAT, {"model": "c", "messages": [user("x")]}, "m", stream=False)
    creds.apply(request)
    assert "Credential=AKIAENV/" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == "tok"
    configured = SigV4Credentials.from_config(SecretStr("AKIACFG"), SecretStr("s"), None, region="eu-west-1",
                                              env=env)
    request = BedrockAdapter("eu-west-1").build_request(
        Operation.CHAT, {"model": "c", "messages": [user("x")]}, "m", stream=False)
    configured.apply(request)
    assert "Credential=AKIACFG/" in request.headers["authorization"]
    assert "x-amz-security-token" not in request.headers
    assert "envsecret" not in repr(creds) and "AKIAENV" not in repr(creds)
    with pytest.raises(ValueError, match="AWS credentials missing"):
        SigV4Credentials.from_config(None, None, None, region="eu-west-1", env={})


def test_registry_builds_bedrock_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    cfg = BedrockProvider(type="bedrock", region="ap-south-1", access_key_id=SecretStr("AKIAX"),
                          secret_access_key=SecretStr("sec"))
    provider = build_provider("bedrock", cfg)
    request = provider.adapter.build_request(
        Operation.CHAT, {"model": "c", "messages": [user("x")]}, MODEL, stream=False)
    provider.credentials.apply(request)
    assert request.url.startswith("https://bedrock-runtime.ap-south-1.amazonaws.com/model/")
    assert "/ap-south-1/bedrock/aws4_request" in request.headers["authorization"]
    with pytest.raises(ValueError, match="provider 'b2': AWS credentials missing"):
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
        build_provider("b2", BedrockProvider(type="bedrock"))


def test_missing_botocore_is_a_config_time_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("botocore", "botocore.auth", "botocore.awsrequest", "botocore.credentials"):
        monkeypatch.setitem(sys.modules, name, None)
    cfg = BedrockProvider(type="bedrock", access_key_id=SecretStr("a"), secret_access_key=SecretStr("b"))
    with pytest.raises(ValueError, match=r"needs botocore.*llm-gateway\[bedrock\]"):
        build_provider("bedrock", cfg)


def test_error_in_same_read_as_output_is_raised_on_next_call() -> None:
    events = orjson.loads(fixture("stream_throttled.json"))
    stream = BedrockStream(False, response_id="x", created=1)
    assert stream.feed(es.stream(events[:1]))  # the role chunk went out: the stream is committed
    out = stream.feed(es.stream(events[1:]))  # the delta and the exception arrive in one read
    assert b"Partial" in out
    with pytest.raises(UpstreamError) as info:
        stream.finish()
    assert info.value.http_status == 429


def test_error_before_any_output_raises_at_once() -> None:
    with pytest.raises(UpstreamError):
        BedrockStream(False).feed(frames("stream_throttled.json"))


def test_error_fixtures(adapter: BedrockAdapter) -> None:
    throttled = adapter.parse_error(429, fixture("error_throttling.json"), {"x-amzn-errortype": "ThrottlingException"})
    assert isinstance(throttled, UpstreamError) and throttled.http_status == 429 and throttled.retryable
    too_long = adapter.parse_error(400, fixture("error_validation_context.json"),
                                   {"X-Amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/"})
    assert isinstance(too_long, ContextLengthExceededError) and too_long.http_status == 400
