from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.dialects.responses import parse_request
from gateway.dialects.responses.reasoning import encode_reasoning
from gateway.errors import InvalidRequestError
from gateway.schemas import Operation, validate_request
from tests.support.bodies import responses_body

CLIENTS = Path(__file__).resolve().parents[3] / "data" / "clients"


def captured(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((CLIENTS / name).read_text())["body"]
    return body


def test_codex_first_turn() -> None:
    body = captured("codex/exec_plain.json")
    with pytest.raises(InvalidRequestError) as refused:
        parse_request(body)
    assert refused.value.param == "tools[8].type" and "web_search" in refused.value.message
    out = parse_request(body, drop_builtin_tools=True)
    assert [m["role"] for m in out["messages"]] == ["developer", "developer", "user", "user"]
    assert out["messages"][0]["content"].startswith("You are a coding agent running in the Codex CLI")
    assert out["messages"][3]["content"] == [{"type": "text", "text": "Say hello"}]
    names = [tool["function"]["name"] for tool in out["tools"]]
    assert names[:4] == ["exec_command", "write_stdin", "request_user_input", "view_image"]
    assert "multi_agent_v1__spawn_agent" in names  # the namespace group, flattened
    assert out["model"] == "gpt-5-codex" and out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert (out["reasoning_effort"], out["tool_choice"], out["parallel_tool_calls"]) == ("medium", "auto", True)
    assert out["prompt_cache_key"] == body["prompt_cache_key"]
    for dropped in ("include", "store", "client_metadata", "reasoning", "input"):
        assert dropped not in out


def test_codex_tool_round_trip_turn() -> None:
    out = parse_request(captured("codex/exec_tool_output_turn2.json"))
    assistant, tool = out["messages"][-2:]
    assert assistant == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "exec_command", "arguments": '{"cmd": "echo hello-from-tool"}'}}]}
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_1"
    assert "hello-from-tool" in tool["content"]


def test_codex_foreign_reasoning_keeps_its_summary_only() -> None:
    out = parse_request(captured("codex/exec_reasoning_replay_turn2.json"))
    assistant = out["messages"][-2]
    assert assistant["reasoning_content"] == "**Plan** run echo"
    assert "thinking_blocks" not in assistant  # OpenAI's own encrypted content means nothing elsewhere


def test_sdk_requests() -> None:
    created = parse_request(captured("openai-python/responses_create.json"))
    assert created == {"model": "gpt-4.1-mini", "temperature": 0.2, "max_completion_tokens": 64,
                       "messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Say hello"}]}
    streamed = parse_request(captured("openai-python/responses_stream.json"))
    assert streamed["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}}]}]
    assert streamed["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather", "strict": True,
        "parameters": captured("openai-python/responses_stream.json")["tools"][0]["parameters"]}}]
    parsed = parse_request(captured("openai-python/responses_parse.json"))
    schema = captured("openai-python/responses_parse.json")["text"]["format"]["schema"]
    assert parsed["response_format"] == {"type": "json_schema",
                                         "json_schema": {"name": "Answer", "schema": schema, "strict": True}}


def test_history_goes_first_and_gateway_reasoning_comes_back_as_blocks() -> None:
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "redacted_thinking", "data": "x"}]
    history: list[dict[str, Any]] = [
        {"type": "message", "id": "msg_a", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Need a tool."}],
         "encrypted_content": encode_reasoning(blocks)},
        {"type": "message", "id": "msg_b", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call", "id": "fc_2", "call_id": "c2", "name": "time", "arguments": "{}"},
    ]
    body = {"model": "m", "instructions": "Be kind.", "previous_response_id": "resp_x",
            "input": [{"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                      {"type": "function_call_output", "call_id": "c2",
                       "output": [{"type": "input_text", "text": "noon"}]}]}
    out = parse_request(body, history)
    assert out["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": "Checking.", "reasoning_content": "Need a tool.", "thinking_blocks": blocks,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
                        {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "noon"}]},
    ]


