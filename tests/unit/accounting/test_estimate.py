"""A stream's capture, packed once it is long: every piece comes back, in order, and the text counted
from it is the text counted from the pieces as they came."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.accounting.estimate import PACK_AFTER, pack_capture, text_of_sse, unpacked


@given(st.lists(st.lists(st.binary(max_size=300), max_size=PACK_AFTER + 5), max_size=5), st.lists(st.binary()))
def test_packed_pieces_come_back_in_order(batches: list[list[bytes]], rest: list[bytes]) -> None:
    packed: list[bytes] = []
    for batch in batches:
        capture = list(batch)
        pack_capture(capture, packed)
        assert capture == []
    assert b"".join(unpacked(packed, rest)) == b"".join(b for batch in batches for b in batch) + b"".join(rest)


@given(st.lists(st.text(max_size=12), min_size=1, max_size=3 * PACK_AFTER), st.integers(min_value=1, max_value=7))
def test_the_text_of_a_packed_stream_is_the_text_of_its_events(words: list[str], read_size: int) -> None:
    events = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":%s}}]}\n\n' % orjson.dumps(word)
                      for word in words)
    pieces = [events[i:i + read_size * 40] for i in range(0, len(events), read_size * 40)]  # reads cut anywhere
    capture: list[bytes] = []
    packed: list[bytes] = []
    for piece in pieces:
        capture.append(piece)
        if len(capture) >= PACK_AFTER:
            pack_capture(capture, packed)
    assert text_of_sse(unpacked(packed, capture)) == "".join(words) == text_of_sse(pieces)


def sse(*events: dict[str, object]) -> bytes:
    return b"".join(b"event: x\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


def test_the_text_of_a_messages_stream_counts_text_thinking_and_tool_calls() -> None:
    stream = sse({"type": "message_start", "message": {"usage": {"input_tokens": 5}}},
                 {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
                 {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
                 {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}},
                 {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": " hello"}},
                 {"type": "content_block_start", "index": 2,
                  "content_block": {"type": "tool_use", "id": "t", "name": "read", "input": {}}},
                 {"type": "content_block_delta", "index": 2,
                  "delta": {"type": "input_json_delta", "partial_json": '{"a":'}})
    assert text_of_sse([stream[:37], stream[37:]]) == 'hm hello' + 'read{"a":'


def test_the_text_of_a_responses_stream_counts_text_reasoning_and_tool_calls() -> None:
    stream = sse({"type": "response.created", "response": {"output": []}},
                 {"type": "response.reasoning_summary_text.delta", "delta": "think "},
                 {"type": "response.output_text.delta", "delta": "hi"},
                 {"type": "response.output_item.added", "item": {"type": "function_call", "name": "ls"}},
                 {"type": "response.function_call_arguments.delta", "delta": "{}"},
                 {"type": "response.output_text.done", "text": "hi"})
    assert text_of_sse([stream]) == "think hils{}"
