from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.context import Usage
from gateway.dialects.responses import StreamEncoder, UsageReader, usage_from_body
from tests.support.canonical import Turn, chunks, sse

USAGE = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 7},
         "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 150}
EXPECTED = Usage(prompt_tokens=120, completion_tokens=30, cached_tokens=100, cache_write_tokens=7)


def openai_stream(terminal: str = "response.completed", text: str = "Hi") -> bytes:
    """A Responses stream shaped like OpenAI's (compact JSON, `event:` lines)."""
    response: dict[str, Any] = {"id": "resp_1", "object": "response", "status": "in_progress", "output": [],
                                "usage": None, "error": None}
    delta = {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": text}
    final = {"response": {**response, "status": terminal.split(".")[1], "usage": USAGE}}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response}), ("response.output_text.delta", delta), (terminal, final)]
    return b"".join(f"event: {kind}\ndata: {json.dumps({'type': kind, **fields}, separators=(',', ':'))}\n\n".encode()
                    for kind, fields in events)


def test_usage_and_response_from_the_terminal_event() -> None:
    reader = UsageReader()
    reader.feed(openai_stream())
    assert reader.done and reader.usage == EXPECTED and reader.error is None
    assert reader.response is not None and reader.response["id"] == "resp_1"


def test_a_failed_stream_reports_its_error() -> None:
    error = b'event: error\ndata: {"type":"error","code":"server_error","message":"boom","sequence_number":3}\n\n'
    reader = UsageReader()
    reader.feed(error)
    assert reader.error is not None and reader.error["message"] == "boom" and not reader.done
    failed = UsageReader()
    failed.feed(error + openai_stream("response.failed"))
    assert failed.done and failed.usage == EXPECTED


def test_text_that_mentions_a_terminal_event_is_not_one() -> None:
    raw = openai_stream(text="say response.completed, event: error")
    reader = UsageReader()
    reader.feed(raw[:raw.rfind(b"event: response.completed")])
    assert not reader.done and reader.error is None


def test_a_stream_cut_before_its_end_is_not_done() -> None:
    reader = UsageReader()
    whole = openai_stream()
    reader.feed(whole[:whole.rfind(b"event: response.completed")])
    assert not reader.done and reader.usage is None


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0), max_size=20), st.text(max_size=30))
def test_any_split_reads_the_same(cuts: list[int], text: str) -> None:
    raw = openai_stream(text=text)
    reader = UsageReader()
    start = 0
    for cut in [*sorted({c % (len(raw) + 1) for c in cuts}), len(raw)]:
        reader.feed(raw[start:cut])
        start = cut
    assert reader.done and reader.usage == EXPECTED


def test_reads_the_gateways_own_encoder() -> None:
    encoder = StreamEncoder({"model": "m", "input": "x"}, response_id="resp_z", created_at=1)
    reader = UsageReader()
    reader.feed(encoder.feed(sse(chunks(Turn(text=["a", "b"])))) + encoder.finish())
    assert reader.done and reader.usage == Usage(prompt_tokens=30, completion_tokens=12, cached_tokens=10,
                                                 cache_write_tokens=5)


def test_usage_from_a_body() -> None:
    assert usage_from_body(json.dumps({"id": "resp_1", "usage": USAGE}).encode()) == EXPECTED
    assert usage_from_body(b'{"id": "resp_1", "usage": null}') is None
    assert usage_from_body(b"not json") is None


def test_every_two_piece_split_reads_the_same() -> None:
    raw = openai_stream()
    for cut in range(len(raw) + 1):
        reader = UsageReader()
        reader.feed(raw[:cut])
        reader.feed(raw[cut:])
        assert reader.done and reader.usage == EXPECTED, cut
