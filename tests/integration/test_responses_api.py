"""The OpenAI Responses API through the real app, driven by the official `openai` SDK: translated to
Chat Completions deployments (the mock, an OpenAI-compatible fake with tool calls), passed through to
a deployment that speaks Responses itself, and the conversations the gateway stores (chains across
providers and across replicas on one Redis, scoped to the key that made them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.contract.stores import real_redis_up
from tests.support.openai_fake import openai_echo
from tests.support.sdk_clients import opened
from tests.support.servers import FakeUpstream, GatewayServer, Recorded, Reply, sse_lines

KEY = "sk-gw-responses-0123456789abcdef"
OTHER = "sk-gw-other-0123456789abcdef"

CONFIG = """
{store}
auth:
  keys:
    - {{name: app, key: "{key}"}}
    - {{name: other, key: "{other}"}}
providers:
  oai: {{type: openai, base_url: "{oai}/v1"}}
  native: {{type: openai, base_url: "{native}/v1", responses: true}}
  mock: {{type: mock}}
models:
  gpt: {{deployments: [{{provider: oai, model: gpt-5-mini}}], retries: 0}}
  native: {{deployments: [{{provider: native, model: gpt-5}}], retries: 0}}
  mock: {{deployments: [{{provider: mock, model: echo}}]}}
