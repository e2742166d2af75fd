from __future__ import annotations

from gateway.providers import mock
from gateway.schemas import Operation


def test_echo_and_lorem_answers_have_consistent_usage() -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "one two three"}]}
    answer = mock.completion(Operation.CHAT, body)
    assert answer["choices"][0]["message"]["content"] == "one two three"
    assert answer["usage"]["completion_tokens"] == 3
    lorem = mock.completion(Operation.CHAT, {**body, "model": "lorem", "max_tokens": 40})
    assert len(lorem["choices"][0]["message"]["content"].split()) == 40
    truncated = mock.completion(Operation.CHAT, {**body, "max_tokens": 2})
    assert truncated["choices"][0]["finish_reason"] == "length"


def test_stream_chunks_spell_the_same_answer() -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "a b c"}],
            "stream_options": {"include_usage": True}}
    chunks = mock.stream_chunks(Operation.CHAT, body)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == mock.completion(Operation.CHAT, body)["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_embeddings_are_deterministic_unit_vectors() -> None:
    first = mock.embeddings({"model": "e", "input": ["x", "y"], "dimensions": 16})
    again = mock.embeddings({"model": "e", "input": ["x", "y"], "dimensions": 16})
    assert first == again
    for item in first["data"]:
        assert abs(sum(v * v for v in item["embedding"]) - 1.0) < 1e-9
        assert len(item["embedding"]) == 16


def test_embedding_dimensions_are_bounded() -> None:
    vector = mock.embeddings({"model": "e", "input": "x", "dimensions": 2**62})["data"][0]["embedding"]
    assert len(vector) == mock.MAX_DIMENSIONS
