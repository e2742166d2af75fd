"""encode_response: a canonical ChatCompletion → a Messages `message`."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from gateway.dialects.messages import encode_response

REQUEST = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
           "stop_sequences": ["###"]}


def completion(message: dict[str, Any], finish: str | None = "stop", **choice: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                      "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 30},
                      "completion_tokens_details": {"reasoning_tokens": 12}}}


def encoded(message: dict[str, Any], finish: str | None = "stop", **choice: Any) -> dict[str, Any]:
    body = encode_response(completion(message, finish, **choice), REQUEST)
    anthropic.types.Message.model_validate(body)
    return body


def test_the_whole_message() -> None:
    body = encoded({"content": "Hi.", "reasoning_content": "thought"})
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "claude-sonnet-4-5"
    assert body["content"] == [{"type": "thinking", "thinking": "thought", "signature": ""},
                               {"type": "text", "text": "Hi."}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    assert body["usage"] == {"input_tokens": 10, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 60,
                             "output_tokens": 20, "output_tokens_details": {"thinking_tokens": 12}}


def test_signed_and_redacted_thinking_blocks_come_back_as_they_were() -> None:
    blocks = [{"type": "thinking", "thinking": "a", "signature": "s1"}, {"type": "redacted_thinking", "data": "d"}]
    body = encoded({"content": "x", "reasoning_content": "a", "thinking_blocks": blocks})
    assert body["content"][:2] == blocks


@pytest.mark.parametrize(("arguments", "expected"), [
    ('{"path": "a.txt"}', {"path": "a.txt"}),
    ("", {}),
    ('{"path": "a.t', {}),  # cut by max_tokens
    ("[1, 2]", {}),
])
def test_tool_calls_become_tool_use_with_parsed_input(arguments: str, expected: dict[str, Any]) -> None:
    calls = [{"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": arguments}}]
    body = encoded({"content": None, "tool_calls": calls}, "tool_calls")
    assert body["content"] == [{"type": "tool_use", "id": "call_1", "name": "Read", "input": expected}]
    assert body["stop_reason"] == "tool_use"


@pytest.mark.parametrize(("finish", "choice", "reason", "sequence"), [
    ("length", {}, "max_tokens", None),
    ("content_filter", {}, "refusal", None),
    ("stop", {"stop_reason": "###"}, "stop_sequence", "###"),
    (None, {}, "end_turn", None),
])
def test_stop_reasons(finish: str | None, choice: dict[str, Any], reason: str, sequence: str | None) -> None:
    body = encoded({"content": "x"}, finish, **choice)
    assert (body["stop_reason"], body["stop_sequence"]) == (reason, sequence)


def test_a_refusal_is_the_text() -> None:
    assert encoded({"content": None, "refusal": "I can't help with that."}, "content_filter")["content"] == [
        {"type": "text", "text": "I can't help with that."}]


def test_tool_calls_beside_a_stop_finish_still_stop_for_tool_use() -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert encoded({"content": None, "tool_calls": calls}, "stop")["stop_reason"] == "tool_use"


def test_an_answer_without_usage_reports_zeros() -> None:
    body = encode_response({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}, REQUEST)
    assert body["usage"] == {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                             "output_tokens": 0}
