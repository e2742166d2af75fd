"""Stored answers replayed in the other form keep content, tool calls, logprobs, finish reasons and
usage; captured streams are stored only when complete."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.cache.convert import completion_to_stream, stream_to_completion
from gateway.cache.entry import Entry, decode, encode, normalise_stream
from gateway.context import Usage
from gateway.providers.sse import sse

USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13,
         "prompt_tokens_details": {"cached_tokens": 2}}


def completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
        "system_fingerprint": "fp",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello there", "refusal": None},
             "logprobs": {"content": [{"token": "Hello", "logprob": -0.1}], "refusal": None}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"P"}'}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
             "logprobs": None, "finish_reason": "tool_calls"},
        ],
        "usage": USAGE,
    }


def test_completion_to_stream_and_back_is_identical() -> None:
    data = completion()
    events, usage_event = completion_to_stream(orjson.dumps(data))
    assert orjson.loads(stream_to_completion(events, usage_event)) == data
    # Chunks are valid OpenAI chunks: tool calls carry their index.
    chunks = [orjson.loads(e[6:]) for e in events.split(b"\n\n") if e]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert [tc["index"] for tc in calls] == [0, 1]
    assert orjson.loads(usage_event[6:])["usage"] == USAGE


def test_a_real_stream_assembles_like_its_completion() -> None:
    """Tool-call arguments split across chunks, content in pieces, usage in its own chunk."""
    base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Let me "}, {"content": "check."},
        {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                         "function": {"name": "lookup", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]},
    ]
    events = [sse(orjson.dumps({**base, "choices": [{"index": 0, "delta": d, "logprobs": None,
                                                     "finish_reason": None}]})) for d in deltas]
    events.append(sse(orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                         "finish_reason": "tool_calls"}]})))
    usage_event = sse(orjson.dumps({**base, "choices": [], "usage": USAGE}))
    out = orjson.loads(stream_to_completion(b"".join(events), usage_event))
    assert out["object"] == "chat.completion" and out["usage"] == USAGE
    message = out["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert message["tool_calls"] == [{"id": "call_1", "type": "function",
                                      "function": {"name": "lookup", "arguments": '{"q":"x"}'}}]
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_text_completions_convert_too() -> None:
    data = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "text": "abc", "logprobs": None, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    events, usage_event = completion_to_stream(orjson.dumps(data))
    assert orjson.loads(stream_to_completion(events, usage_event)) == data


def _stream(usage_in_stream: bool) -> list[bytes]:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    extra = {"usage": None} if usage_in_stream else {}
    out = [sse(orjson.dumps({**base, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
                             **extra})),
           sse(orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], **extra}))]
    if usage_in_stream:
        out.append(sse(orjson.dumps({**base, "choices": [], "usage": USAGE})))
    return [*out, b"data: [DONE]\n\n"]


def test_normalise_stream_strips_usage_and_done_and_keeps_the_usage_chunk_apart() -> None:
    captured = normalise_stream(_stream(True), None)
    assert captured is not None
    assert b"[DONE]" not in captured.events and b"usage" not in captured.events
    assert orjson.loads(captured.usage_event[6:])["usage"] == USAGE
    assert captured.finish_reasons == ("stop",)
    # The same stream sent to a client that did not ask for usage: the usage is rebuilt from ctx.usage.
    plain = normalise_stream(_stream(False), Usage(prompt_tokens=9, completion_tokens=4, cached_tokens=2))
    assert plain is not None and plain.events == captured.events
    assert orjson.loads(plain.usage_event[6:])["usage"] == USAGE


def test_incomplete_or_failed_streams_are_not_stored() -> None:
    assert normalise_stream(_stream(False)[:-1], None) is None
    error = b'data: {"error":{"message":"boom","type":"api_error","param":null,"code":null}}\n\n'
    assert normalise_stream([*_stream(False)[:-1], error], None) is None
    assert normalise_stream([b"data: [DONE]\n\n"], None) is None


def test_entry_round_trip_and_garbage() -> None:
    entry = Entry("sse", 10.0, 20.0, Usage(1, 2, 3), b"events+usage", tail=5)
    decoded = decode(encode(entry))
    assert decoded == entry and decoded.events == b"events+" and decoded.usage_event == b"usage"
    assert decode(b"not an entry") is None
    assert decode(b"GWC1\x00\x00\x00\x02{}") is None