"""


def native_responses(request: Recorded) -> Reply:
    """A server that speaks the Responses API itself: one text answer, streamed or not."""
    body = request.json
    response = {"id": f"resp_native{len(body.get('input') or '')}", "object": "response", "created_at": 1,
                "status": "completed", "model": body["model"], "error": None, "incomplete_details": None,
                "output": [{"type": "message", "id": "msg_native", "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": "native answer", "annotations": []}]}],
                "usage": {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 2,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13},
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    if not body.get("stream"):
        return Reply(json=response)
    events = [("response.created", {**response, "status": "in_progress", "output": [], "usage": None}),
              ("response.completed", response)]
    raw = [f"event: {name}\ndata: {json.dumps({'type': name, 'sequence_number': i, 'response': r})}\n\n".encode()
           for i, (name, r) in enumerate(events)]
    return Reply(chunks=raw)


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with FakeUpstream(openai_echo) as oai, FakeUpstream(native_responses) as native:
        yield oai, native


def start(upstreams: tuple[FakeUpstream, FakeUpstream], store: str = "") -> GatewayServer:
    oai, native = upstreams
    return GatewayServer(CONFIG.format(store=store, key=KEY, other=OTHER, oai=oai.url, native=native.url))


@pytest.fixture
def gw(upstreams: tuple[FakeUpstream, FakeUpstream]) -> Iterator[GatewayServer]:
    with start(upstreams) as server:
        yield server


def client(gw: GatewayServer, key: str = KEY) -> openai.OpenAI:
    return opened(openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=60))


def test_create_and_stream_on_the_mock(gw: GatewayServer) -> None:
    response = client(gw).responses.create(model="mock", input="hello there", instructions="Be brief.")
    assert response.status == "completed"
    assert "hello there" in response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0
    with client(gw).responses.stream(model="mock", input="stream this") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert "stream this" in final.output_text
    assert final.id.startswith("resp_")


def test_tool_round_trip_translated_to_chat_completions(gw: GatewayServer,
                                                        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    oai, _ = upstreams
    calls = {"index": 0, "id": "call_7", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5-mini"}

    def with_tool(request: Recorded) -> Reply:
        if any(m.get("role") == "tool" for m in request.json["messages"]):
            return openai_echo(request)
        return Reply(chunks=sse_lines([
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [calls]},
                                  "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}]))

    oai.handler = with_tool
    tools: Any = [{"type": "function", "name": "get_weather", "description": "Weather of a city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}}]
    with client(gw).responses.stream(model="gpt", input="Weather in Paris?", tools=tools) as stream:
        first = stream.get_final_response()
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second = client(gw).responses.create(model="gpt", previous_response_id=first.id, tools=tools,
                                         input=[{"type": "function_call_output", "call_id": call.call_id,
                                                 "output": "sunny"}])
    assert second.status == "completed"
    sent = oai.requests[-1].json["messages"]
    assert sent[0]["role"] == "user" and "Weather in Paris?" in json.dumps(sent[0]["content"])
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


def test_stored_responses_are_read_listed_deleted_and_scoped_to_their_key(gw: GatewayServer) -> None:
    first = client(gw).responses.create(model="mock", input="remember me")
    assert client(gw).responses.retrieve(first.id).id == first.id
    items = client(gw).responses.input_items.list(first.id)
    assert [item.type for item in items.data] == ["message"]
    with pytest.raises(openai.NotFoundError):
        client(gw, OTHER).responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as chained:  # another key cannot chain to it either
        client(gw, OTHER).responses.create(model="mock", input="and?", previous_response_id=first.id)
    assert chained.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        client(gw, OTHER).responses.delete(first.id)
    second = client(gw).responses.create(model="mock", input="and then?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    client(gw).responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client(gw).responses.retrieve(first.id)
    unstored = client(gw).responses.create(model="mock", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client(gw).responses.retrieve(unstored.id)


class Answer(BaseModel):
    city: str
    sunny: bool


def test_bad_input_items_queries_and_echoed_fields_are_400s_naming_them(gw: GatewayServer) -> None:
    first = client(gw).responses.create(model="mock", input="list me")
    headers = {"authorization": f"Bearer {KEY}"}
    for query, param in (("order=sideways", "order"), ("limit=abc", "limit"), ("after=zzz", "after")):
        answer = httpx.get(f"{gw.url}/v1/responses/{first.id}/input_items?{query}", headers=headers)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    for field, value in (("store", "yes"), ("metadata", [1]), ("include", 5), ("truncation", "middle")):
        with pytest.raises(openai.BadRequestError) as refused:
            client(gw).responses.create(model="mock", input="x", extra_body={field: value})
        assert refused.value.param == field


def test_parse_with_a_pydantic_model(gw: GatewayServer, upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    oai, _ = upstreams
    seen: list[dict[str, Any]] = []

    def structured(request: Recorded) -> Reply:
        seen.append(request.json)
        body = {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-5-mini",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": json.dumps({"city": "Paris", "sunny": True})}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}
        return Reply(json=body)

    oai.handler = structured
    parsed = client(gw).responses.parse(model="gpt", input="Paris weather as JSON", text_format=Answer)
    assert parsed.output_parsed == Answer(city="Paris", sunny=True)
    assert seen[-1]["response_format"]["type"] == "json_schema"


def test_passthrough_to_a_server_that_speaks_responses(gw: GatewayServer,
                                                       upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    _, native = upstreams
    body = {"model": "native", "input": "hi", "store": False, "include": ["reasoning.encrypted_content"],
            "a_future_field": [1, 2]}
    answer = httpx.post(f"{gw.url}/v1/responses", json=body, headers={"authorization": f"Bearer {KEY}"}, timeout=60)
    assert answer.status_code == 200
    assert answer.json()["id"].startswith("resp_native")
    assert native.requests[-1].json == {**body, "model": "gpt-5"}
    assert native.requests[-1].path == "/v1/responses"
    with client(gw).responses.stream(model="native", input="stream it") as stream:
        final = stream.get_final_response()
    assert final.output_text == "native answer"
    # A chain that starts on the native server continues on a Chat Completions one.
    stored = client(gw).responses.create(model="native", input="first turn")
    follow = client(gw).responses.create(model="gpt", input="second turn", previous_response_id=stored.id)
    assert follow.status == "completed"


@pytest.mark.skipif(not real_redis_up(), reason="no Redis at 127.0.0.1:6379")
def test_a_chain_continues_on_another_replica_at_once(upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    store = f'store: {{redis_url: "redis://127.0.0.1:6379/0", key_prefix: "t-resp-{uuid4().hex[:8]}"}}'
    with start(upstreams, store) as one, start(upstreams, store) as two:
        for n in range(5):
            with client(one).responses.stream(model="mock", input=f"turn {n}") as stream:
                first = stream.get_final_response()
            follow = client(two).responses.create(model="mock", input="next", previous_response_id=first.id)
            assert follow.previous_response_id == first.id
            with pytest.raises(openai.NotFoundError):
                client(two, OTHER).responses.retrieve(first.id)
