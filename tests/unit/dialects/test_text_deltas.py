"""TextDeltas: canonical text deltas recognised by their bytes, never anything else."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.dialects.text_deltas import TextDeltas

texts = st.text(min_size=1, max_size=12)
# Field values that every writer leaves unescaped (a chunk with a backslash outside its text is never
# learned: see test_a_key_spelled_with_escapes_is_not_learned).
plain = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), max_size=12)


@st.composite
def text_chunks(draw: st.DrawFn) -> dict[str, Any]:
    """A canonical chunk that adds text and does nothing else, in the shapes providers send."""
    chunk: dict[str, Any] = {"id": draw(plain), "object": "chat.completion.chunk",
                             "created": draw(st.integers(0, 2**40)), "model": draw(plain)}
    for name in draw(st.lists(st.sampled_from(["system_fingerprint", "service_tier", "provider"]), unique=True)):
        chunk[name] = draw(plain)
    delta: dict[str, Any] = {"content": draw(texts)}
    if draw(st.booleans()):
        delta = {"role": "assistant", **delta} if draw(st.booleans()) else {**delta, "reasoning_content": None}
    choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    chunk["choices"] = [choice]
    if draw(st.booleans()):
        chunk["usage"] = None
    return chunk


# How providers write JSON: compact, spaced, with or without escaping what is not ASCII.
writers = st.sampled_from([orjson.dumps, lambda c: json.dumps(c).encode(),
                           lambda c: json.dumps(c, ensure_ascii=False).encode(),
                           lambda c: json.dumps(c, separators=(",", ":")).encode()])


def with_text(chunk: dict[str, Any], text: str) -> dict[str, Any]:
    choice = chunk["choices"][0]
    return {**chunk, "choices": [{**choice, "delta": {**choice["delta"], "content": text}}]}


def event(payload: bytes) -> bytes:
    return b"data: " + payload


@settings(max_examples=300)
@given(text_chunks(), writers, st.lists(texts, min_size=1, max_size=6))
def test_the_learned_chunk_with_other_texts_is_one_run_of_those_texts(chunk: dict[str, Any], write: Any,
                                                                      others: list[str]) -> None:
    deltas = TextDeltas()
    deltas.learn(event(write(chunk)), chunk)
    stream = [event(write(with_text(chunk, text))) for text in others] + [b"data: [DONE]"]
    run = deltas.run(stream, 0)
    assert run.texts == others and run.count == len(others)
    assert deltas.run(stream, len(others)).count == 0
    assert [orjson.loads(string) for string in run.strings] == others


@settings(max_examples=300)
@given(text_chunks(), writers, st.lists(st.binary(max_size=40) | texts.map(str.encode), min_size=1, max_size=4),
       st.data())
def test_whatever_a_run_takes_is_the_learned_chunk_with_another_text(chunk: dict[str, Any], write: Any,
                                                                     cuts: list[bytes], data: st.DataObject) -> None:
    """Events made from the learned one with bytes cut out or put in anywhere: those the run takes
    parse as the learned chunk with the text the run gives them, and nothing else."""
    deltas = TextDeltas()
    learned = event(write(chunk))
    deltas.learn(learned, chunk)
    stream = []
    for piece in cuts:
        at = data.draw(st.integers(0, len(learned)))
        end = data.draw(st.integers(at, min(len(learned), at + 8)))
        stream.append(learned[:at] + piece + learned[end:])
    run = deltas.run(stream, 0)
    for raw, text, string in zip(stream, run.texts, run.strings, strict=False):
        assert orjson.loads(raw.removeprefix(b"data:")) == with_text(chunk, text)
        assert orjson.loads(string) == text


@given(text_chunks(), st.sampled_from([
    {"finish_reason": "stop"}, {"index": 1}, {"delta": {"content": "x", "refusal": "no"}},
    {"delta": {"content": "x", "tool_calls": [{"index": 0}]}}, {"delta": {"content": ""}},
    {"delta": {"content": "x", "reasoning_content": "think"}}]))
def test_a_chunk_that_does_more_than_add_text_is_not_learned(chunk: dict[str, Any], change: dict[str, Any]) -> None:
    changed = {**chunk, "choices": [{**chunk["choices"][0], **change}]}
    deltas = TextDeltas()
    deltas.learn(event(orjson.dumps(changed)), changed)
    assert deltas.run([event(orjson.dumps(changed))], 0).count == 0


def test_usage_an_error_or_a_second_choice_are_not_learned() -> None:
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    for changed in ({**chunk, "usage": {"prompt_tokens": 1}}, {**chunk, "error": {"message": "x"}},
                    {**chunk, "choices": chunk["choices"] * 2}):
        deltas = TextDeltas()
        deltas.learn(event(orjson.dumps(changed)), changed)
        assert deltas.run([event(orjson.dumps(changed))], 0).count == 0


def test_a_key_spelled_with_escapes_is_not_learned() -> None:
    """`"\\u0063ontent"` is the delta's content key too: the bytes cannot tell which string is its text."""
    raw = b'data: {"x":{"content":"hi"},"choices":[{"index":0,"delta":{"\\u0063ontent":"hi"}}]}'
    chunk = orjson.loads(raw[5:])
    deltas = TextDeltas()
    deltas.learn(raw, chunk)
    assert deltas.run([raw.replace(b'"content":"hi"', b'"content":"other"')], 0).count == 0


