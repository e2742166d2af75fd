from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ContextLengthExceededError, UpstreamError, UpstreamProtocolError
from gateway.providers.openai import OpenAIAdapter, openai_error
from gateway.providers.sse import SSESplitter, event_data
from gateway.schemas import Operation
from tests.support.openai_fake import chat_chunks

# How servers write their JSON: Python's default (`", "` and `": "`), compact, and colon-space only.
STYLES = {"spaced": (", ", ": "), "compact": (",", ":"), "colon-space": (",", ": ")}


def sse_stream(include_usage: bool, style: str = "spaced", keep_alive: bool = False) -> bytes:
    """`style` "mixed": compact chunks, then the last two (finish, usage) written spaced, as by a server
    whose final chunks come from another serializer."""
    events = chat_chunks("alpha beta gamma", "m", include_usage=include_usage, prompt_tokens=11)
    styles = [STYLES["spaced"] if style == "mixed" and i >= len(events) - 2 else STYLES.get(style, STYLES["compact"])
              for i in range(len(events))]
    data = b"".join(b"data: " + json.dumps(e, separators=sep).encode() + b"\n\n"
                    for e, sep in zip(events, styles, strict=True))
    return (b": keep-alive\n\n" if keep_alive else b"") + data + b"data: [DONE]\n\n"


def run(translator_input: bytes, cuts: list[int], client_wants_usage: bool) -> tuple[bytes, object]:
    adapter = OpenAIAdapter(None)
    translator = adapter.stream_translator(Operation.CHAT, client_wants_usage=client_wants_usage)
    out, start = [], 0
    for cut in [*sorted(cuts), len(translator_input)]:
        out.append(translator.feed(translator_input[start:cut]))
        start = cut
    out.append(translator.finish())
    return b"".join(out), translator


def test_build_request_renames_the_model_and_asks_for_stream_usage() -> None:
    adapter = OpenAIAdapter("http://h/v1/", {"x-extra": "1"})
    body = {"model": "alias", "messages": [], "stream": True, "stream_options": {"include_usage": False}, "foo": 1}
    request = adapter.build_request(Operation.CHAT, body, "upstream-model", stream=True)
    sent = orjson.loads(request.body)
    assert request.url == "http://h/v1/chat/completions"
    assert sent["model"] == "upstream-model"
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["foo"] == 1
    assert request.headers["x-extra"] == "1"
    assert body["model"] == "alias" and body["stream_options"] == {"include_usage": False}  # not mutated
    embeddings = adapter.build_request(Operation.EMBEDDINGS, {"model": "a", "input": "x"}, "e", stream=False)
    assert embeddings.url == "http://h/v1/embeddings"
    assert "stream_options" not in orjson.loads(embeddings.body)


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=len(sse_stream(True))), max_size=12), st.booleans(),
       st.sampled_from([*sorted(STYLES), "mixed"]), st.booleans())
def test_stream_output_does_not_depend_on_how_bytes_were_split(cuts: list[int], wants_usage: bool, style: str,
                                                               keep_alive: bool) -> None:
    """Whatever the JSON style (compact, spaced, or both in one stream) and however the bytes were
    split, the same output, usage and finish reason."""
    data = sse_stream(True, style, keep_alive)
    whole, _ = run(data, [], wants_usage)
    split, translator = run(data, [min(cut, len(data)) for cut in cuts], wants_usage)
    assert split == whole
    assert (b'"usage"' in whole) is wants_usage  # the usage chunk, and every `"usage": null`
    assert translator.usage is not None and translator.usage.prompt_tokens == 11  # type: ignore[attr-defined]
    assert translator.finish_reason == "stop"  # type: ignore[attr-defined]
    assert translator.done  # type: ignore[attr-defined]


def test_usage_chunk_is_kept_only_when_the_client_asked() -> None:
    data = sse_stream(True)
    hidden, _ = run(data, [], False)
    shown, _ = run(data, [], True)
    hidden_events = [event_data(e) for e in SSESplitter().feed(hidden)]
    shown_events = [event_data(e) for e in SSESplitter().feed(shown)]
    assert hidden_events[-1] == shown_events[-1] == b"[DONE]"
    assert len(shown_events) == len(hidden_events) + 1
    assert b'"usage"' not in hidden
    assert orjson.loads(shown_events[-2])["usage"]["completion_tokens"] == 3  # type: ignore[arg-type]
    text = "".join(orjson.loads(e)["choices"][0]["delta"].get("content", "")  # type: ignore[arg-type]
                   for e in hidden_events[:-1])
    assert text == "alpha beta gamma"


def test_a_stream_without_done_is_not_done() -> None:
    data = sse_stream(False).replace(b"data: [DONE]\n\n", b"")
    _, translator = run(data, [], False)
    assert not translator.done  # type: ignore[attr-defined]


