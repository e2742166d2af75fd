from __future__ import annotations

from typing import Any

from openai.types.responses import Response

from gateway.dialects.responses import encode_response, parse_request
from gateway.dialects.responses.reasoning import decode_reasoning
from tests.support.canonical import Call, Turn, completion

TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}, "strict": False},
         {"type": "custom", "name": "apply_patch"}]


def encode(turn: Turn, **request: Any) -> dict[str, Any]:
    body = {"model": "alias", "input": "hi", **request}
    out = encode_response(completion(turn), body, response_id="resp_abc", created_at=1700000000)
    Response.model_validate(out, strict=False)  # every field the SDK's type requires, with its type
    return out


def test_echoed_request_fields_and_defaults() -> None:
    out = encode(Turn(text=["Hi"]))
    assert {key: out[key] for key in ("id", "object", "created_at", "status", "model", "error", "incomplete_details",
                                      "instructions", "parallel_tool_calls", "tool_choice", "tools", "store",
                                      "temperature", "top_p", "truncation", "metadata", "previous_response_id",
                                      "max_output_tokens", "text", "reasoning")} == {
        "id": "resp_abc", "object": "response", "created_at": 1700000000, "status": "completed",
        "model": "up-model", "error": None, "incomplete_details": None, "instructions": None,
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "store": True, "temperature": 1.0,
        "top_p": 1.0, "truncation": "disabled", "metadata": {}, "previous_response_id": None,
        "max_output_tokens": None, "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "reasoning": {"effort": None, "summary": None}}
    sent = {"instructions": "Be brief.", "tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False,
            "temperature": 0.3, "top_p": 0.9, "max_output_tokens": 99, "metadata": {"k": "v"}, "store": False,
            "previous_response_id": "resp_prev", "truncation": "auto", "user": "u", "prompt_cache_key": "pk",
            "reasoning": {"effort": "high", "summary": "auto"},
            "text": {"format": {"type": "json_object"}, "verbosity": "low"}}
    echoed = encode(Turn(text=["Hi"]), **sent)
    assert {key: echoed[key] for key in sent} == sent


def test_output_items_in_order_with_usage() -> None:
    turn = Turn(reasoning=["Hmm."], signature="sig", text=["Let me check."],
                calls=[Call("call_1", "lookup", ['{"q":1}']), Call("call_2", "apply_patch", ['{"input":"diff"}'])],
                finish="tool_calls")
    out = encode(turn, tools=TOOLS, include=["reasoning.encrypted_content"], store=False,
                 reasoning={"summary": "detailed"})
    reasoning, message, lookup, patch = out["output"]
    assert reasoning["id"].startswith("rs_") and reasoning["summary"] == [{"type": "summary_text", "text": "Hmm."}]
    assert decode_reasoning(reasoning["encrypted_content"], "x") == (turn.blocks, {})
    assert message == {"id": message["id"], "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": "Let me check.", "annotations": [],
                                    "logprobs": []}]}
    assert lookup == {"id": lookup["id"], "type": "function_call", "name": "lookup", "arguments": '{"q":1}',
                      "call_id": "call_1", "status": "completed"}
    assert patch["type"] == "custom_tool_call" and patch["input"] == "diff" and patch["id"].startswith("ctc_")
    assert len({item["id"] for item in out["output"]}) == 4
    assert out["usage"] == {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
                            "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 42}


def test_encrypted_reasoning_only_when_asked_or_stored() -> None:
    turn = Turn(reasoning=["r"], signature="s", text=["t"])
    assert "encrypted_content" not in encode(turn, store=False)["output"][0]
    assert "encrypted_content" in encode(turn)["output"][0]  # stored: the next turn is rebuilt from it


def test_refusal_and_incomplete() -> None:
    out = encode(Turn(refusal=["I can't help with that."], finish="content_filter"))
    assert out["status"] == "incomplete" and out["incomplete_details"] == {"reason": "content_filter"}
    assert out["output"][0]["status"] == "incomplete"
    assert out["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    assert encode(Turn(text=["cu"], finish="length"))["incomplete_details"] == {"reason": "max_output_tokens"}


def test_the_output_goes_back_as_input() -> None:
    turn = Turn(reasoning=["Plan."], signature="sig", text=["Calling."],
                calls=[Call("call_1", "lookup", ["{}"])], finish="tool_calls")
    out = encode(turn, tools=TOOLS, reasoning={"summary": "auto"})
    again = parse_request({"model": "alias", "tools": TOOLS, "input": [
        *out["output"], {"type": "function_call_output", "call_id": "call_1", "output": "found"}]})
    assert again["messages"][0] == {
        "role": "assistant", "content": "Calling.", "reasoning_content": "Plan.", "thinking_blocks": turn.blocks,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]}


def test_a_gemini_thought_signature_is_kept_in_the_reasoning_item() -> None:
    turn = Turn(calls=[Call("call_1", "lookup", ["{}"], signature="sig-g")], finish="tool_calls")
    out = encode(turn, tools=TOOLS)
    reasoning, call = out["output"]
    assert call["type"] == "function_call" and reasoning["summary"] == []
    assert decode_reasoning(reasoning["encrypted_content"], "x") == ([], {"call_1": "sig-g"})
    again = parse_request({"model": "alias", "tools": TOOLS, "input": [
        *out["output"], {"type": "function_call_output", "call_id": "call_1", "output": "found"}]})
    assert again["messages"][0]["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "sig-g"}}
    assert [item["type"] for item in encode(turn, tools=TOOLS, store=False)["output"]] == ["function_call"]


def test_reasoning_text_is_a_summary_only_when_asked() -> None:
    turn = Turn(reasoning=["private"], signature="sig", text=["Hi"])
    (reasoning, _) = encode(turn)["output"]
    assert reasoning["summary"] == [] and decode_reasoning(reasoning["encrypted_content"], "x") == (turn.blocks, {})
