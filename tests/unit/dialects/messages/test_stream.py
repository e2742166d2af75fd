"""StreamEncoder: canonical OpenAI SSE in, Anthropic's event grammar out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.dialects.messages import StreamEncoder
from gateway.errors import InternalError, RateLimitError
from tests.support.messages import check_grammar, events, sse
from tests.support.servers import FakeUpstream, Reply

REQUEST = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
           "stream": True}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish, **extra}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x", "choices": [choice]}


def usage(prompt: int, completion: int, cached: int = 0, written: int = 0,
          reasoning: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
                           "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                                    "total_tokens": prompt + completion,
                                                    "prompt_tokens_details": {"cached_tokens": cached,
                                                                              "cache_write_tokens": written}}}
    if reasoning is not None:
        out["usage"]["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def encode(chunks: list[dict[str, Any]], *, done: bool = True, **kwargs: Any) -> bytes:
    encoder = StreamEncoder(REQUEST, message_id="msg_test", **kwargs)
    return encoder.feed(sse(chunks, done=done)) + encoder.finish()


def test_a_text_stream_is_anthropics_exact_event_sequence() -> None:
    raw = encode([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
                  chunk(finish="stop"), usage(30, 2, cached=20, written=4)], input_tokens=25)
    assert events(raw) == [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": 0}}}),
        ("ping", {"type": "ping"}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hel"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "lo"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"input_tokens": 6, "cache_creation_input_tokens": 4,
                                     "cache_read_input_tokens": 20, "output_tokens": 2}}),
        ("message_stop", {"type": "message_stop"})]


def test_parallel_tool_calls_each_get_their_own_block() -> None:
    raw = encode([
        chunk({"content": "Two calls."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "time", "arguments": "{}"}}]}),
        chunk(finish="tool_calls")])
    parsed = check_grammar(raw)
    starts = [d["content_block"] for n, d in parsed if n == "content_block_start"]
    assert starts == [{"type": "text", "text": ""},
                      {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}},
                      {"type": "tool_use", "id": "call_b", "name": "time", "input": {}}]
    json_deltas = [(d["index"], d["delta"]["partial_json"]) for n, d in parsed
                   if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert json_deltas == [(1, '{"city":'), (1, '"Paris"}'), (2, "{}")]
    assert parsed[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_calls_all_in_one_chunk_as_some_providers_send_them() -> None:
    calls = [{"index": i, "id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": f'{{"n":{i}}}'}}
             for i in range(3)]
    parsed = check_grammar(encode([chunk({"tool_calls": calls}, finish="tool_calls")]))
    assert [d["index"] for n, d in parsed if n == "content_block_stop"] == [0, 1, 2]


def test_interleaved_tool_arguments_end_the_stream_with_an_error_not_wrong_arguments() -> None:
    parsed = check_grammar(encode([
        chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})]))
    assert parsed[-1][0] == "error" and "interleaved" in parsed[-1][1]["error"]["message"]


def test_reasoning_then_signature_then_text() -> None:
    parsed = check_grammar(encode([
        chunk({"reasoning_content": "Think"}), chunk({"reasoning_content": "ing."}),
        chunk({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "sig=="}]}),
        chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}]}),
        chunk({"content": "Answer"}), chunk(finish="stop"), usage(10, 50, reasoning=40)]))
    deltas = [(d["index"], d["delta"]) for n, d in parsed if n == "content_block_delta"]
    assert deltas == [(0, {"type": "thinking_delta", "thinking": "Think"}),
                      (0, {"type": "thinking_delta", "thinking": "ing."}),
                      (0, {"type": "signature_delta", "signature": "sig=="}),
                      (2, {"type": "text_delta", "text": "Answer"})]
    starts = [d["content_block"]["type"] for n, d in parsed if n == "content_block_start"]
    assert starts == ["thinking", "redacted_thinking", "text"]
    assert parsed[-2][1]["usage"]["output_tokens_details"] == {"thinking_tokens": 40}


def test_reasoning_without_a_signature_closes_when_the_text_begins() -> None:
    parsed = check_grammar(encode([chunk({"reasoning_content": "hmm"}), chunk({"content": "ok"}),
                                   chunk(finish="stop")]))
    assert [n for n, _ in parsed if n.startswith("content_block")] == [
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop"]


@pytest.mark.parametrize(("finish", "extra", "reason", "sequence"), [
    ("stop", {}, "end_turn", None),
    ("length", {}, "max_tokens", None),
    ("content_filter", {}, "refusal", None),
    ("stop", {"stop_reason": "###"}, "stop_sequence", "###"),
    ("stop", {"stop_reason": "not asked"}, "end_turn", None),
])
def test_stop_reasons(finish: str, extra: dict[str, Any], reason: str, sequence: str | None) -> None:
    encoder = StreamEncoder({**REQUEST, "stop_sequences": ["###"]})
    raw = encoder.feed(sse([chunk({"content": "x"}), chunk(finish=finish, **extra)])) + encoder.finish()
    assert check_grammar(raw)[-2][1]["delta"] == {"stop_reason": reason, "stop_sequence": sequence}


def test_a_stream_without_usage_keeps_the_start_estimate() -> None:
    parsed = check_grammar(encode([chunk({"content": "x"}), chunk(finish="stop")], input_tokens=12))
    assert parsed[-2][1]["usage"] == {"output_tokens": 0}


def test_a_canonical_error_event_ends_the_stream_with_anthropics_error_event() -> None:
    encoder = StreamEncoder(REQUEST)
    out = encoder.feed(sse([chunk({"content": "par"})], done=False))
    out += encoder.feed(b'data: {"error": {"message": "Slow down.", "type": "rate_limit_error", "param": null, '
                        b'"code": "rate_limit_exceeded"}}\n\n')
    assert encoder.feed(sse([chunk({"content": "more"})])) == b""
    assert encoder.finish() == b""
    parsed = check_grammar(out)
    assert parsed[-2][0] == "content_block_stop"
    assert parsed[-1] == ("error", {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down."}})


def test_fail_closes_the_open_block_then_sends_the_error() -> None:
    encoder = StreamEncoder(REQUEST)
    out = encoder.feed(sse([chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f",
                                                                                          "arguments": "{"}}]})],
                           done=False))
    out += encoder.fail(InternalError("The gateway failed while streaming the answer."))
    assert check_grammar(out)[-1][1]["error"]["type"] == "api_error"
    assert encoder.fail(RateLimitError("again")) == b""


def test_started_only_once_something_was_produced_and_keepalives_are_not_events() -> None:
    encoder = StreamEncoder(REQUEST)
    assert encoder.feed(b": keep-alive\n\n") == b"" and not encoder.started
    assert encoder.feed(b"data: ") == b"" and not encoder.started
    assert encoder.feed(json.dumps(chunk({"content": "x"})).encode() + b"\n\n").startswith(b"event: message_start")
    assert encoder.started


def test_an_unreadable_event_ends_the_stream_with_an_error() -> None:
    encoder = StreamEncoder(REQUEST)
    parsed = check_grammar(encoder.feed(sse([chunk({"content": "x"})], done=False) + b"data: {not json\n\n"))
    assert parsed[-1][1]["error"]["type"] == "api_error"


def test_a_last_event_without_its_blank_line_still_counts() -> None:
    encoder = StreamEncoder(REQUEST)
    raw = encoder.feed(sse([chunk({"content": "x"})], done=False) + b'data: {"choices": [{"index": 0, "delta": '
                       b'{"content": "y"}, "finish_reason": "length"}]}') + encoder.finish()
    parsed = check_grammar(raw)
    assert [d["delta"]["text"] for n, d in parsed if n == "content_block_delta"] == ["x", "y"]
    assert parsed[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_an_empty_canonical_stream_is_still_a_whole_message() -> None:
    encoder = StreamEncoder(REQUEST)
    assert [n for n, _ in check_grammar(encoder.feed(b"data: [DONE]\n\n") + encoder.finish())] == [
        "message_start", "ping", "message_delta", "message_stop"]


# --- random canonical streams ------------------------------------------------------------------------

piece = st.text(min_size=1, max_size=12)
segment = st.one_of(
    st.tuples(st.just("reason"), st.lists(piece, min_size=1, max_size=3), st.one_of(st.none(), piece)),
    st.tuples(st.just("redacted"), piece),
    st.tuples(st.just("text"), st.lists(piece, min_size=1, max_size=3)),
    st.tuples(st.just("tool"), st.text("abcdef", min_size=1, max_size=6),
              st.dictionaries(st.text("xyz", max_size=3), st.integers() | st.text(max_size=5), max_size=3),
              st.integers(1, 4)),
)


@st.composite
def canonical_stream(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(chunks, what the SDK should accumulate)."""
    chunks: list[dict[str, Any]] = [chunk({"role": "assistant"})]
    expected: list[dict[str, Any]] = []
    tools = 0
    for seg in draw(st.lists(segment, max_size=6)):
        if seg[0] == "reason":
            chunks += [chunk({"reasoning_content": p}) for p in seg[1]]
            if seg[2] is not None:
                chunks.append(chunk({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": seg[2]}]}))
            if expected and expected[-1]["type"] == "thinking" and not expected[-1]["signature"]:
                expected[-1] = {**expected[-1], "thinking": expected[-1]["thinking"] + "".join(seg[1]),
                                "signature": seg[2] or ""}
            else:
                expected.append({"type": "thinking", "thinking": "".join(seg[1]), "signature": seg[2] or ""})
        elif seg[0] == "redacted":
            chunks.append(chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": seg[1]}]}))
            expected.append({"type": "redacted_thinking", "data": seg[1]})
        elif seg[0] == "text":
            chunks += [chunk({"content": p}) for p in seg[1]]
            if expected and expected[-1]["type"] == "text":
                expected[-1] = {"type": "text", "text": expected[-1]["text"] + "".join(seg[1])}
            else:
                expected.append({"type": "text", "text": "".join(seg[1])})
        else:
            _, name, arguments, parts = seg
            text = json.dumps(arguments)
            cuts = sorted(draw(st.lists(st.integers(0, len(text)), min_size=parts - 1, max_size=parts - 1)))
            pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
            call_id = f"call_{tools}"
            chunks.append(chunk({"tool_calls": [{"index": tools, "id": call_id, "type": "function",
                                                 "function": {"name": name, "arguments": pieces[0]}}]}))
            chunks += [chunk({"tool_calls": [{"index": tools, "function": {"arguments": p}}]}) for p in pieces[1:]]
            expected.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
            tools += 1
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    chunks.append(chunk(finish=finish))
    if draw(st.booleans()):
        chunks.append(usage(draw(st.integers(0, 1000)), draw(st.integers(0, 1000))))
    return chunks, {"content": expected}


@pytest.fixture(scope="module")
def sdk() -> Iterator[tuple[list[bytes], anthropic.Anthropic]]:
    """One loopback server for every example: it answers with whatever bytes the test put in the box."""
    box: list[bytes] = [b""]
    with (FakeUpstream(lambda _r: Reply(chunks=[box[0]], content_type="text/event-stream")) as upstream,
          anthropic.Anthropic(base_url=upstream.url, api_key="sk-test", max_retries=0) as client):
        yield box, client


@settings(max_examples=60, deadline=None)
@given(canonical_stream(), st.data())
def test_any_canonical_stream_split_anywhere_reads_in_the_sdk_as_what_was_said(
        sdk: tuple[list[bytes], anthropic.Anthropic], stream: tuple[list[dict[str, Any]], dict[str, Any]],
        data: st.DataObject) -> None:
    chunks, expected = stream
    source = sse(chunks)
    whole = encode(chunks)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(source)), max_size=8)))
    encoder = StreamEncoder(REQUEST, message_id="msg_test")
    pieces = [source[a:b] for a, b in zip([0, *cuts], [*cuts, len(source)], strict=True)]
    assert b"".join(encoder.feed(p) for p in pieces) + encoder.finish() == whole
    check_grammar(whole)
    box, client = sdk
    box[0] = whole
    with client.messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as reader:
        message = reader.get_final_message()
    assert [block.to_dict(exclude_none=True) for block in message.content] == expected["content"]