def test_error_event_inside_the_stream_raises() -> None:
    translator = OpenAIAdapter(None).stream_translator(Operation.CHAT, client_wants_usage=False)
    with pytest.raises(UpstreamError) as caught:
        translator.feed(b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n')
    assert caught.value.message == "overloaded"


def test_sse_splitter_handles_crlf_comments_and_multiline_data() -> None:
    splitter = SSESplitter()
    events = splitter.feed(b": keep-alive\r\n\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: partial")
    assert [event_data(e) for e in events] == [None, b'{"a":\n1}']
    assert splitter.rest() == b"data: partial"


@pytest.mark.parametrize(("status", "body", "headers", "kind", "retryable"), [
    (400, b'{"error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": null}}',
     {}, UpstreamError, False),
    (400, b'{"error": {"message": "too long", "code": "context_length_exceeded"}}', {}, ContextLengthExceededError,
     False),
    (429, b'{"error": {"message": "slow down", "type": "requests"}}', {"retry-after": "2"}, UpstreamError, True),
    (503, b"<html>oops</html>", {}, UpstreamError, True),
    (408, b"", {}, UpstreamError, True),
    (404, b'{"error": "no such model"}', {}, UpstreamError, False),
])
def test_error_mapping(status: int, body: bytes, headers: dict[str, str], kind: type, retryable: bool) -> None:
    error = openai_error(status, body, headers, provider="openai")
    assert isinstance(error, kind)
    assert error.retryable is retryable
    payload = error.to_dict()["error"]
    assert set(payload) >= {"message", "type", "code"}
    if status == 429:
        assert error.http_status == 429 and getattr(error, "retry_after", None) == 2.0
        assert error.headers == {"retry-after": "2"}
    if status == 404:
        assert payload["message"] == "no such model"


def test_invalid_json_answer_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        OpenAIAdapter(None).parse_response(Operation.CHAT, 200, b"not json")


ERROR_IN_CHUNK = (b'data: {"id":"gen-1","provider":"Minimax","error":{"code":400,"message":"Token limit reached"},'
                  b'"choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]}\n\n')
FIRST = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chat_chunks("a b", "m", include_usage=False))


def test_an_error_beside_a_chunks_fields_ends_the_stream_after_what_came_before() -> None:
    translator = OpenAIAdapter(None).stream_translator(Operation.CHAT, client_wants_usage=False)
    cut = FIRST.index(b"\n\n") + 2
    first = translator.feed(FIRST[:cut])
    # The next read holds the rest of the content and the error: the content goes out first.
    out = first + translator.feed(FIRST[cut:] + ERROR_IN_CHUNK)
    assert out == FIRST
    with pytest.raises(UpstreamError) as info:
        translator.finish()
    assert info.value.message == "Token limit reached"


def test_an_error_before_any_output_is_raised_at_once() -> None:
    translator = OpenAIAdapter(None).stream_translator(Operation.CHAT, client_wants_usage=False)
    with pytest.raises(UpstreamError):
        translator.feed(FIRST + ERROR_IN_CHUNK)


def test_thinking_blocks_stay_with_the_gateway() -> None:
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello", "reasoning_content": "greet",
                 "thinking_blocks": [{"type": "thinking", "thinking": "greet", "signature": "s"}]}]
    request = OpenAIAdapter(None).build_request(Operation.CHAT, {"model": "a", "messages": messages}, "m",
                                                stream=False)
    assert orjson.loads(request.body)["messages"] == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "reasoning_content": "greet"}]


def test_usage_keeps_reasoning_tokens() -> None:
    body = orjson.dumps({"id": "c", "object": "chat.completion", "choices": [], "usage": {
        "prompt_tokens": 10, "completion_tokens": 30, "total_tokens": 40,
        "completion_tokens_details": {"reasoning_tokens": 24}}})
    usage = OpenAIAdapter(None).parse_response(Operation.CHAT, 200, body).usage
    assert usage is not None and (usage.completion_tokens, usage.reasoning_tokens) == (30, 24)


@pytest.mark.parametrize("keepalive", [b": PROCESSING\n\n", b": ping\n\n: ping\n\n", b"\n\n", b": x\r\n\r\n"])
def test_keepalives_before_the_first_event_give_the_client_nothing(keepalive: bytes) -> None:
    translator = OpenAIAdapter(None).stream_translator(Operation.CHAT, client_wants_usage=False)
    assert translator.feed(keepalive) == b""
    first = b"data: " + json.dumps(chat_chunks("hi", "m", include_usage=False)[0]).encode() + b"\n\n"
    assert translator.feed(keepalive + first) == first


@pytest.mark.parametrize("event", [b'{ "error": {"message": "boom"} }', b'{"id": "x", "error": {"message": "boom"}}'])
def test_an_error_event_however_spelled_raises(event: bytes) -> None:
    translator = OpenAIAdapter(None).stream_translator(Operation.CHAT, client_wants_usage=False)
    with pytest.raises(UpstreamError, match="boom"):
        translator.feed(b"data: " + event + b"\n\n")