def test_an_event_of_several_lines_is_not_learned() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}}]}
    raw = b"event: chunk\ndata: " + orjson.dumps(chunk)
    deltas = TextDeltas()
    deltas.learn(raw, chunk)
    assert deltas.run([raw], 0).count == 0


@given(st.lists(texts, min_size=1, max_size=5), st.integers(0, 1000))
def test_write_puts_each_string_between_the_dialects_bytes_numbered_in_turn(others: list[str], first: int) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "learned"}}]}
    deltas = TextDeltas()
    deltas.learn(event(orjson.dumps(chunk)), chunk)
    run = deltas.run([event(orjson.dumps(with_text(chunk, text))) for text in others], 0)
    numbered = run.write(b'{"a%":', b',"n":%d}\n', first).splitlines()
    assert [orjson.loads(line.replace(b'{"a%"', b'{"a"')) for line in numbered] == [
        {"a": text, "n": first + i} for i, text in enumerate(others)]
    unnumbered = run.write(b"[", b"]\n").splitlines()
    assert [orjson.loads(line) for line in unnumbered] == [[text] for text in others]


@settings(max_examples=300)
@given(text_chunks(), writers, st.binary(max_size=40) | texts.map(str.encode), st.data())
def test_a_read_taken_as_one_event_is_what_a_run_takes_from_it(chunk: dict[str, Any], write: Any, piece: bytes,
                                                             data: st.DataObject) -> None:
    """A read that `one` takes (the learned event, bytes cut out or put in anywhere, with its blank
    line) is exactly one event, which a run takes with the same string and text."""
    deltas = TextDeltas()
    learned = event(write(chunk))
    deltas.learn(learned, chunk)
    at = data.draw(st.integers(0, len(learned)))
    end = data.draw(st.integers(at, min(len(learned), at + 8)))
    read = learned[:at] + piece + learned[end:] + b"\n\n"
    found = deltas.one(read)
    if found is None:
        return
    assert read.count(b"\n\n") == 1 and read.endswith(b"\n\n")
    run = deltas.run([read[:-2]], 0)
    assert run.count == 1 and (run.strings[0], run.texts[0]) == found


@given(text_chunks(), writers, texts)
def test_the_learned_event_with_another_text_is_taken_as_one(chunk: dict[str, Any], write: Any, text: str) -> None:
    deltas = TextDeltas()
    deltas.learn(event(write(chunk)), chunk)
    found = deltas.one(event(write(with_text(chunk, text))) + b"\n\n")
    assert found is not None and found[1] == text and orjson.loads(found[0]) == text
    assert deltas.one(event(write(with_text(chunk, text)))) is None  # (no blank line: not a whole event)
