from __future__ import annotations

import json
from typing import Any

import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent

from gateway.dialects.responses import StreamEncoder, parse_request
from gateway.dialects.responses.reasoning import decode_reasoning
from gateway.errors import RateLimitError, UpstreamTimeoutError
from tests.support.canonical import Call, Turn, chunks, events, sse
from tests.unit.dialects.responses.grammar import check_stream

TOOLS = [
    {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    {"type": "custom", "name": "apply_patch", "description": "Apply a patch."},
    {"type": "namespace", "name": "agents", "description": "Sub-agents.",
     "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}]},
]
# The SDK's own event types, validated strictly (its stream parser only constructs them).
SDK_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
REQUEST: dict[str, Any] = {"model": "alias", "input": "hi", "stream": True, "tools": TOOLS,
                           "include": ["reasoning.encrypted_content"], "store": False,
                           "reasoning": {"effort": "high", "summary": "auto"}}


def encode(turn: Turn, request: dict[str, Any] = REQUEST, *, done: bool = True) -> list[dict[str, Any]]:
    encoder = StreamEncoder(request, response_id="resp_t1", created_at=1700000000)
    out = encoder.feed(sse(chunks(turn), done=done)) + encoder.finish()
    stream = events(out)
    assert stream[-1]["response"] == encoder.final_response()
    return stream


def test_a_text_answer_is_one_message_item() -> None:
    stream = encode(Turn(text=["Hel", "lo"]))
    assert [e["type"] for e in stream] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    final = check_stream(stream)
    assert final["status"] == "completed" and final["model"] == "up-model"
    assert final["output"] == [{"id": "msg_t1001", "type": "message", "status": "completed", "role": "assistant",
                                "content": [{"type": "output_text", "text": "Hello", "annotations": [],
                                             "logprobs": []}]}]
    assert final["usage"] == {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10,
                                                                            "cache_write_tokens": 5},
                              "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 4},
                              "total_tokens": 42}


def test_reasoning_then_calls_round_trip_their_blocks() -> None:
    turn = Turn(reasoning=["Let me ", "look."], signature="sig-1", redacted="opaque",
                calls=[Call("call_a", "get_weather", ['{"ci', 'ty":"Paris"}']),
                       Call("call_b", "apply_patch", ['{"input":"*** Begin Patch"}']),
                       Call("call_c", "agents__spawn", ["{}"])],
                finish="tool_calls")
    final = check_stream(encode(turn))
    reasoning, weather, patch, spawn = final["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me look."}]
    assert decode_reasoning(reasoning["encrypted_content"], "x") == (turn.blocks, {})
    assert (weather["type"], weather["call_id"], weather["arguments"]) == ("function_call", "call_a",
                                                                           '{"city":"Paris"}')
    assert (patch["type"], patch["name"], patch["input"]) == ("custom_tool_call", "apply_patch", "*** Begin Patch")
    assert (spawn["type"], spawn["namespace"], spawn["name"]) == ("function_call", "agents", "spawn")
    # The client sends the output back: the provider gets the same calls and the signed blocks.
    result = {"type": "function_call_output", "call_id": "call_a", "output": "sunny"}
    again = parse_request({**REQUEST, "input": [*final["output"], result]})
    assistant = again["messages"][0]
    assert assistant["thinking_blocks"] == turn.blocks
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["get_weather", "apply_patch", "agents__spawn"]
    assert assistant["tool_calls"][1]["function"]["arguments"] == '{"input":"*** Begin Patch"}'


def test_encrypted_content_is_left_out_unless_asked_or_stored() -> None:
    turn = Turn(reasoning=["x"], signature="s", text=["ok"])
    unasked = check_stream(encode(turn, {**REQUEST, "include": []}))
    assert "encrypted_content" not in unasked["output"][0]
    stored = check_stream(encode(turn, {**REQUEST, "include": [], "store": True}))
    assert decode_reasoning(stored["output"][0]["encrypted_content"], "x") == (turn.blocks, {})


def test_length_and_content_filter_end_incomplete() -> None:
    stream = encode(Turn(text=["cut"], finish="length"))
    final = check_stream(stream)
    assert stream[-1]["type"] == "response.incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"
    final = check_stream(encode(Turn(refusal=["no"], finish="content_filter")))
    assert final["incomplete_details"] == {"reason": "content_filter"}
    assert final["output"][0]["content"] == [{"type": "refusal", "refusal": "no"}]


def test_a_canonical_error_event_ends_with_response_failed() -> None:
    encoder = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    out = encoder.feed(sse(chunks(Turn(text=["par"]))[:2], done=False))
    assert encoder.started
    out += encoder.feed(b'data: {"error": {"message": "slow down", "type": "rate_limit_error", "code": null}}\n\n')
    out += encoder.feed(sse(chunks(Turn(text=["more"]))[1:]))  # ignored after the end
    out += encoder.finish()
    stream = events(out)
    final = check_stream(stream)
    assert stream[-1]["type"] == "response.failed"
    assert final["status"] == "failed"
    assert final["error"] == {"code": "rate_limit_exceeded", "message": "slow down"}
    assert final["output"][0]["status"] == "incomplete"


