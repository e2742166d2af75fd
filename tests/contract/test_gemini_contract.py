"""The Gemini provider end to end: the official openai SDK → the real gateway (uvicorn) → a fake
upstream speaking the Gemini API's wire format. Request bodies are asserted where they arrive."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply

APP_KEY = "sk-gw-gemini-0123456789abcdef"
MODEL = "gemini-2.0-flash"

CONFIG = """
auth:
  keys: [{{name: app, key: "${{APP_KEY}}"}}]
providers:
  gem: {{type: gemini, base_url: "{url}", api_key: gemini-upstream-key}}
  vertex: {{type: gemini, base_url: "{url}", vertex_project: proj, vertex_location: us-central1,
           access_token: ya29.vertex-token}}
models:
  gemini:
    deployments: [{{provider: gem, model: {model}}}]
    retries: 0
  on-vertex:
    deployments: [{{provider: vertex, model: {model}}}]
    retries: 0
  embed:
    deployments: [{{provider: gem, model: gemini-embedding-001}}]
    retries: 0
"""


def candidate(parts: list[dict[str, Any]], finish: str | None = "STOP") -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        out["finishReason"] = finish
    return out


def answer(parts: list[dict[str, Any]], finish: str = "STOP", *, prompt: int = 10, output: int = 5,
           cached: int = 0) -> dict[str, Any]:
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output}
    if cached:
        usage["cachedContentTokenCount"] = cached
    return {"candidates": [candidate(parts, finish)], "usageMetadata": usage, "modelVersion": MODEL,
            "responseId": "resp-" + hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:8]}


def sse(events: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events]


def last_text(body: dict[str, Any]) -> str:
    for content in reversed(body["contents"]):
        texts = [p["text"] for p in content["parts"] if "text" in p]
        if content["role"] == "user" and texts:
            return " ".join(texts)
    return ""


def gemini_echo(request: Recorded) -> Reply:
    """Answers like the Gemini API, echoing the last user text; streams it word by word."""
    if request.path.endswith(":batchEmbedContents"):
        items = request.json["requests"]
        return Reply(json={"embeddings": [{"values": [0.5, float(i), -0.5]} for i in range(len(items))]})
    text = "echo: " + last_text(request.json)
    if request.path.endswith(":streamGenerateContent"):
        words = text.split(" ")
        events = [{"candidates": [candidate([{"text": w if i == 0 else " " + w}], None)],
                   "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10}, "modelVersion": MODEL,
                   "responseId": "stream-1"} for i, w in enumerate(words)]
        events[-1]["candidates"][0]["finishReason"] = "STOP"
        events[-1]["usageMetadata"] = {"promptTokenCount": 10, "candidatesTokenCount": len(words),
                                       "totalTokenCount": 10 + len(words), "cachedContentTokenCount": 3}
        return Reply(chunks=sse(events))
    return Reply(json=answer([{"text": text}], cached=4))


def google_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return Reply(status=code, json={"error": error})


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(gemini_echo) as fake:
        yield fake


@pytest.fixture
def gw(upstream: FakeUpstream) -> Iterator[GatewayServer]:
    with GatewayServer(CONFIG.format(url=upstream.url, model=MODEL), env={"APP_KEY": APP_KEY}) as server:
        yield server


@pytest.fixture
def client(gw: GatewayServer, make_client: Callable[..., openai.OpenAI]) -> openai.OpenAI:
    return make_client(gw.url + "/v1", APP_KEY)


def sent(upstream: FakeUpstream) -> dict[str, Any]:
    body: dict[str, Any] = upstream.requests[-1].json
    return body


def test_plain_chat(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "hello"}],
                                                temperature=0.2, max_tokens=64)
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 5)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    request = upstream.requests[-1]
    assert request.path == f"/v1beta/models/{MODEL}:generateContent"
    assert request.headers["x-goog-api-key"] == "gemini-upstream-key"
    assert APP_KEY not in json.dumps(request.headers)
    assert request.json == {"contents": [{"role": "user", "parts": [{"text": "hello"}]}],
                            "generationConfig": {"temperature": 0.2, "maxOutputTokens": 64}}


def test_system_prompt(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="gemini", messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}])
    assert sent(upstream)["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert sent(upstream)["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_multi_turn(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(model="gemini", messages=[
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"}])
    assert completion.choices[0].message.content == "echo: three"
    assert sent(upstream)["contents"] == [{"role": "user", "parts": [{"text": "one"}]},
                                          {"role": "model", "parts": [{"text": "two"}]},
                                          {"role": "user", "parts": [{"text": "three"}]}]


def test_image_input(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo.png"}}]}])
    assert sent(upstream)["contents"][0]["parts"] == [
        {"text": "describe"}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/photo.png"}}]
    count = len(upstream.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/render?id=3"}}]}])
    assert caught.value.body["param"] == "messages[0].content[0].image_url.url"  # type: ignore[index]
    assert len(upstream.requests) == count  # refused before it was sent


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}}}


def calling(*calls: tuple[str, dict[str, Any]]) -> Callable[[Recorded], Reply]:
    """Calls the given functions first; once tool results arrive, answers with them as text."""

    def handler(request: Recorded) -> Reply:
        results = [p["functionResponse"] for c in request.json["contents"] for p in c["parts"]
                   if "functionResponse" in p]
        if results:
            return Reply(json=answer([{"text": json.dumps(results, sort_keys=True)}]))
        return Reply(json=answer([{"functionCall": {"name": n, "args": a}} for n, a in calls]))

    return handler


def test_tools_with_a_round_trip(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = calling(("get_weather", {"city": "Oslo"}))
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(model="gemini", messages=messages, tools=[WEATHER],
                                           tool_choice="required")
    assert sent(upstream)["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Current weather",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}]
    assert sent(upstream)["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": -3}'}]
    second = client.chat.completions.create(model="gemini", messages=messages, tools=[WEATHER])
    assert sent(upstream)["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": -3}}}]}]
    assert second.choices[0].message.content == '[{"name": "get_weather", "response": {"temp_c": -3}}]'


def test_parallel_tool_calls(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = calling(("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Lima"}))
    messages: list[Any] = [{"role": "user", "content": "Oslo and Lima?"}]
    first = client.chat.completions.create(model="gemini", messages=messages, tools=[WEATHER])
    calls = first.choices[0].message.tool_calls
    assert calls is not None and [json.loads(c.function.arguments)["city"] for c in calls] == ["Oslo", "Lima"]
    assert calls[0].id != calls[1].id
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": c.id, "content": f"sunny in {n}"}
                 for c, n in zip(calls, ["Oslo", "Lima"], strict=True)]
    client.chat.completions.create(model="gemini", messages=messages, tools=[WEATHER])
    assert sent(upstream)["contents"][-1] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny in Oslo"}}},
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny in Lima"}}}]}


def test_json_mode(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: Reply(json=answer([{"text": '{"answer": 42}'}]))
    completion = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "json"}],
                                                response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content or "") == {"answer": 42}
    assert sent(upstream)["generationConfig"] == {"responseMimeType": "application/json"}
    client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "json"}],
                                   response_format={"type": "json_schema", "json_schema": {
                                       "name": "a", "strict": True, "schema": {
                                           "type": "object", "properties": {"answer": {"type": "integer"}},
                                           "required": ["answer"], "additionalProperties": False}}})
    assert sent(upstream)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"answer": {"type": "INTEGER"}}, "required": ["answer"]}}


def test_stop_sequences_and_length(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: Reply(json=answer([{"text": "cut"}], "MAX_TOKENS"))
    completion = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}],
                                                stop=["\n\n", "END"], max_completion_tokens=3)
    assert sent(upstream)["generationConfig"] == {"stopSequences": ["\n\n", "END"], "maxOutputTokens": 3}
    assert completion.choices[0].finish_reason == "length"


def test_streaming_text_and_usage(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    chunks = list(client.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "a b c"}], stream=True))
    assert upstream.requests[-1].path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert upstream.requests[-1].query == {"alt": "sse"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: a b c"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    with_usage = list(client.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "a b c"}], stream=True,
        stream_options={"include_usage": True}))
    last = with_usage[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (10, 4, 14)
    assert last.usage.prompt_tokens_details is not None and last.usage.prompt_tokens_details.cached_tokens == 3


def test_streaming_tool_calls(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    args = [{"city": "Zürich", "note": 'say "hi"\n'}, {"city": "Kyiv", "days": [1, 2]}]
    events = [{"candidates": [candidate([{"functionCall": {"name": "get_weather", "args": a}}],
                                        "STOP" if i else None)], "responseId": "s-tools", "modelVersion": MODEL,
               "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 9, "totalTokenCount": 29}}
              for i, a in enumerate(args)]
    upstream.handler = lambda r: Reply(chunks=sse(events))
    stream = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "go"}],
                                            tools=[WEATHER], stream=True, stream_options={"include_usage": True})
    arguments: dict[int, str] = {}
    ids: dict[int, str] = {}
    finish = None
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
                if call.id:
                    ids[call.index] = call.id
    assert arguments == {i: json.dumps(a, separators=(",", ":"), ensure_ascii=False) for i, a in enumerate(args)}
    assert len(set(ids.values())) == 2 and finish == "tool_calls"
    assert usage is not None and usage.completion_tokens == 9


@pytest.mark.parametrize(("reply", "error_class", "status"), [
    (google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."), openai.BadRequestError, 400),
    (google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                  [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]),
     openai.InternalServerError, 502),  # the gateway's own key refused: a 502, Google's text not echoed
    (google_error(403, "PERMISSION_DENIED", "The caller does not have permission"), openai.InternalServerError, 502),
    (google_error(404, "NOT_FOUND", "models/x is not found for API version v1beta"), openai.NotFoundError, 404),
    (google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
     openai.RateLimitError, 429),
    (google_error(500, "INTERNAL", "An internal error has occurred."), openai.InternalServerError, 500),
    (google_error(503, "UNAVAILABLE", "The model is overloaded."), openai.InternalServerError, 503),
])
def test_error_classes(client: openai.OpenAI, upstream: FakeUpstream, reply: Reply,
                       error_class: type[openai.APIStatusError], status: int) -> None:
    upstream.handler = lambda r: reply
    with pytest.raises(error_class) as caught:
        client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == status
    if status == 502:
        assert caught.value.code == "upstream_auth_error"
        assert reply.json["error"]["message"] not in caught.value.message
    else:
        assert reply.json["error"]["message"] in caught.value.message
    with pytest.raises(error_class):  # the same through a stream request
        list(client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}],
                                            stream=True))


def test_context_length_error(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: google_error(
        400, "INVALID_ARGUMENT", "The input token count (2000000) exceeds the maximum number of tokens "
        "allowed (1048576).")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "long"}])
    assert caught.value.code == "context_length_exceeded"


def test_unsupported_parameter_is_a_400(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}], logprobs=True)
    assert caught.value.body["param"] == "logprobs"  # type: ignore[index]
    assert upstream.requests == []


def test_blocked_prompt(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.handler = lambda r: Reply(json={"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                                             "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}})
    completion = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == ""


def test_embeddings(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    result = client.embeddings.create(model="embed", input=["alpha", "beta"], dimensions=3)
    assert [d.embedding for d in result.data] == [[0.5, 0.0, -0.5], [0.5, 1.0, -0.5]]
    request = upstream.requests[-1]
    assert request.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert request.json == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}, "outputDimensionality": 3}
        for t in ("alpha", "beta")]}


def test_vertex_ai(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(model="on-vertex", messages=[{"role": "user", "content": "v"}])
    assert completion.choices[0].message.content == "echo: v"
    request = upstream.requests[-1]
    assert request.path == (f"/v1/projects/proj/locations/us-central1/publishers/google/models/{MODEL}"
                            ":generateContent")
    assert request.headers["authorization"] == "Bearer ya29.vertex-token"
    assert "x-goog-api-key" not in request.headers


def test_error_event_after_first_byte_ends_the_stream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    events = [{"candidates": [candidate([{"text": "partial"}], None)], "responseId": "s-err", "modelVersion": MODEL},
              {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}]
    upstream.handler = lambda r: Reply(chunks=sse(events), chunk_delay=0.2)  # the text goes out first
    stream = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}], stream=True)
    seen = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            seen.extend(c.delta.content for c in chunk.choices)
    assert seen == ["partial"]


def test_stream_cut_without_finish_reason_is_an_error(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    events = [{"candidates": [candidate([{"text": "half"}], None)], "responseId": "s-cut", "modelVersion": MODEL}]
    upstream.handler = lambda r: Reply(chunks=sse(events))
    stream = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
