"""The official `anthropic` SDK reads what the codec produces: a recorded Anthropic answer, turned into
the canonical form and encoded back, accumulates into the same message as the recording itself."""

from __future__ import annotations

import anthropic
import orjson
import pytest

from gateway.dialects.messages import StreamEncoder, encode_error, encode_response
from gateway.errors import (
    AuthenticationError,
    BudgetExceededError,
    GatewayError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamError,
)
from tests.support.messages import (
    canonical_from_anthropic,
    check_grammar,
    recorded_body,
    sdk_create,
    sdk_stream,
    sse,
)

STREAMS = ["anthropic/stream_thinking_then_tool_use", "anthropic/stream_tool_use", "anthropic/stream_thinking",
           "anthropic/stream_redacted_thinking", "anthropic/stream_after_tool_result",
           "anthropic/stream_tool_use_no_args", "anthropic/stream_refusal"]
REQUEST = {"model": "claude-test", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def comparable(message: anthropic.types.Message) -> dict[str, object]:
    usage = message.usage
    # The fields the canonical form carries (a recording's newer extras, such as `caller`, it does not).
    kept = ("type", "text", "thinking", "signature", "data", "id", "name", "input")
    content = [{k: v for k, v in block.to_dict().items() if k in kept} for block in message.content]
    return {"content": content, "stop_reason": message.stop_reason,
            "usage": (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens or 0,
                      usage.cache_creation_input_tokens or 0)}


@pytest.mark.parametrize("name", STREAMS)
def test_a_recorded_stream_survives_the_canonical_round_trip(name: str) -> None:
    recorded = recorded_body(name)
    expected = comparable(sdk_stream(recorded))
    encoder = StreamEncoder(REQUEST, input_tokens=3)
    raw = encoder.feed(sse(canonical_from_anthropic(recorded))) + encoder.finish()
    check_grammar(raw)
    got = sdk_stream(raw)
    assert comparable(got) == expected
    assert got.model == "claude-test" and got.id.startswith("msg_")


def test_thinking_keeps_its_signature_and_tool_arguments_stream_as_input_json_delta() -> None:
    raw = recorded_body("anthropic/stream_thinking_then_tool_use")
    encoder = StreamEncoder(REQUEST)
    out = encoder.feed(sse(canonical_from_anthropic(raw))) + encoder.finish()
    message = sdk_stream(out)
    thinking, *rest = message.content
    assert thinking.type == "thinking" and thinking.signature.startswith("Eo") and "fixed_version" in thinking.thinking
    assert [b.type for b in rest][-1] == "tool_use"
    assert message.stop_reason == "tool_use"
    deltas = [e for e in check_grammar(out) if e[0] == "content_block_delta"]
    assert {d["delta"]["type"] for _, d in deltas} >= {"thinking_delta", "signature_delta"}


def test_an_openai_tool_call_stream_reads_as_tool_use() -> None:
    """A real OpenAI stream (two tool calls, usage at the end) through the encoder."""
    raw = recorded_body("openai/stream_tool_calls")
    encoder = StreamEncoder(REQUEST, input_tokens=10)
    out = encoder.feed(raw) + encoder.finish()
    check_grammar(out)
    message = sdk_stream(out)
    assert [b.type for b in message.content] == ["tool_use"]
    assert message.content[0].name == "get_country" and message.content[0].input == {}
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 398 and message.usage.output_tokens == 10


@pytest.mark.parametrize("name", ["anthropic/thinking", "anthropic/parallel_tool_use", "anthropic/redacted_thinking",
                                  "anthropic/cache_read_and_write", "anthropic/text_system"])
def test_a_recorded_answer_survives_the_canonical_round_trip(name: str) -> None:
    original = orjson.loads(recorded_body(name))
    expected = anthropic.types.Message.model_validate(original)
    canonical = canonical_completion(original)
    body = encode_response(canonical, REQUEST)
    anthropic.types.Message.model_validate(body)
    got = sdk_create(200, orjson.dumps(body))
    assert comparable(got) == comparable(expected)


def canonical_completion(message: dict[str, object]) -> dict[str, object]:
    """A recorded Messages answer in the canonical form (as a translating Anthropic provider gives it)."""
    content = message["content"]
    assert isinstance(content, list)
    text = "".join(b["text"] for b in content if b["type"] == "text")
    blocks = [b for b in content if b["type"] in ("thinking", "redacted_thinking")]
    calls = [{"id": b["id"], "type": "function",
              "function": {"name": b["name"], "arguments": orjson.dumps(b["input"]).decode()}}
             for b in content if b["type"] == "tool_use"]
    usage = message["usage"]
    assert isinstance(usage, dict)
    read, written = usage.get("cache_read_input_tokens") or 0, usage.get("cache_creation_input_tokens") or 0
    finish = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}[str(message["stop_reason"])]
    out_message: dict[str, object] = {"role": "assistant", "content": text or None}
    if calls:
        out_message["tool_calls"] = calls
    if blocks:
        out_message["thinking_blocks"] = blocks
        out_message["reasoning_content"] = "".join(b.get("thinking", "") for b in blocks)
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": out_message, "finish_reason": finish}],
            "usage": {"prompt_tokens": usage["input_tokens"] + read + written,
                      "completion_tokens": usage["output_tokens"],
                      "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written}}}


@pytest.mark.parametrize(("error", "exception"), [
    (AuthenticationError("Invalid API key."), anthropic.AuthenticationError),
    (PermissionDeniedError("This key may not use the model."), anthropic.PermissionDeniedError),
    (ModelNotFoundError("The model 'x' does not exist."), anthropic.NotFoundError),
    (RateLimitError("Too many requests.", headers={"retry-after": "7"}), anthropic.RateLimitError),
    (UpstreamError("Overloaded", status=529), anthropic.OverloadedError),
    (BudgetExceededError("The monthly budget is spent."), anthropic.PaymentRequiredError),
])
def test_each_error_raises_the_sdks_own_exception(error: GatewayError, exception: type[Exception]) -> None:
    status, body, headers = encode_error(error)
    with pytest.raises(exception) as raised:
        sdk_create(status, body, headers)
    assert error.message in str(raised.value)


def test_a_failure_mid_stream_raises_in_the_sdk_with_anthropics_error_type() -> None:
    """As with Anthropic itself, the SDK raises APIStatusError (the HTTP status was 200) whose body
    names the error type."""
    encoder = StreamEncoder(REQUEST)
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
    raw = encoder.feed(sse([chunk], done=False)) + encoder.fail(UpstreamError("Overloaded", status=529))
    check_grammar(raw)
    with pytest.raises(anthropic.APIStatusError, match="Overloaded") as raised:
        sdk_stream(raw)
    assert raised.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
