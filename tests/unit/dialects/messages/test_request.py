"""parse_request: a Messages body → the canonical request, on what Claude Code really sends and on
each field's edge cases."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.dialects.messages import parse_request, parse_request_lenient
from gateway.dialects.messages.content import TOOL_ERROR_PREFIX
from gateway.errors import InvalidRequestError
from gateway.schemas import Operation, validate_request
from tests.support.messages import claude_code

CLAUDE_CODE_REQUESTS = ["plain", "tool_use_turn", "tool_result_turn", "model_sonnet", "model_haiku"]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **fields}


def fails(request: object, param: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_request(request)
    assert raised.value.param == param
    assert raised.value.message == message
    assert raised.value.http_status == 400


@pytest.mark.parametrize("name", CLAUDE_CODE_REQUESTS)
def test_what_claude_code_sends_becomes_a_valid_canonical_request(name: str) -> None:
    sent = claude_code(name)["body"]
    canonical = parse_request(sent)
    validate_request(Operation.CHAT, canonical)
    assert canonical["model"] == sent["model"] and canonical["stream"] is True
    assert canonical["stream_options"] == {"include_usage": True}
    assert canonical["max_tokens"] == sent["max_tokens"]
    assert canonical["user"] == sent["metadata"]["user_id"]
    assert [t["function"]["name"] for t in canonical["tools"]] == [t["name"] for t in sent["tools"]]
    assert canonical["tools"][0]["function"]["parameters"] == sent["tools"][0]["input_schema"]
    system = canonical["messages"][0]
    assert system["role"] == "system"
    assert [p.get("cache_control") for p in system["content"]] == [b.get("cache_control") for b in sent["system"]]


def test_claude_codes_mid_conversation_system_message_keeps_its_place() -> None:
    canonical = parse_request(claude_code("plain")["body"])
    assert [m["role"] for m in canonical["messages"]] == ["system", "user", "system"]


def test_claude_codes_tool_turn_becomes_tool_calls_and_a_tool_message() -> None:
    sent = claude_code("tool_result_turn")["body"]
    *_, assistant, tool = parse_request(sent)["messages"]
    use = sent["messages"][-2]["content"][1]
    arguments = orjson.dumps(use["input"]).decode()
    assert assistant == {"role": "assistant", "content": "Let me read it.", "tool_calls": [
        {"id": use["id"], "type": "function", "function": {"name": "Read", "arguments": arguments}}]}
    assert tool == {"role": "tool", "tool_call_id": use["id"], "content": "1\thello from notes\n2\t",
                    "cache_control": {"type": "ephemeral"}}


@pytest.mark.parametrize(("thinking", "output_config", "effort"), [
    ({"type": "adaptive"}, {"effort": "high"}, "high"),  # Claude Code's main model
    ({"type": "enabled", "budget_tokens": 31999}, None, "xhigh"),  # Claude Code's haiku
    ({"type": "enabled", "budget_tokens": 1024}, None, "minimal"),
    ({"type": "enabled", "budget_tokens": 2048}, None, "low"),
    ({"type": "enabled", "budget_tokens": 4000}, None, "low"),
    ({"type": "enabled", "budget_tokens": 5000}, None, "medium"),
    ({"type": "enabled", "budget_tokens": 16384}, None, "high"),
    ({"type": "adaptive"}, None, "high"),
    ({"type": "adaptive"}, {"effort": "low"}, "low"),
    ({"type": "adaptive"}, {"effort": "max"}, "xhigh"),
    (None, {"effort": "medium"}, "medium"),
    ({"type": "disabled"}, {"effort": "high"}, "none"),
    (None, None, None),
])
def test_thinking_and_effort_become_reasoning_effort(thinking: Any, output_config: Any, effort: str | None) -> None:
    fields = {k: v for k, v in (("thinking", thinking), ("output_config", output_config)) if v is not None}
    assert parse_request(body(**fields)).get("reasoning_effort") == effort


def test_a_user_turn_of_results_and_text_keeps_both_orders() -> None:
    turn = [{"type": "tool_result", "tool_use_id": "a", "content": "A"},
            {"type": "text", "text": "X"},
            {"type": "tool_result", "tool_use_id": "b", "is_error": True,
             "content": [{"type": "text", "text": "boom"}, {"type": "text", "text": "trace"}]},
            {"type": "text", "text": "Y", "cache_control": {"type": "ephemeral"}},
            {"type": "tool_result", "tool_use_id": "c", "is_error": True}]
    messages = parse_request(body(messages=[{"role": "user", "content": turn}]))["messages"]
    assert messages == [
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": TOOL_ERROR_PREFIX + "boom"},
                                                          {"type": "text", "text": "trace"}]},
        {"role": "tool", "tool_call_id": "c", "content": TOOL_ERROR_PREFIX.rstrip()},
        {"role": "user", "content": [{"type": "text", "text": "X"},
                                     {"type": "text", "text": "Y", "cache_control": {"type": "ephemeral"}}]}]


def test_images_and_documents_become_image_url_file_and_text_parts() -> None:
    turn = [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "document", "title": "spec.pdf", "cache_control": {"type": "ephemeral"},
             "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}]
    (message,) = parse_request(body(messages=[{"role": "user", "content": turn}]))["messages"]
    assert message["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "spec.pdf"},
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "plain words"}]


def test_thinking_blocks_sent_back_become_reasoning_content_and_thinking_blocks() -> None:
    turn = [{"type": "thinking", "thinking": "Let me see.", "signature": "sig1"},
            {"type": "thinking", "thinking": " Unsigned.", "signature": ""},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}}]
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": turn}]
    assistant = parse_request(body(messages=messages))["messages"][1]
    assert assistant["reasoning_content"] == "Let me see. Unsigned."
    assert assistant["thinking_blocks"] == [{"type": "thinking", "thinking": "Let me see.", "signature": "sig1"},
                                            {"type": "redacted_thinking", "data": "opaque"}]
    assert assistant["content"] is None and assistant["tool_calls"][0]["function"]["arguments"] == '{"x":1}'


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, {"tool_choice": "auto"}),
    ({"type": "any"}, {"tool_choice": "required"}),
    ({"type": "none"}, {"tool_choice": "none"}),
    ({"type": "tool", "name": "f"}, {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
    ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
])
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    tools = [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]
    canonical = parse_request(body(tools=tools, tool_choice=choice))
    assert {k: canonical[k] for k in expected} == expected
    assert canonical["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                                                    "description": "d"}}]


def test_tool_choice_without_tools_is_left_out() -> None:
    assert "tool_choice" not in parse_request(body(tool_choice={"type": "any"}))


def test_sampling_stop_and_structured_output() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    canonical = parse_request(body(temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["###"], stream=False,
                                   output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert {k: canonical[k] for k in ("temperature", "top_p", "top_k", "stop", "stream")} == {
        "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop": ["###"], "stream": False}
    assert "stream_options" not in canonical
    assert canonical["response_format"]["json_schema"]["schema"] == schema


@pytest.mark.parametrize(("fields", "param"), [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),
    ({"mcp_servers": [{"type": "url", "url": "https://mcp.example.com", "name": "x"}]}, "mcp_servers"),
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
    ({"messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]}]},
     "messages[0].content[0].source.type"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "messages[0].content[0].source.type"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}]}]},
     "messages[1].content[0].type"),
])
def test_what_the_canonical_form_cannot_carry_is_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    request = body(**fields)
    with pytest.raises(InvalidRequestError) as raised:
        parse_request(request)
    assert raised.value.param == param and "cannot be translated" in raised.value.message
    canonical, error = parse_request_lenient(request)
    assert error is not None and error.param == param
    validate_request(Operation.CHAT, canonical)  # a passthrough deployment can still take the call


@pytest.mark.parametrize(("request_body", "param", "message"), [
    ({"model": "m", "messages": []}, "max_tokens", "max_tokens: Field required"),
    ({"model": "m", "max_tokens": 5}, "messages", "messages: Field required"),
    ({"max_tokens": 5, "messages": []}, "model", "model: Field required"),
    (body(max_tokens=0), "max_tokens", "max_tokens: Input should be greater than or equal to 1"),
    (body(max_tokens="10"), "max_tokens", "max_tokens: Input should be a valid integer"),
    (body(messages=[]), "messages", "messages: List should have at least 1 item after validation, not 0"),
    (body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role",
     "messages.0.role: Input should be 'user' or 'assistant'"),
    (body(messages=[{"role": "user"}]), "messages[0].content", "messages.0.content: Field required"),
    (body(messages=[{"role": "user", "content": 5}]), "messages[0].content",
     "messages.0.content: Input should be a valid list"),
    (body(messages=[{"role": "user", "content": [{"text": "x"}]}]), "messages[0].content[0].type",
     "messages.0.content.0.type: Field required"),
    (body(messages=[{"role": "user", "content": [{"type": "tool_result"}]}]), "messages[0].content[0].tool_use_id",
     "messages.0.content.0.tool_use_id: Field required"),
    (body(temperature=1.5), "temperature", "temperature: Input should be between 0 and 1"),
    (body(thinking={"type": "enabled", "budget_tokens": 100}), "thinking.budget_tokens",
     "thinking.budget_tokens: Input should be greater than or equal to 1024"),
    (body(thinking={"type": "enabled"}), "thinking.budget_tokens", "thinking.budget_tokens: Field required"),
    (body(output_config={"effort": "extreme"}), "output_config.effort",
     "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"),
    (body(tools=[{"name": "f"}]), "tools[0].input_schema", "tools.0.input_schema: Field required"),
    (body(tools={}), "tools", "tools: Input should be a valid list"),
    (body(tool_choice={"type": "sometimes"}), "tool_choice.type",
     "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"),
    (body(stream="yes"), "stream", "stream: Input should be a valid boolean"),
    (body(system=[{"type": "image"}]), "system[0].type", "system.0.type: Input should be 'text'"),
])
def test_bad_input_is_a_400_in_anthropics_wording(request_body: Any, param: str, message: str) -> None:
    fails(request_body, param, message)


def test_tool_input_with_an_integer_past_64_bits_keeps_it() -> None:
    turn = [{"type": "tool_use", "id": "a", "name": "f", "input": {"n": -(2**63) - 1}}]
    (assistant,) = parse_request(body(messages=[{"role": "assistant", "content": turn}]))["messages"]
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"n":-9223372036854775809}'


def test_a_body_that_is_not_an_object_is_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="JSON object"):
        parse_request([1, 2])


# --- any valid Messages body gives a valid canonical request ---------------------------------------

text = st.text(max_size=20)
cache = st.one_of(st.none(), st.just({"type": "ephemeral"}))


def with_cache(block: dict[str, Any], marker: dict[str, Any] | None) -> dict[str, Any]:
    return {**block, "cache_control": marker} if marker else block


user_block = st.one_of(
    st.builds(lambda t, c: with_cache({"type": "text", "text": t}, c), text, cache),
    st.builds(lambda d: {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": d}},
              st.text("abc", min_size=1, max_size=8)),
    st.builds(lambda i, t, e: {"type": "tool_result", "tool_use_id": i, "content": t, "is_error": e},
              st.text("abc", min_size=1, max_size=5), st.one_of(text, st.lists(
                  st.builds(lambda t: {"type": "text", "text": t}, text), max_size=3)), st.booleans()),
)
assistant_block = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, text),
    st.builds(lambda t, s: {"type": "thinking", "thinking": t, "signature": s}, text, text),
    st.builds(lambda d: {"type": "redacted_thinking", "data": d}, text),
    st.builds(lambda i, n, x: {"type": "tool_use", "id": i, "name": n, "input": x},
              st.text("abc", min_size=1, max_size=5), st.text("abc", min_size=1, max_size=5),
              st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
)
turn = st.one_of(
    st.builds(lambda c: {"role": "user", "content": c}, st.one_of(text, st.lists(user_block, max_size=4))),
    st.builds(lambda c: {"role": "assistant", "content": c}, st.one_of(text, st.lists(assistant_block, max_size=4))),
)
messages_body = st.fixed_dictionaries(
    {"model": st.text("abc-", min_size=1, max_size=10), "max_tokens": st.integers(1, 10**6),
     "messages": st.lists(turn, min_size=1, max_size=5)},
    optional={"system": st.one_of(text, st.lists(st.builds(lambda t, c: with_cache({"type": "text", "text": t}, c),
                                                          text, cache), max_size=3)),
              "stream": st.booleans(), "temperature": st.floats(0, 1), "top_k": st.integers(0, 500),
              "stop_sequences": st.lists(text, max_size=4),
              "thinking": st.one_of(st.just({"type": "adaptive"}), st.just({"type": "disabled"}),
                                    st.builds(lambda b: {"type": "enabled", "budget_tokens": b},
                                              st.integers(1024, 10**5))),
              "tool_choice": st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"}]),
              "tools": st.lists(st.builds(lambda n: {"name": n, "input_schema": {"type": "object"}},
                                          st.text("xyz", min_size=1, max_size=4)), max_size=3)})


@settings(max_examples=150, deadline=None)
@given(messages_body)
def test_any_valid_messages_body_gives_a_valid_canonical_request(request: dict[str, Any]) -> None:
    canonical = parse_request(request)
    validate_request(Operation.CHAT, canonical)
    assert canonical["model"] == request["model"]
    if request.get("stream"):
        assert canonical["stream_options"] == {"include_usage": True}
    results = sum(1 for m in request["messages"] if isinstance(m["content"], list)
                  for b in m["content"] if b["type"] == "tool_result")
    assert sum(1 for m in canonical["messages"] if m["role"] == "tool") == results
