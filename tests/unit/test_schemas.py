from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequestError
from gateway.schemas import Operation, validate_request

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"messages": CHAT["messages"]}, "model", "missing_required_parameter"),
    ({"model": "m"}, "messages", "missing_required_parameter"),
    ({**CHAT, "messages": []}, "messages", "invalid_value"),
    ({**CHAT, "temperature": 3}, "temperature", "invalid_value"),
    ({**CHAT, "max_tokens": 0}, "max_tokens", "invalid_value"),
    ({**CHAT, "max_tokens": "10"}, "max_tokens", "invalid_value"),
    ({**CHAT, "stream": "yes"}, "stream", "invalid_value"),
    ({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
    ({**CHAT, "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_value"),
    ({**CHAT, "tools": [{"type": "function"}]}, "tools[0].function", "missing_required_parameter"),
    ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ({**CHAT, "stream": False, "stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ({**CHAT, "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]},
     "messages[0].tool_calls[0].function", "missing_required_parameter"),
])
def test_bad_chat_requests_name_the_field(body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate_request(Operation.CHAT, body)
    assert caught.value.param == param
    assert caught.value.code == code
    assert caught.value.http_status == 400


def test_valid_requests_pass_unchanged_with_unknown_fields() -> None:
    body = {**CHAT, "vendor_specific": {"a": 1}, "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "t"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}]}
    assert validate_request(Operation.CHAT, body) is body
    assert validate_request(Operation.COMPLETIONS, {"model": "m", "prompt": [1, 2, 3]})
    assert validate_request(Operation.EMBEDDINGS, {"model": "m", "input": ["a", "b"], "dimensions": 8})


def test_non_object_bodies_are_refused() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate_request(Operation.CHAT, [1, 2])
    assert caught.value.code == "invalid_body"
    with pytest.raises(InvalidRequestError):
        validate_request(Operation.EMBEDDINGS, {"model": "m", "input": []})


def test_five_stop_sequences_are_counted_in_the_message() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate_request(Operation.CHAT, {**CHAT, "stop": ["a", "b", "c", "d", "e"]})
    assert caught.value.message == "Invalid value for 'stop': at most 4 stop sequences are allowed, got 5."


def test_tool_types_the_gateway_does_not_read_are_accepted() -> None:
    tools = [{"type": "custom", "custom": {"name": "code_exec"}}, {"type": "openrouter:web_search"}]
    calls = [{"id": "c1", "type": "custom", "custom": {"name": "code_exec", "input": "print(1)"}}]
    body = {**CHAT, "tools": tools, "messages": [*CHAT["messages"], {"role": "assistant", "tool_calls": calls}],
            "stream": True, "stream_options": {"include_usage": True}}
    assert validate_request(Operation.CHAT, body) is body