def test_custom_tools_files_and_choices() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "developer", "content": [{"type": "input_text", "text": "Rules.",
                                               "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [{"type": "input_file", "filename": "a.pdf", "file_data": "JVBERi0x"}]},
            {"type": "custom_tool_call", "call_id": "p1", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "p1", "output": "Done"},
        ],
        "tools": [{"type": "custom", "name": "apply_patch", "description": "Patch files.",
                   "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}],
        "tool_choice": {"type": "custom", "name": "apply_patch"},
        "text": {"format": {"type": "json_object"}, "verbosity": "low"},
        "top_p": 0.5, "user": "u1", "store": False, "metadata": {"a": "b"}, "truncation": "auto",
    }
    out = parse_request(body)
    developer, user, call, result = out["messages"]
    assert developer == {"role": "developer", "content": [{"type": "text", "text": "Rules.",
                                                          "cache_control": {"type": "ephemeral"}}]}
    assert user["content"] == [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x",
                                                         "filename": "a.pdf"}}]
    assert call["tool_calls"][0]["function"] == {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'}
    assert result == {"role": "tool", "tool_call_id": "p1", "content": "Done"}
    tool = out["tools"][0]["function"]
    assert tool["parameters"]["required"] == ["input"] and "start: /.+/" in tool["description"]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assert out["response_format"] == {"type": "json_object"} and out["verbosity"] == "low"
    assert (out["top_p"], out["user"]) == (0.5, "u1")
    for gone in ("store", "metadata", "truncation"):
        assert gone not in out


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"input": "hi"}, "model", "missing_required_parameter"),
    ({"model": "m"}, "input", "missing_required_parameter"),
    ({"model": "m", "input": 3}, "input", "invalid_value"),
    ({"model": "m", "input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type", "unsupported_input_item"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "input[0].content[0].image_url", "unsupported_value"),
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]},
     "input[0].name", "missing_required_parameter"),
    ({"model": "m", "input": [{"type": "reasoning", "encrypted_content": "gwr1.!!", "summary": []}]},
     "input[0].encrypted_content", "invalid_encrypted_content"),
    ({"model": "m", "input": [{"type": "reasoning", "summary": 1}]}, "input[0].summary", "invalid_value"),
    ({"model": "m", "input": "x", "tools": [{"type": "file_search"}]}, "tools[0].type", "unsupported_tool_type"),
    ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "missing_required_parameter"),
    ({"model": "m", "input": "x", "reasoning": {"effort": "max"}}, "reasoning.effort", "invalid_value"),
    ({"model": "m", "input": "x", "temperature": 3}, "temperature", "invalid_value"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name",
     "missing_required_parameter"),
    ({"model": "m", "input": "x", "background": True}, "background", "unsupported_parameter"),
    ({"model": "m", "input": "x", "store": "yes"}, "store", "invalid_value"),
    ({"model": "m", "input": "x", "include": "reasoning.encrypted_content"}, "include", "invalid_value"),
    ({"model": "m", "input": "x", "metadata": {"k": 1}}, "metadata", "invalid_value"),
    ({"model": "m", "input": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "invalid_value"),
    ({"model": "m", "input": "x", "truncation": "middle"}, "truncation", "invalid_value"),
    ({"model": "m", "input": "x", "stream": True, "stream_options": 3}, "stream_options", "invalid_value"),
    ({"model": "m", "input": "x", "max_tool_calls": 0}, "max_tool_calls", "invalid_value"),
    ({"model": "m", "input": "x", "reasoning": {"summary": "long"}}, "reasoning.summary", "invalid_value"),
    ({"model": "m", "input": "x", "tool_choice": 5}, "tool_choice", "invalid_value"),
    ({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"}, "tools": [
        {"type": "function", "name": "f"}]}, "tool_choice.type", "unsupported_tool_type"),
])
def test_bad_input_names_the_field(body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_request(body)
    assert (raised.value.param, raised.value.code) == (param, code)
    assert raised.value.http_status == 400 and param in raised.value.message


def test_not_an_object() -> None:
    with pytest.raises(InvalidRequestError, match="JSON object"):
        parse_request([1])


@pytest.mark.parametrize("run", ["run", "run_streamed"])
def test_agents_sdk_tool_round_trip(run: str) -> None:
    first = parse_request(captured(f"openai-agents/{run}_turn1.json"))
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert first["tools"][0]["function"]["strict"] is True
    second = parse_request(captured(f"openai-agents/{run}_turn2_tool_output.json"))
    assistant, tool = second["messages"][2:]
    assert assistant["thinking_blocks"] == [{"type": "thinking", "thinking": "Use the tool.", "signature": "sig"}]
    assert assistant["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert tool == {"role": "tool", "tool_call_id": "call_w", "content": "sunny in Paris"}


# --- whatever the translation accepts, the canonical schema accepts ---------------------------------
# parse_request checks each field in the client's terms and does not run the canonical schema again:
# bodies of every shape, right and wrong (tests/support/bodies.py), must either be refused with a 400
# or give a canonical request the schema takes.


@settings(max_examples=1000, deadline=None)
@given(responses_body, st.booleans())
def test_whatever_is_accepted_is_a_valid_canonical_request(body: dict[str, Any], lenient: bool) -> None:
    try:
        canonical = parse_request(body, drop_builtin_tools=lenient)
    except InvalidRequestError as refused:
        assert refused.http_status == 400 and refused.param
        return
    validate_request(Operation.CHAT, canonical)


@pytest.mark.parametrize("name", sorted(str(path.relative_to(CLIENTS)) for path in CLIENTS.glob("*/*.json")
                                        if path.parent.name in ("codex", "openai-agents", "openai-python")))
def test_what_the_clients_send_becomes_a_valid_canonical_request(name: str) -> None:
    validate_request(Operation.CHAT, parse_request(captured(name), drop_builtin_tools=True))
