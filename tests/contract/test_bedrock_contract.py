"""Bedrock end to end: the official openai SDK → the real gateway (uvicorn) → a fake Bedrock runtime
speaking Converse JSON and ConverseStream event-stream frames, checking SigV4 on every request."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.support import aws_eventstream as es
from tests.support.bedrock_fake import (
    BedrockFake,
    aws_error,
    converse_response,
    stream_frames,
    stream_reply,
)
from tests.support.servers import FakeUpstream, GatewayServer, Reply

pytest.importorskip("botocore")

KEY_ID, SECRET, REGION = "AKIAFAKEGATEWAYTEST", "fake/Secret+Key/For/Tests0123456789abcd", "us-west-2"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"

CONFIG = """
auth: {{required: false}}
providers:
  aws:
    type: bedrock
    region: {region}
    base_url: "{url}"
    access_key_id: "{key}"
    secret_access_key: "{secret}"
models:
  claude:
    deployments: [{{provider: aws, model: "{model}"}}]
    retries: 0
"""


@pytest.fixture
def fake() -> BedrockFake:
    return BedrockFake(KEY_ID, SECRET, REGION)


@pytest.fixture
def upstream(fake: BedrockFake) -> Iterator[FakeUpstream]:
    with FakeUpstream(fake) as server:
        yield server


@pytest.fixture
def sdk(upstream: FakeUpstream, make_client: Callable[..., openai.OpenAI]) -> Iterator[openai.OpenAI]:
    config = CONFIG.format(region=REGION, url=upstream.url, key=KEY_ID, secret=SECRET, model=MODEL)
    with GatewayServer(config) as gw:
        yield make_client(gw.url + "/v1")


def sent(upstream: FakeUpstream) -> dict[str, Any]:
    return dict(upstream.requests[-1].json)


def test_plain_chat(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hello"}],
                                             max_tokens=50, temperature=0.2, top_p=0.9)
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL  # Converse answers carry no model: the deployment's is used
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 4)
    request = upstream.requests[-1]
    assert request.path == f"/model/{MODEL}/converse"
    assert request.headers["content-type"] == "application/json"
    assert "x-amz-date" in request.headers
    assert sent(upstream) == {"messages": [{"role": "user", "content": [{"text": "hello"}]}],
                              "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9}}


def test_system_prompt_and_multi_turn(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = sdk.chat.completions.create(model="claude", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a color"},
    ])
    assert completion.choices[0].message.content == "echo: Name a color"
    assert sent(upstream) == {
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": "Hi"}]},
                     {"role": "assistant", "content": [{"text": "Hello!"}]},
                     {"role": "user", "content": [{"text": "Name a color"}]}],
    }


def test_image_input(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    data = base64.b64encode(b"\xff\xd8\xff\xe0fake-jpeg").decode()
    sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}]}])
    assert sent(upstream)["messages"][0]["content"] == [
        {"text": "Describe"}, {"image": {"format": "jpeg", "source": {"bytes": data}}}]


def test_image_link_is_400_without_upstream_call(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert info.value.body["param"] == "messages[0].content[0].image_url"  # type: ignore[index]
    assert upstream.requests == []


TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_tool_round_trip_and_parallel_calls(sdk: openai.OpenAI, upstream: FakeUpstream, fake: BedrockFake) -> None:
    fake.script.append(Reply(json=converse_response([
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_b", "name": "get_weather", "input": {"city": "Oslo"}}},
    ], stop="tool_use")))
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    first = sdk.chat.completions.create(model="claude", messages=messages, tools=TOOLS, tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("tooluse_a", "get_weather", {"city": "Paris"}), ("tooluse_b", "get_weather", {"city": "Oslo"})]
    assert sent(upstream)["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Weather for a city",
        "inputSchema": {"json": TOOLS[0]["function"]["parameters"]}}}], "toolChoice": {"auto": {}}}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": "tooluse_a", "content": "18C"},
                 {"role": "tool", "tool_call_id": "tooluse_b", "content": "3C"}]
    final = sdk.chat.completions.create(model="claude", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "echo: "  # last user turn holds only tool results
    body = sent(upstream)
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_b", "name": "get_weather", "input": {"city": "Oslo"}}}]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "tooluse_a", "content": [{"text": "18C"}]}},
        {"toolResult": {"toolUseId": "tooluse_b", "content": [{"text": "3C"}]}}]}


def test_forced_tool_choice(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], tools=TOOLS,
                                tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert sent(upstream)["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}


def test_json_mode_is_400_unsupported(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "json please"}],
                                    response_format={"type": "json_object"})
    assert info.value.body["param"] == "response_format"  # type: ignore[index]
    assert upstream.requests == []


def test_stop_sequences(sdk: openai.OpenAI, upstream: FakeUpstream, fake: BedrockFake) -> None:
    fake.script.append(Reply(json=converse_response([{"text": "one two"}], stop="stop_sequence")))
    completion = sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "count"}],
                                             stop=["three", "END"])
    assert completion.choices[0].finish_reason == "stop"
    assert sent(upstream)["inferenceConfig"] == {"stopSequences": ["three", "END"]}


def test_streaming_text(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    chunks = list(sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "stream me"}],
                                              stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream me"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert upstream.requests[-1].path == f"/model/{MODEL}/converse-stream"


def test_streaming_usage_on_stream_end(sdk: openai.OpenAI, fake: BedrockFake) -> None:
    fake.script.append(stream_reply(stream_frames(["Hi", " there"], usage={
        "inputTokens": 7, "outputTokens": 2, "totalTokens": 509, "cacheReadInputTokens": 500})))
    chunks = list(sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (507, 2, 509)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 500


def test_streaming_tool_calls_reassemble_byte_exact(sdk: openai.OpenAI, fake: BedrockFake) -> None:
    args_a = ['{"city": "Par', 'is", "note": "caf\\u00e9 \\"x\\""', "}"]
    args_b = ['{"city":', ' "Oslo"}']
    fake.script.append(stream_reply(stream_frames(["Let me check."], [
        ("tooluse_a", "get_weather", args_a), ("tooluse_b", "get_weather", args_b)], stop="tool_use")))
    chunks = list(sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                              tools=TOOLS, stream=True))
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] = delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
    assert calls == {0: {"id": "tooluse_a", "name": "get_weather", "arguments": "".join(args_a)},
                     1: {"id": "tooluse_b", "name": "get_weather", "arguments": "".join(args_b)}}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_exception_before_output_is_an_http_error(sdk: openai.OpenAI, fake: BedrockFake) -> None:
    fake.script.append(stream_reply([es.exception("throttlingException", "Too many requests")]))
    with pytest.raises(openai.RateLimitError) as info:
        list(sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], stream=True))
    assert "Too many requests" in str(info.value)


def test_exception_mid_stream_ends_with_error(sdk: openai.OpenAI, fake: BedrockFake) -> None:
    frames = [*stream_frames(["partial"])[:2], es.exception("modelStreamErrorException", "The model broke")]
    fake.script.append(Reply(chunks=frames, content_type="application/vnd.amazon.eventstream", chunk_delay=0.05))
    received: list[str] = []
    with pytest.raises(openai.APIError, match="The model broke"):
        for chunk in sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                                 stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "partial"


@pytest.mark.parametrize(("status", "error_type", "exception"), [
    (429, "ThrottlingException", openai.RateLimitError),
    (400, "ValidationException", openai.BadRequestError),
    (403, "AccessDeniedException", openai.InternalServerError),  # the gateway's credentials: a 502
    (404, "ResourceNotFoundException", openai.NotFoundError),
    (408, "ModelTimeoutException", openai.APIStatusError),
    (503, "ServiceUnavailableException", openai.InternalServerError),
    (500, "InternalServerException", openai.InternalServerError),
])
def test_error_classes(sdk: openai.OpenAI, fake: BedrockFake, status: int, error_type: str,
                       exception: type[openai.APIStatusError]) -> None:
    fake.script.append(aws_error(status, error_type, f"{error_type} happened"))
    with pytest.raises(exception) as info:
        sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    if status == 403:
        assert (info.value.status_code, info.value.code) == (502, "upstream_auth_error")
        assert f"{error_type} happened" not in info.value.message
    else:
        assert info.value.status_code == status
        assert f"{error_type} happened" in info.value.message


@pytest.mark.parametrize("stream", [False, True])
def test_context_length_error(sdk: openai.OpenAI, fake: BedrockFake, stream: bool) -> None:
    fake.script.append(aws_error(400, "ValidationException", "Input is too long for requested model."))
    with pytest.raises(openai.BadRequestError) as info:
        result = sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x" * 100}],
                                             stream=stream)
        if stream:
            list(result)
    assert info.value.code == "context_length_exceeded"
    assert "too long" in info.value.message
