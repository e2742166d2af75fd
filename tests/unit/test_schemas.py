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
