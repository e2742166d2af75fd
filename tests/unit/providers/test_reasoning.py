"""Reasoning in the canonical form, per provider: `reasoning_effort` mapped to each provider's control,
reasoning text and signatures returned (complete and streamed), and signed blocks accepted back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequestError
from gateway.providers.anthropic import AnthropicAdapter, AnthropicStream
from gateway.providers.bedrock import BedrockAdapter
from gateway.providers.gemini import GeminiAdapter
from gateway.providers.reasoning import budget_within, thinking_blocks
from gateway.schemas import Operation
from tests.support import aws_eventstream as es

CHAT = Operation.CHAT
HELLO = [{"role": "user", "content": "Hello"}]


def sent(adapter: Any, model: str, drop: bool = False, **body: Any) -> dict[str, Any]:
    request = adapter.build_request(CHAT, {"model": "alias", "messages": HELLO, **body}, model, stream=False,
                                    drop_unsupported_params=drop)
    result: dict[str, Any] = orjson.loads(request.body)
    return result


def refused_param(adapter: Any, model: str, **body: Any) -> str | None:
    with pytest.raises(InvalidRequestError) as info:
        sent(adapter, model, **body)
    return info.value.param


def test_budget_stays_under_the_limit_or_names_it() -> None:
    assert budget_within("high", 64000, "max_tokens") == 16384
    assert budget_within("high", 3000, "max_tokens") == 2999
    with pytest.raises(InvalidRequestError) as info:
        budget_within("minimal", 1024, "max_completion_tokens")
    assert info.value.param == "max_completion_tokens"


@pytest.mark.parametrize("blocks", [{"type": "thinking"}, [{"type": "thinking", "thinking": "x"}],
                                    [{"type": "redacted_thinking"}], ["text"]])
def test_malformed_thinking_blocks_are_named(blocks: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        thinking_blocks({"thinking_blocks": blocks}, "messages[1]")
    assert str(info.value.param).startswith("messages[1].thinking_blocks")


# --- Anthropic -------------------------------------------------------------------------------------

CLAUDE = "claude-sonnet-4-5"
FORCED = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def test_anthropic_thinking_defaults_to_the_model_limit() -> None:
    body = sent(AnthropicAdapter(), CLAUDE, reasoning_effort="high")
    assert body["max_tokens"] == 64000 and body["thinking"] == {"type": "enabled", "budget_tokens": 16384}


def test_anthropic_thinking_and_a_forced_tool_do_not_mix() -> None:
    adapter = AnthropicAdapter()
    assert refused_param(adapter, CLAUDE, reasoning_effort="low", tools=FORCED, tool_choice="required") \
        == "tool_choice"
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert refused_param(adapter, CLAUDE, reasoning_effort="low", response_format=schema) == "response_format"
    assert refused_param(adapter, CLAUDE, reasoning_effort="low", top_k=5) == "top_k"
    # Dropping: a forced tool wins over thinking, and sampling settings then stay as asked.
    lenient = sent(adapter, CLAUDE, drop=True, reasoning_effort="low", tools=FORCED, tool_choice="required",
                   top_p=0.5)
    assert "thinking" not in lenient and lenient["top_p"] == 0.5 and lenient["tool_choice"] == {"type": "any"}
    assert "top_p" not in sent(adapter, CLAUDE, drop=True, reasoning_effort="low", top_p=0.5)


def anthropic_stream(*events: dict[str, Any]) -> list[dict[str, Any]]:
    stream = AnthropicStream(False)
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    out = stream.feed(raw) + stream.finish()
    return [orjson.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: {")]


def test_anthropic_stream_sends_reasoning_then_the_signature_when_the_block_ends() -> None:
    chunks = anthropic_stream(
        {"type": "message_start", "message": {"id": "m", "model": CLAUDE, "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hm."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "ab"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "cd"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "zz"}},
        {"type": "content_block_stop", "index": 1},
    )
    assert [c["choices"][0]["delta"] for c in chunks[1:]] == [
        {"reasoning_content": "Hm."},
        {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "abcd"}]},
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "zz"}]},
    ]


# --- Gemini ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "effort", "config"), [
    ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
    ("gemini-2.5-flash", "xhigh", {"thinkingBudget": 24576, "includeThoughts": True}),
    ("gemini-2.5-pro", "xhigh", {"thinkingBudget": 32768, "includeThoughts": True}),
    ("gemini-3-flash-preview", "none", {"thinkingLevel": "minimal"}),
    ("gemini-3-flash-preview", "medium", {"thinkingLevel": "medium", "includeThoughts": True}),
    ("gemini-3-pro-preview", "minimal", {"thinkingLevel": "low", "includeThoughts": True}),
    ("gemini-flash-latest", "low", {"thinkingBudget": 2048, "includeThoughts": True}),
    ("gemini-2.0-flash", "none", None),
])
def test_gemini_thinking_config_by_generation(model: str, effort: str, config: dict[str, Any] | None) -> None:
    generation = sent(GeminiAdapter(), model, reasoning_effort=effort).get("generationConfig") or {}
    assert generation.get("thinkingConfig") == config


def test_gemini_returns_thoughts_as_reasoning_content() -> None:
    answer = {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Thinking it over.", "thought": True}, {"text": "Hello!"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 7}}
    data = GeminiAdapter().parse_response(CHAT, 200, orjson.dumps(answer)).data
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "Hello!",
                                             "reasoning_content": "Thinking it over."}
    assert data["usage"]["completion_tokens"] == 9
    assert data["usage"]["completion_tokens_details"] == {"reasoning_tokens": 7}


# --- Bedrock ---------------------------------------------------------------------------------------


def test_bedrock_reasoning_by_model_family() -> None:
    adapter = BedrockAdapter()
    fields = sent(adapter, "openai.gpt-oss-120b-1:0", reasoning_effort="minimal")["additionalModelRequestFields"]
    assert fields == {"reasoning_effort": "low"}
    assert refused_param(adapter, "meta.llama3-70b-instruct-v1:0", reasoning_effort="low") == "reasoning_effort"
    assert "additionalModelRequestFields" not in sent(adapter, "meta.llama3-70b-instruct-v1:0", drop=True,
                                                      reasoning_effort="low")
    # The client's own extra fields stay beside the thinking settings.
    fields = sent(adapter, "anthropic.claude-sonnet-4-5", reasoning_effort="low",
                  additional_model_request_fields={"top_k": 5})["additionalModelRequestFields"]
    assert fields == {"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert refused_param(adapter, "anthropic.claude-sonnet-4-5", reasoning_effort="low", temperature=0) \
        == "temperature"


def test_bedrock_stream_returns_redacted_reasoning_whole() -> None:
    stream = BedrockAdapter().stream_translator(CHAT, client_wants_usage=False, model="m")
    out = stream.feed(es.event("messageStart", {"role": "assistant"}) + es.event(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "b64"}}}))
    deltas = [orjson.loads(line[6:])["choices"][0]["delta"] for line in out.split(b"\n\n") if line]
    assert deltas[-1] == {"thinking_blocks": [{"type": "redacted_thinking", "data": "b64"}]}