def test_fail_closes_what_is_open() -> None:
    encoder = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    out = encoder.feed(sse(chunks(Turn(calls=[Call("c1", "get_weather", ['{"a"'])]))[:3], done=False))
    out += encoder.fail(UpstreamTimeoutError("The model stopped answering."))
    assert encoder.fail(RateLimitError("again")) == b"" and encoder.finish() == b""
    final = check_stream(events(out))
    assert final["error"] == {"code": "server_error", "message": "The model stopped answering."}
    assert final["output"][0]["arguments"] == '{"a"'


def test_a_stream_with_no_chunks_still_ends_properly() -> None:
    encoder = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    assert encoder.feed(b": keep-alive\n\n") == b"" and not encoder.started
    final = check_stream(events(encoder.finish()))
    assert final["output"] == [] and final["status"] == "completed"


@st.composite
def turns(draw: st.DrawFn) -> Turn:
    text = st.lists(st.text(min_size=1, max_size=8), max_size=4)
    reasoning = draw(text)
    names = st.sampled_from(["get_weather", "apply_patch", "agents__spawn"])
    calls = draw(st.lists(st.builds(Call, st.uuids().map(str), names, st.lists(st.text(max_size=6), max_size=3)),
                          max_size=3))
    return Turn(reasoning=reasoning, signature=draw(st.none() | st.just("sig")) if reasoning else None,
                redacted=draw(st.none() | st.text(min_size=1, max_size=5)), text=draw(text), refusal=draw(text),
                calls=calls, finish=draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"])))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(turns())
def test_any_canonical_turn_gives_a_grammatical_stream(turn: Turn) -> None:
    stream = encode(turn)
    for event in stream:
        SDK_EVENT.validate_python(event)
    final = check_stream(stream)
    texts = [part["text"] for item in final["output"] if item["type"] == "message"
             for part in item["content"] if part["type"] == "output_text"]
    assert "".join(texts) == "".join(turn.text)
    calls = [item for item in final["output"] if item["type"] in ("function_call", "custom_tool_call")]
    assert [item["call_id"] for item in calls] == [call.call_id for call in turn.calls]


@settings(max_examples=100)
@given(turns(), st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_of_the_canonical_stream_gives_the_same_bytes(turn: Turn, cuts: list[int]) -> None:
    raw = sse(chunks(turn))
    whole = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    expected = whole.feed(raw) + whole.finish()
    pieces = sorted({cut % (len(raw) + 1) for cut in cuts})
    split = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    out, start = b"", 0
    for cut in [*pieces, len(raw)]:
        out += split.feed(raw[start:cut])
        start = cut
    assert out + split.finish() == expected


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(turns())
def test_a_stream_read_an_event_at_a_time_gives_the_same_bytes(turn: Turn) -> None:
    """A live stream's reads are an event each: the text deltas among them go out one by one (see
    TextDeltas.one), as they would in a run."""
    raw = sse(chunks(turn))
    whole = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    expected = whole.feed(raw) + whole.finish()
    live = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    out = b"".join(live.feed(event + b"\n\n") for event in raw.split(b"\n\n")[:-1])
    assert out + live.finish() == expected


def test_the_event_line_and_sequence_numbers_frame_every_event() -> None:
    encoder = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    out = encoder.feed(sse(chunks(Turn(text=["a"])))) + encoder.finish()
    for block in out.split(b"\n\n")[:-1]:
        head, data = block.split(b"\n")
        event = json.loads(data.removeprefix(b"data: "))
        assert head == b"event: " + event["type"].encode()


def _delta(choice: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
            "choices": [{"index": 0, **choice}]}


@st.composite
def interleaved(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[int, str], str]:
    """Canonical chunks in any order the extensions allow: reasoning, signatures, text, refusals and
    tool call deltas interleaved (argument pieces of several calls mixed). Returns the chunks, each
    call's whole arguments by index, and the whole text."""
    out: list[dict[str, Any]] = []
    arguments: dict[int, str] = {}
    text = ""
    piece = st.text(min_size=1, max_size=5)
    for kind in draw(st.lists(st.sampled_from(["reason", "sign", "redact", "text", "refuse", "call", "args"]),
                              max_size=25)):
        if kind == "reason":
            out.append(_delta({"delta": {"reasoning_content": draw(piece)}}))
        elif kind == "sign":
            out.append(_delta({"delta": {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "s"}]}}))
        elif kind == "redact":
            out.append(_delta({"delta": {"thinking_blocks": [{"type": "redacted_thinking", "data": draw(piece)}]}}))
        elif kind == "text":
            chunk = draw(piece)
            text += chunk
            out.append(_delta({"delta": {"content": chunk}}))
        elif kind == "refuse":
            out.append(_delta({"delta": {"refusal": draw(piece)}}))
        elif kind == "call" or not arguments:
            index = len(arguments)
            arguments[index] = ""
            name = draw(st.sampled_from(["get_weather", "apply_patch", "agents__spawn"]))
            out.append(_delta({"delta": {"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function",
                                                         "function": {"name": name, "arguments": ""}}]}}))
        else:
            index = draw(st.sampled_from(sorted(arguments)))
            chunk = draw(piece)
            arguments[index] += chunk
            out.append(_delta({"delta": {"tool_calls": [{"index": index, "function": {"arguments": chunk}}]}}))
    out.append(_delta({"delta": {}, "finish_reason": draw(st.sampled_from(["stop", "tool_calls", "length"]))}))
    return out, arguments, text


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(interleaved())
def test_interleaved_canonical_deltas_give_a_grammatical_stream(case: tuple[list[dict[str, Any]], dict[int, str],
                                                                            str]) -> None:
    canonical, arguments, text = case
    encoder = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    stream = events(encoder.feed(sse(canonical)) + encoder.finish())
    for event in stream:
        SDK_EVENT.validate_python(event)
    final = check_stream(stream)
    texts = [part["text"] for item in final["output"] if item["type"] == "message"
             for part in item["content"] if part["type"] == "output_text"]
    assert "".join(texts) == text
    calls = {item["call_id"]: item for item in final["output"] if item["type"] in ("function_call", "custom_tool_call")}
    for index, whole in arguments.items():
        item = calls[f"call_{index}"]
        assert item.get("arguments", whole) == whole


