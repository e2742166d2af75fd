"""Azure OpenAI end to end: the official openai SDK → the real gateway (uvicorn) → a fake Azure
resource that answers on deployment URLs with Azure's additions (content filter annotations,
prompt-filter-only stream chunks, content-filter errors, retry-after-ms)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.openai_fake import chat_chunks, chat_completion, last_user_text
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, sse_lines

DATA = Path(__file__).parents[1] / "data" / "azure"
API_KEY, API_VERSION, DEPLOYMENT = "azure-resource-key-0123", "2024-10-21", "gpt-4o-prod"

CONFIG = """
auth: {{required: false}}
providers:
  azure-east: {{type: azure, base_url: "{url}", api_key: "{key}", api_version: "{version}"}}
models:
  gpt:
    deployments: [{{provider: azure-east, model: {deployment}}}]
    retries: 0
  emb:
    deployments: [{{provider: azure-east, model: embed-prod}}]
"""

PROMPT_FILTER = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                     "hate": {"filtered": False, "severity": "safe"},
                     "jailbreak": {"filtered": False, "detected": False}}}]}
SAFE = {"hate": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}


class AzureFake:
    """Checks the deployment URL, api-version and api-key; answers the next scripted Reply or
    echoes the last user message with Azure's annotations."""

    def __init__(self) -> None:
        self.script: list[Reply] = []

    def __call__(self, request: Recorded) -> Reply:
        assert request.query == {"api-version": API_VERSION}
        assert request.headers["api-key"] == API_KEY and "authorization" not in request.headers
        assert request.path.startswith("/openai/deployments/")
        if self.script:
            return self.script.pop(0)
        body = request.json
        if request.path.endswith("/embeddings"):
            return Reply(json={"object": "list", "model": "text-embedding-3-small",
                               "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
                               "usage": {"prompt_tokens": 2, "total_tokens": 2}})
        text = "echo: " + last_user_text(body)
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = chat_chunks(text, "gpt-4o-2024-08-06", include_usage=include)
            for chunk in chunks:
                for choice in chunk["choices"]:
                    choice["content_filter_results"] = SAFE
            return Reply(chunks=sse_lines([PROMPT_FILTER, *chunks]))
        answer = chat_completion(text, "gpt-4o-2024-08-06", cached=2)
        answer["choices"][0]["content_filter_results"] = SAFE
        answer["prompt_filter_results"] = PROMPT_FILTER["prompt_filter_results"]
        return Reply(json=answer)


@pytest.fixture
def fake() -> AzureFake:
    return AzureFake()


@pytest.fixture
def upstream(fake: AzureFake) -> Iterator[FakeUpstream]:
    with FakeUpstream(fake) as server:
        yield server


@pytest.fixture
def sdk(upstream: FakeUpstream, make_client: Callable[..., openai.OpenAI]) -> Iterator[openai.OpenAI]:
    config = CONFIG.format(url=upstream.url, key=API_KEY, version=API_VERSION, deployment=DEPLOYMENT)
    with GatewayServer(config) as gw:
        yield make_client(gw.url + "/v1")


def sent(upstream: FakeUpstream) -> dict[str, Any]:
    return dict(upstream.requests[-1].json)


def test_plain_chat(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hello"}],
                                             temperature=0.1)
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 2
    assert upstream.requests[-1].path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    body = sent(upstream)
    assert body["model"] == DEPLOYMENT and body["temperature"] == 0.1
    assert body["messages"] == [{"role": "user", "content": "hello"}]


def test_system_multi_turn_image_stop_json_mode_pass_through(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                     {"type": "image_url", "image_url": {"url": image}}]},
    ]
    sdk.chat.completions.create(model="gpt", messages=messages, stop=["END"],
                                response_format={"type": "json_object"}, seed=3)
    body = sent(upstream)
    assert body["messages"] == messages
    assert body["stop"] == ["END"] and body["response_format"] == {"type": "json_object"} and body["seed"] == 3


TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_tools_round_trip_with_parallel_calls(sdk: openai.OpenAI, upstream: FakeUpstream, fake: AzureFake) -> None:
    answer = chat_completion("", "gpt-4o", finish="tool_calls")
    answer["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}
    fake.script.append(Reply(json=answer))
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    first = sdk.chat.completions.create(model="gpt", messages=messages, tools=TOOLS, parallel_tool_calls=True)
    calls = first.choices[0].message.tool_calls or []
    assert [c.id for c in calls] == ["call_a", "call_b"] and first.choices[0].finish_reason == "tool_calls"
    assert sent(upstream)["tools"] == TOOLS and sent(upstream)["parallel_tool_calls"] is True
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": "call_a", "content": "18C"},
                 {"role": "tool", "tool_call_id": "call_b", "content": "3C"}]
    sdk.chat.completions.create(model="gpt", messages=messages, tools=TOOLS)
    assert sent(upstream)["messages"][1:] == messages[1:]


def test_streaming_drops_prompt_filter_chunk(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "a b c"}],
                                              stream=True))
    assert all(c.choices for c in chunks)  # code reading chunk.choices[0] keeps working
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: a b c"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_streaming_usage_on_stream_end(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    chunks = list(sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "a b"}],
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert all(c.choices for c in chunks[:-1])
    assert sent(upstream)["stream_options"] == {"include_usage": True}


def test_streaming_tool_calls_byte_exact(sdk: openai.OpenAI, fake: AzureFake) -> None:
    base = {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    pieces = ['{"city": "Pa', 'ris", "q": "\\"é\\""', "}"]
    events: list[Any] = [PROMPT_FILTER, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": piece}}]}}]} for piece in pieces]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    fake.script.append(Reply(chunks=sse_lines(events)))
    chunks = list(sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}],
                                              tools=TOOLS, stream=True))
    arguments = "".join(tc.function.arguments or "" for c in chunks for tc in c.choices[0].delta.tool_calls or []
                        if tc.function)
    assert arguments == "".join(pieces)
    assert json.loads(arguments) == {"city": "Paris", "q": '"é"'}


def test_output_content_filter_finish_reason(sdk: openai.OpenAI, fake: AzureFake) -> None:
    fake.script.append(Reply(body=(DATA / "chat_content_filtered.json").read_bytes()))
    completion = sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].finish_reason == "content_filter"


def test_content_filter_error(sdk: openai.OpenAI, fake: AzureFake) -> None:
    fake.script.append(Reply(status=400, body=(DATA / "error_content_filter.json").read_bytes()))
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "bad"}])
    assert info.value.code == "content_filter"
    assert "content filtering" in info.value.message and "violence" in info.value.message


def test_context_length_error(sdk: openai.OpenAI, fake: AzureFake) -> None:
    fake.script.append(Reply(status=400, body=(DATA / "error_context_length.json").read_bytes()))
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "long"}])
    assert info.value.code == "context_length_exceeded"


@pytest.mark.parametrize(("status", "fixture", "headers", "exception"), [
    (429, "error_rate_limit.json", {"retry-after-ms": "1500"}, openai.RateLimitError),
    (401, "error_unauthorized.json", {}, openai.InternalServerError),  # the gateway's key: a 502
    (404, "error_deployment_not_found.json", {}, openai.NotFoundError),
])
def test_error_classes(sdk: openai.OpenAI, fake: AzureFake, status: int, fixture: str, headers: dict[str, str],
                       exception: type[openai.APIStatusError]) -> None:
    fake.script.append(Reply(status=status, body=(DATA / fixture).read_bytes(), headers=headers))
    with pytest.raises(exception) as info:
        sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    message = json.loads((DATA / fixture).read_bytes())["error"]["message"]
    if status == 401:
        assert (info.value.status_code, info.value.code) == (502, "upstream_auth_error")
        assert message not in info.value.message
    else:
        assert info.value.status_code == status
        assert message in info.value.message


def test_server_error(sdk: openai.OpenAI, fake: AzureFake) -> None:
    fake.script.append(Reply(status=500, json={"error": {"code": "InternalServerError", "message": "oops"}}))
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])


def test_embeddings_deployment(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    result = sdk.embeddings.create(model="emb", input="hi")
    assert result.data[0].embedding == [0.5, 0.25]
    assert upstream.requests[-1].path == "/openai/deployments/embed-prod/embeddings"
