"""Gemini thought signatures ride through a Messages client in the tool_use id and come back."""

from __future__ import annotations

import base64
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.dialects.messages import StreamEncoder, encode_response, parse_request
from gateway.dialects.messages.signatures import MARK, split_tool_use_id, tool_use_id
from tests.support.messages import check_grammar, sse

ANTHROPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")
SIGNATURE = base64.b64encode(bytes(range(200))).decode()  # the shape Gemini's signatures have
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        "extra_content": {"google": {"thought_signature": SIGNATURE}}}
REQUEST = {"model": "gemini", "max_tokens": 10, "messages": [{"role": "user", "content": "Weather in Paris?"}]}


def next_turn(tool_use: dict[str, Any]) -> dict[str, Any]:
    """What a Messages client sends after running the tool."""
    return {**REQUEST, "messages": [*REQUEST["messages"], {"role": "assistant", "content": [tool_use]},
                                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"],
                                                                  "content": "Sunny"}]}]}


def test_a_non_streamed_answer_carries_the_signature_to_the_next_turn() -> None:
    completion = {"choices": [{"index": 0, "finish_reason": "tool_calls",
                               "message": {"role": "assistant", "content": None, "tool_calls": [CALL]}}]}
    (tool_use,) = encode_response(completion, REQUEST)["content"]
    assert ANTHROPIC_ID.fullmatch(tool_use["id"])
    *_, assistant, tool = parse_request(next_turn(tool_use))["messages"]
    assert assistant["tool_calls"] == [{**CALL, "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert tool["tool_call_id"] == "call_1"


def test_a_streamed_tool_call_carries_it_too() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, **CALL}]}, "finish_reason": "tool_calls"}]}
    encoder = StreamEncoder(REQUEST)
    parsed = check_grammar(encoder.feed(sse([chunk])) + encoder.finish())
    (block,) = [d["content_block"] for n, d in parsed if n == "content_block_start"]
    assert split_tool_use_id(block["id"]) == ("call_1", SIGNATURE)


def test_a_call_without_a_signature_or_with_one_that_is_not_base64_keeps_its_id() -> None:
    assert tool_use_id({"id": "call_1"}, "call_1") == "call_1"
    odd = {"extra_content": {"google": {"thought_signature": "not base64!"}}}
    assert tool_use_id(odd, "call_1") == "call_1"
    assert split_tool_use_id("toolu_01abc") == ("toolu_01abc", None)


@given(st.from_regex(r"[a-zA-Z0-9-]{1,20}", fullmatch=True), st.binary(min_size=1, max_size=300))
def test_any_base64_signature_survives(call_id: str, raw: bytes) -> None:
    signature = base64.b64encode(raw).decode()
    carried = tool_use_id({"extra_content": {"google": {"thought_signature": signature}}}, call_id)
    assert ANTHROPIC_ID.fullmatch(carried) and MARK in carried
    assert split_tool_use_id(carried) == (call_id, signature)