def test_gemini_thought_signatures_ride_on_a_reasoning_item_and_come_back_on_their_calls() -> None:
    turn = Turn(calls=[Call("call_g", "get_weather", ['{"city":"Rome"}'], signature="c2lnLWdlbQ=="),
                       Call("call_h", "get_weather", ["{}"])], finish="tool_calls")
    stream = encode(turn)
    for event in stream:
        SDK_EVENT.validate_python(event)
    final = check_stream(stream)
    first, second, carrier = final["output"]
    assert (first["type"], second["type"], carrier["type"]) == ("function_call", "function_call", "reasoning")
    assert "extra_content" not in first  # clients drop unknown fields of call items anyway
    assert decode_reasoning(carrier["encrypted_content"], "x") == ([], {"call_g": "c2lnLWdlbQ=="})
    results = [{"type": "function_call_output", "call_id": c, "output": "ok"} for c in ("call_g", "call_h")]
    again = parse_request({**REQUEST, "input": [*final["output"], *results]})
    calls = again["messages"][0]["tool_calls"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "c2lnLWdlbQ=="}}
    assert "extra_content" not in calls[1]
    # Nothing to carry when the response is neither stored nor asked for its encrypted content.
    unkept = check_stream(encode(turn, {**REQUEST, "include": [], "store": False}))
    assert [item["type"] for item in unkept["output"]] == ["function_call", "function_call"]


def test_reasoning_text_is_a_summary_only_when_asked() -> None:
    turn = Turn(reasoning=["private ", "thoughts"], signature="sig", text=["Hi"])
    stream = encode(turn, {**REQUEST, "reasoning": {"effort": "high"}})
    assert not [e for e in stream if e["type"].startswith("response.reasoning_summary")]
    reasoning = check_stream(stream)["output"][0]
    assert reasoning["summary"] == []
    assert decode_reasoning(reasoning["encrypted_content"], "x") == (turn.blocks, {})  # the whole block still


def _each_its_own_shape(canonical: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same chunks, each with a field of its own: no two alike, so none is taken as a repeat of
    an earlier one's shape (see gateway.dialects.text_deltas)."""
    return [{**chunk, "x_chunk": n} for n, chunk in enumerate(canonical)]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(turns(), st.booleans())
def test_text_deltas_taken_by_their_shape_give_the_events_of_parsed_ones(turn: Turn, ascii_only: bool) -> None:
    def run(canonical: list[dict[str, Any]]) -> list[dict[str, Any]]:
        encoder = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
        raw = b"".join(b"data: " + json.dumps(chunk, ensure_ascii=ascii_only).encode() + b"\n\n"
                       for chunk in canonical)
        return events(encoder.feed(raw + b"data: [DONE]\n\n") + encoder.finish())

    canonical = chunks(turn)
    assert run(canonical) == run(_each_its_own_shape(canonical))


def test_the_terminal_event_leaves_with_the_canonical_end() -> None:
    encoder = StreamEncoder(REQUEST, response_id="resp_t1", created_at=1)
    out = encoder.feed(sse(chunks(Turn(text=["a", "b", "c"]))))
    assert encoder.ended and events(out)[-1]["type"] == "response.completed"
    assert encoder.finish() == b""
