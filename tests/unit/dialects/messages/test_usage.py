"""UsageReader and usage_from_body: usage of Anthropic answers relayed untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.context import Usage
from gateway.dialects.messages import UsageReader, usage_from_body
from tests.support.messages import events_lenient, recorded_body

STREAMS = ["anthropic/stream_thinking_then_tool_use", "anthropic/stream_tool_use", "anthropic/stream_thinking",
           "anthropic/stream_redacted_thinking", "anthropic/stream_prefill_stop_sequence", "anthropic/stream_refusal"]
STREAM_ERROR = (Path(__file__).resolve().parents[3] / "data" / "anthropic" / "stream_error.txt").read_bytes()


def expected_usage(raw: bytes) -> Usage:
    """Anthropic's own accounting: message_start's usage, each message_delta's figures over it."""
    figures: dict[str, int] = {}
    for name, data in events_lenient(raw):
        usage = data["message"]["usage"] if name == "message_start" else data.get("usage") or {}
        figures.update({k: v for k, v in usage.items() if isinstance(v, int)})
    read, written = figures.get("cache_read_input_tokens", 0), figures.get("cache_creation_input_tokens", 0)
    return Usage(prompt_tokens=figures["input_tokens"] + read + written, completion_tokens=figures["output_tokens"],
                 cached_tokens=read, cache_write_tokens=written)


def read(pieces: list[bytes]) -> UsageReader:
    reader = UsageReader()
    for piece in pieces:
        reader.feed(piece)
    return reader


@pytest.mark.parametrize("name", STREAMS)
def test_a_recorded_stream_gives_anthropics_usage_and_ends(name: str) -> None:
    raw = recorded_body(name)
    reader = read([raw])
    assert reader.usage == expected_usage(raw)
    assert reader.done and reader.error is None


def test_crlf_line_endings_read_the_same() -> None:
    raw = recorded_body("anthropic/stream_tool_use")
    reader = read([raw.replace(b"\n", b"\r\n")])
    assert (reader.usage, reader.done) == (expected_usage(raw), True)


def test_a_compacted_stream_counts_every_iteration() -> None:
    """With server-side compaction the final message_delta's top-level counts are the last iteration's;
    the compaction iteration (here 100 input, 55096 cache reads, 83 output) is billed too."""
    reader = read([recorded_body("anthropic/stream_cache_read_compaction")])
    assert reader.usage == Usage(prompt_tokens=100 + 55096 + 181, completion_tokens=83 + 8, cached_tokens=55096)


def test_an_error_event_is_reported_and_the_stream_is_not_done() -> None:
    reader = read([STREAM_ERROR])
    assert reader.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert not reader.done
    assert reader.usage == Usage(prompt_tokens=25, completion_tokens=1)


def test_a_stream_cut_before_its_end_is_not_done() -> None:
    raw = recorded_body("anthropic/stream_tool_use")
    reader = read([raw[: raw.index(b"event: message_stop")]])
    assert not reader.done and reader.usage == expected_usage(raw)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([*STREAMS, "anthropic/stream_cache_read_compaction"]), st.data())
def test_any_split_reads_the_same(name: str, data: st.DataObject) -> None:
    raw = recorded_body(name)
    whole = read([raw])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    reader = read([raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)])
    assert (reader.usage, reader.done, reader.error) == (whole.usage, True, None)


def text_event(text: str) -> bytes:
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return b"event: content_block_delta\ndata: " + json.dumps(delta).encode() + b"\n\n"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["event: message_stop", "\nevent: error\ndata: {}\n\n", "data: x", "plain words " * 9]),
                max_size=4), st.data())
def test_event_names_inside_the_text_are_not_events(texts: list[str], data: st.DataObject) -> None:
    start = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":7,'
             b'"output_tokens":1}}}\n\n')
    end = b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":9}}\n\n'
    body = start + b"".join(text_event(t) for t in texts) + end
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=10)))
    reader = read([body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)])
    assert (reader.usage, reader.done, reader.error) == (Usage(prompt_tokens=7, completion_tokens=9), False, None)
    reader.feed(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    assert reader.done


@pytest.mark.parametrize(("name", "usage"), [
    ("anthropic/cache_read_and_write", Usage(prompt_tokens=3 + 418 + 1111, completion_tokens=33, cached_tokens=1111,
                                             cache_write_tokens=418)),
])
def test_usage_from_body(name: str, usage: Usage) -> None:
    assert usage_from_body(recorded_body(name)) == usage


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"type": "message"}', b'{"usage": 5}'])
def test_usage_from_a_body_without_usage_is_none(body: bytes) -> None:
    assert usage_from_body(body) is None