@settings(max_examples=100)
@given(canonical_stream(), st.booleans())
def test_text_deltas_taken_by_their_shape_give_the_events_of_parsed_ones(
        stream: tuple[list[dict[str, Any]], dict[str, Any]], ascii_only: bool) -> None:
    """The same chunks, each with a field of its own (no two alike, so none is taken as a repeat of an
    earlier one's shape: see gateway.dialects.text_deltas), give the same events."""
    def run(canonical: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        raw = b"".join(b"data: " + json.dumps(c, ensure_ascii=ascii_only).encode() + b"\n\n" for c in canonical)
        encoder = StreamEncoder(REQUEST, message_id="msg_test")
        return events(encoder.feed(raw + b"data: [DONE]\n\n") + encoder.finish())

    chunks, _ = stream
    assert run(chunks) == run([{**c, "x_chunk": n} for n, c in enumerate(chunks)])


@settings(max_examples=100)
@given(canonical_stream())
def test_a_stream_read_an_event_at_a_time_gives_the_same_bytes(
        stream: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    """A live stream's reads are an event each: the text deltas among them go out one by one (see
    TextDeltas.one), as they would in a run."""
    chunks, _ = stream
    source = sse(chunks)
    encoder = StreamEncoder(REQUEST, message_id="msg_test")
    out = b"".join(encoder.feed(event + b"\n\n") for event in source.split(b"\n\n")[:-1])
    assert out + encoder.finish() == encode(chunks)
