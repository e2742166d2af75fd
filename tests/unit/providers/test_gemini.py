"""The Gemini adapter: request translation field by field, answers and streams from the API
reference shapes (tests/data/gemini), random stream splits, error mapping."""

from __future__ import annotations

import base64
import copy
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.config import GeminiProvider
from gateway.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    UpstreamError,
    UpstreamProtocolError,
)
from gateway.providers import build_provider
from gateway.providers.base import UpstreamRequest
from gateway.providers.gemini import GeminiAdapter, GeminiStream
from gateway.schemas import Operation, validate_request

DATA = Path(__file__).resolve().parents[2] / "data" / "gemini"
CHAT = Operation.CHAT


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def wire(
    body: dict[str, Any], *, stream: bool = False, adapter: GeminiAdapter | None = None, **kwargs: Any
) -> dict[str, Any]:
    validate_request(CHAT, body)
    request = (adapter or GeminiAdapter()).build_request(
        CHAT, body, "gemini-2.0-flash", stream=stream, **kwargs
    )
    result: dict[str, Any] = orjson.loads(request.body)
    return result


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "g", "messages": list(messages), **extra}


USER = {"role": "user", "content": "Hi"}


# --- URLs, headers, credentials -------------------------------------------------------------------


def test_urls_for_the_generative_language_api() -> None:
    adapter = GeminiAdapter()
    request = adapter.build_request(CHAT, chat(USER), "gemini-2.0-flash", stream=False)
    assert (
        request.url
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    )
    assert request.method == "POST" and request.stream is False
    assert request.headers == {"content-type": "application/json"}
    streamed = adapter.build_request(CHAT, chat(USER), "models/gemini-2.0-flash", stream=True)
    assert streamed.url.endswith("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
    assert streamed.stream is True
    custom = GeminiAdapter("http://fake:9000/", headers={"x-extra": "1"})
    request = custom.build_request(CHAT, chat(USER), "gemini-pro", stream=False)
    assert request.url == "http://fake:9000/v1beta/models/gemini-pro:generateContent"
    assert request.headers["x-extra"] == "1"


def test_urls_for_vertex_ai() -> None:
    adapter = GeminiAdapter(vertex_project="proj", vertex_location="europe-west4")
    request = adapter.build_request(CHAT, chat(USER), "gemini-2.0-flash", stream=True)
    assert request.url == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj/locations/europe-west4"
        "/publishers/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    )
    global_ = GeminiAdapter(vertex_project="proj", vertex_location="global")
    assert global_.url("m", "generateContent").startswith(
        "https://aiplatform.googleapis.com/v1/projects/proj/"
    )


def test_factory_picks_the_credential_style() -> None:
    key = build_provider("g", GeminiProvider(type="gemini", api_key=SecretStr("k-123")))
    request = UpstreamRequest("POST", "u", {}, b"", False)
    key.credentials.apply(request)
    assert request.headers == {"x-goog-api-key": "k-123"}
    vertex = build_provider(
        "v",
        GeminiProvider(
            type="gemini", vertex_project="p", vertex_location="us-east1", access_token=SecretStr("ya29.tok")
        ),
    )
    request = UpstreamRequest("POST", "u", {}, b"", False)
    vertex.credentials.apply(request)
    assert request.headers == {"authorization": "Bearer ya29.tok"}
    assert "us-east1-aiplatform" in vertex.adapter.build_request(CHAT, chat(USER), "m", stream=False).url
    with pytest.raises(ValueError, match="vertex_project"):
        build_provider("bad", GeminiProvider(type="gemini", vertex_location="us-east1"))


# --- request translation --------------------------------------------------------------------------


def test_plain_chat_and_generation_config() -> None:
    body = chat(
        {"role": "user", "content": "Hello"},
        temperature=0.3,
        top_p=0.9,
        max_tokens=100,
        n=2,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        stop="END",
        user="u1",
    )
    before = copy.deepcopy(body)
    out = wire(body)
    assert body == before  # never mutated
    assert out == {
        "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.9,
            "maxOutputTokens": 100,
            "candidateCount": 2,
            "seed": 7,
            "presencePenalty": 0.5,
            "frequencyPenalty": -0.5,
            "stopSequences": ["END"],
        },
    }


def test_max_completion_tokens_wins_and_stop_lists_pass() -> None:
    config = wire(chat(USER, max_tokens=5, max_completion_tokens=50, stop=["a", "b"]))["generationConfig"]
    assert config == {"maxOutputTokens": 50, "stopSequences": ["a", "b"]}


def test_system_and_developer_messages_become_system_instruction() -> None:
    out = wire(
        chat(
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "Hi"},
        )
    )
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert out["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


def test_multi_turn_roles_and_merging() -> None:
    out = wire(
        chat(
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
            {"role": "user", "content": "d"},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "assistant", "content": ""},
        )
    )
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "a"}]},
        {"role": "model", "parts": [{"text": "b"}]},
        {"role": "user", "parts": [{"text": "c"}, {"text": "d"}]},
    ]


def test_images_data_url_and_http_url() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {
            "type": "image_url",
            "image_url": {"url": "https://example.com/cat.JPG?size=large", "detail": "high"},
        },
        {"type": "image_url", "image_url": {"url": "gs://bucket/doc.pdf"}},
        {
            "type": "image_url",
            "image_url": {"url": "https://example.com/files/abc", "mime_type": "image/webp"},
        },
    ]
    parts = wire(chat({"role": "user", "content": content}))["contents"][0]["parts"]
    assert parts == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=large"}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/files/abc"}},
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/image",
        "https://example.com/x.unknownext",
        "ftp://example.com/a.png",
        "data:image/png,notbase64",
    ],
)
def test_images_whose_type_cannot_be_known_are_refused(url: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(InvalidRequestError) as info:
        wire(chat({"role": "user", "content": content}))
    assert info.value.http_status == 400
    assert info.value.param == "messages[0].content[0].image_url.url"


def test_audio_and_file_parts() -> None:
    content = [
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
    ]
    parts = wire(chat({"role": "user", "content": content}))["contents"][0]["parts"]
    assert parts == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City"},
                "unit": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "format": "int32"},
                "email": {"type": "string", "format": "email"},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
                "kind": {"const": "city"},
                "when": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
            },
            "required": ["location"],
            "additionalProperties": False,
            "$defs": {"Tag": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
        "strict": True,
    },
}
NO_ARGS_TOOL = {
    "type": "function",
    "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
}


def test_tools_become_function_declarations() -> None:
    out = wire(chat(USER, tools=[WEATHER_TOOL, NO_ARGS_TOOL]))
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "location": {"type": "STRING", "description": "City"},
                            "unit": {"type": "STRING", "nullable": True, "enum": ["celsius", "fahrenheit"]},
                            "days": {"type": "INTEGER", "minimum": 1, "format": "int32"},
                            "email": {"type": "STRING"},
                            "tags": {
                                "type": "ARRAY",
                                "items": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}},
                            },
                            "kind": {"enum": ["city"]},
                            "when": {"nullable": True, "type": "STRING", "format": "date-time"},
                        },
                        "required": ["location"],
                    },
                },
                {"name": "now"},
            ]
        }
    ]
    assert "toolConfig" not in out


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    out = wire(chat(USER, tools=[WEATHER_TOOL], tool_choice=choice))
    assert out["toolConfig"] == {"functionCallingConfig": config}


def test_tool_round_trip_messages() -> None:
    out = wire(
        chat(
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    },
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "12:00"}]},
            {"role": "user", "content": "Thanks"},
        )
    )
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Tokyo?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}},
                {"text": "Thanks"},
            ],
        },
    ]


def test_tool_message_without_matching_call_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as info:
        wire(chat(USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}))
    assert info.value.param == "messages[1].tool_call_id"


def test_bad_tool_call_arguments_are_refused() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}
    with pytest.raises(InvalidRequestError) as info:
        wire(chat(USER, {"role": "assistant", "tool_calls": [call]}))
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_response_formats() -> None:
    assert wire(chat(USER, response_format={"type": "json_object"}))["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    schema = {
        "type": "object",
        "properties": {"n": {"type": "number"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    config = wire(
        chat(
            USER,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema, "strict": True},
            },
        )
    )["generationConfig"]
    assert config == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "NUMBER"}}, "required": ["n"]},
    }
    assert "generationConfig" not in wire(chat(USER, response_format={"type": "text"}))


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"parallel_tool_calls": False, "tools": [NO_ARGS_TOOL]}, "parallel_tool_calls"),
        ({"tool_choice": {"type": "custom"}, "tools": [NO_ARGS_TOOL]}, "tool_choice"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
    ],
)
def test_unsupported_parameters(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        wire(chat(USER, **extra))
    assert info.value.param == param and info.value.http_status == 400
    # Dropped instead when asked, per adapter or per call.
    assert wire(chat(USER, **extra), adapter=GeminiAdapter(drop_unsupported_params=True))["contents"]
    assert wire(chat(USER, **extra), drop_unsupported_params=True)["contents"]


def test_neutral_values_are_accepted() -> None:
    out = wire(chat(USER, logprobs=False, parallel_tool_calls=True, stream=True,
                    stream_options={"include_usage": True}))
    assert out == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_completions_operation_is_refused() -> None:
    assert Operation.COMPLETIONS not in GeminiAdapter.capabilities.operations
    with pytest.raises(InvalidRequestError):
        GeminiAdapter().build_request(Operation.COMPLETIONS, {"model": "g", "prompt": "x"}, "m", stream=False)


# --- complete answers -----------------------------------------------------------------------------


def test_text_response() -> None:
    parsed = GeminiAdapter().parse_response(CHAT, 200, fixture("chat_response.json"))
    data = parsed.data
    assert orjson.loads(parsed.body) == data
    assert data["id"] == "chatcmpl-mAitaNfTGLHe2_gPq7yJ8Q4"
    assert data["object"] == "chat.completion" and data["model"] == "gemini-2.5-flash"
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Once upon a time, a backpack learned to fly."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert data["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 42,
        "total_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.cached_tokens) == (
        8,
        42,
        4,
    )


def test_function_call_response() -> None:
    data = GeminiAdapter().parse_response(CHAT, 200, fixture("function_call_response.json")).data
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None  # the thought part is not content
    calls = message["tool_calls"]
    assert [c["function"] for c in calls] == [
        {"name": "get_weather", "arguments": '{"location":"Paris","unit":"celsius"}'},
        {"name": "get_weather", "arguments": '{"location":"Tokyo"}'},
    ]
    assert [c["id"][:7] for c in calls] == ["call_0_", "call_1_"]
    assert len({c["id"] for c in calls}) == 2
    again = GeminiAdapter().parse_response(CHAT, 200, fixture("function_call_response.json")).data
    assert again["choices"][0]["message"]["tool_calls"] == calls  # stable ids


def test_tool_call_ids_feed_back_into_requests() -> None:
    calls = (
        GeminiAdapter()
        .parse_response(CHAT, 200, fixture("function_call_response.json"))
        .data["choices"][0]["message"]["tool_calls"]
    )
    out = wire(
        chat(
            USER,
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": calls[1]["id"], "content": "sunny"},
        )
    )
    assert out["contents"][2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}],
    }


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": reason}]}
    data = GeminiAdapter().parse_response(CHAT, 200, orjson.dumps(body)).data
    assert data["choices"][0]["finish_reason"] == expected


def test_blocked_prompt_is_content_filter_with_empty_content() -> None:
    parsed = GeminiAdapter().parse_response(CHAT, 200, fixture("blocked_prompt.json"))
    assert parsed.data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "", "refusal": "The prompt was blocked (SAFETY)."},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert parsed.usage is not None and parsed.usage.prompt_tokens == 9


def test_several_candidates() -> None:
    body = {
        "candidates": [
            {"content": {"parts": [{"text": "A"}], "role": "model"}, "finishReason": "STOP", "index": 0},
            {
                "content": {"parts": [{"text": "B"}], "role": "model"},
                "finishReason": "MAX_TOKENS",
                "index": 1,
            },
        ]
    }
    choices = GeminiAdapter().parse_response(CHAT, 200, orjson.dumps(body)).data["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]


def test_invalid_json_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        GeminiAdapter().parse_response(CHAT, 200, b"<html>")


# --- embeddings -----------------------------------------------------------------------------------

EMBED = {"model": "embed", "input": ["hello world", "abcdefghi"], "dimensions": 3}


def test_embeddings_request() -> None:
    request = GeminiAdapter().build_request(Operation.EMBEDDINGS, EMBED, "gemini-embedding-001", stream=False)
    assert request.url.endswith("/v1beta/models/gemini-embedding-001:batchEmbedContents")
    assert orjson.loads(request.body) == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "hello world"}]},
                "outputDimensionality": 3,
            },
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "abcdefghi"}]},
                "outputDimensionality": 3,
            },
        ]
    }
    single = GeminiAdapter().build_request(
        Operation.EMBEDDINGS, {"model": "e", "input": "x"}, "m", stream=False
    )
    assert orjson.loads(single.body) == {
        "requests": [{"model": "models/m", "content": {"parts": [{"text": "x"}]}}]
    }
    with pytest.raises(InvalidRequestError) as info:
        GeminiAdapter().build_request(
            Operation.EMBEDDINGS, {"model": "e", "input": [1, 2]}, "m", stream=False
        )
    assert info.value.param == "input"


def test_embeddings_response_with_estimated_usage() -> None:
    adapter = GeminiAdapter()
    parsed = adapter.parse_response(
        Operation.EMBEDDINGS, 200, fixture("embeddings_response.json"), request=EMBED
    )
    assert parsed.data == {
        "object": "list",
        "model": "embed",
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0, -1.0]},
        ],
    }
    assert parsed.usage is not None and parsed.usage.estimated and parsed.usage.prompt_tokens == 6
    without = adapter.parse_response(Operation.EMBEDDINGS, 200, fixture("embeddings_response.json"))
    assert without.usage is None and len(without.data["data"]) == 2


def test_embeddings_base64() -> None:
    parsed = GeminiAdapter().parse_response(
        Operation.EMBEDDINGS,
        200,
        fixture("embeddings_response.json"),
        request={**EMBED, "encoding_format": "base64"},
    )
    raw = base64.b64decode(parsed.data["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (0.25, -0.5, 0.125)


def test_vertex_embeddings() -> None:
    adapter = GeminiAdapter(vertex_project="p", vertex_location="us-central1")
    request = adapter.build_request(Operation.EMBEDDINGS, EMBED, "text-embedding-005", stream=False)
    assert request.url.endswith("/publishers/google/models/text-embedding-005:predict")
    assert orjson.loads(request.body) == {
        "instances": [{"content": "hello world"}, {"content": "abcdefghi"}],
        "parameters": {"outputDimensionality": 3},
    }
    parsed = adapter.parse_response(Operation.EMBEDDINGS, 200, fixture("vertex_predict_response.json"))
    assert [d["embedding"] for d in parsed.data["data"]] == [[0.1, 0.2], [0.3, 0.4]]
    assert parsed.usage is not None and parsed.usage.prompt_tokens == 10 and not parsed.usage.estimated


# --- streams --------------------------------------------------------------------------------------


def events(raw: bytes) -> list[Any]:
    out: list[Any] = []
    for block in raw.split(b"\n\n"):
        if block:
            assert block.startswith(b"data: ")
            payload = block[6:]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def run(translator: GeminiStream, data: bytes, cuts: list[int] | None = None) -> bytes:
    points = sorted(set(cuts or []))
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return b"".join(translator.feed(piece) for piece in pieces) + translator.finish()


def test_text_stream() -> None:
    translator = GeminiAdapter().stream_translator(CHAT, client_wants_usage=False)
    out = events(run(translator, fixture("stream_text.txt")))
    assert out[-1] == "[DONE]"
    chunks = out[:-1]
    assert {c["id"] for c in chunks} == {"chatcmpl-stream-1"}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gemini-2.0-flash" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": "The"},
        {"content": " quick brown fox jumps over"},
        {"content": " the lazy dog. ✓"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert all("usage" not in c for c in chunks)
    assert translator.done and translator.finish_reason == "stop"
    assert translator.usage is not None
    assert (
        translator.usage.prompt_tokens,
        translator.usage.completion_tokens,
        translator.usage.cached_tokens,
    ) == (7, 11, 2)


def test_text_stream_with_usage_chunk() -> None:
    translator = GeminiAdapter().stream_translator(CHAT, client_wants_usage=True)
    out = events(run(translator, fixture("stream_text.txt")))
    assert out[-1] == "[DONE]"
    assert all(c["usage"] is None for c in out[:-2])
    assert out[-2]["choices"] == []
    assert out[-2]["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 11,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_tool_call_stream() -> None:
    translator = GeminiAdapter().stream_translator(CHAT, client_wants_usage=False)
    out = events(run(translator, fixture("stream_tool_calls.txt")))
    chunks = out[:-1]
    first, second, last = (c["choices"][0] for c in chunks)
    assert first["delta"]["role"] == "assistant" and first["delta"]["content"] is None
    call0 = first["delta"]["tool_calls"][0]
    assert call0["index"] == 0 and call0["type"] == "function" and call0["id"].startswith("call_0_")
    assert call0["function"] == {
        "name": "get_weather",
        "arguments": '{"location":"Paris","note":"café \\"quoted\\""}',
    }
    call1 = second["delta"]["tool_calls"][0]
    assert call1["index"] == 1 and call1["id"].startswith("call_1_")
    assert orjson.loads(call1["function"]["arguments"]) == {"zone": "Asia/Tokyo"}
    assert last == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert translator.finish_reason == "tool_calls"
    assert translator.usage is not None and translator.usage.completion_tokens == 14


def test_stream_and_complete_answer_agree_on_tool_call_ids() -> None:
    raw = fixture("stream_tool_calls.txt").split(b"\r\n\r\n")[0][6:]
    complete = GeminiAdapter().parse_response(CHAT, 200, raw).data["choices"][0]["message"]["tool_calls"][0]
    streamed = events(run(GeminiStream(False), fixture("stream_tool_calls.txt")))[0]
    assert streamed["choices"][0]["delta"]["tool_calls"][0]["id"] == complete["id"]


def test_stream_cut_before_finish_has_no_done() -> None:
    data = fixture("stream_text.txt").split(b"\r\n\r\n")
    translator = GeminiStream(client_wants_usage=True)
    out = translator.feed(b"\r\n\r\n".join(data[:2]) + b"\r\n\r\n") + translator.finish()
    assert b"[DONE]" not in out and not translator.done and translator.finish_reason is None


def test_stream_blocked_prompt() -> None:
    event = b"data: " + fixture("blocked_prompt.json").replace(b"\n", b"") + b"\r\n\r\n"
    translator = GeminiStream(client_wants_usage=False)
    out = events(run(translator, event))
    assert [c["choices"][0]["delta"] for c in out[:-1]] == [
        {"role": "assistant", "content": "", "refusal": "The prompt was blocked (SAFETY)."}, {}]
    assert out[-2]["choices"][0]["finish_reason"] == "content_filter" and out[-1] == "[DONE]"


def test_stream_error_event_raises() -> None:
    translator = GeminiStream(client_wants_usage=False)
    with pytest.raises(UpstreamError) as info:
        translator.feed(fixture("stream_error.txt"))
    assert info.value.http_status == 503 and info.value.retryable
    assert "overloaded" in info.value.message


def test_usage_after_finish_is_counted() -> None:
    data = (
        fixture("stream_text.txt") + b'data: {"usageMetadata": {"promptTokenCount": 7, '
        b'"candidatesTokenCount": 12, "totalTokenCount": 19}, "responseId": "stream-1"}\r\n\r\n'
    )
    translator = GeminiStream(client_wants_usage=True)
    out = events(run(translator, data))
    assert out[-2]["usage"]["completion_tokens"] == 12 and out[-1] == "[DONE]"


STREAMS = ["stream_text.txt", "stream_tool_calls.txt"]


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(STREAMS),
    wants_usage=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
)
def test_random_splits_give_identical_output(name: str, wants_usage: bool, cuts: list[int]) -> None:
    data = fixture(name)
    whole = GeminiStream(wants_usage)
    split = GeminiStream(wants_usage)
    split._created = whole._created  # the only clock-dependent field
    expected = run(whole, data)
    assert run(split, data, [c % (len(data) + 1) for c in cuts]) == expected
    assert split.usage == whole.usage and split.finish_reason == whole.finish_reason and split.done


@settings(max_examples=50, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_random_splits_reassemble_tool_arguments_byte_exact(cuts: list[int]) -> None:
    data = fixture("stream_tool_calls.txt")
    out = events(run(GeminiStream(False), data, [c % (len(data) + 1) for c in cuts]))
    arguments: dict[int, str] = {}
    for chunk in out[:-1]:
        for call in chunk["choices"][0]["delta"].get("tool_calls") or ():
            arguments[call["index"]] = arguments.get(call["index"], "") + call["function"]["arguments"]
    assert arguments == {0: '{"location":"Paris","note":"café \\"quoted\\""}', 1: '{"zone":"Asia/Tokyo"}'}


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("error_invalid_argument.json", 400, "invalid_argument"),
        ("error_api_key.json", 401, "invalid_argument"),
        ("error_permission_denied.json", 403, "permission_denied"),
        ("error_not_found.json", 404, "not_found"),
        ("error_resource_exhausted.json", 429, "resource_exhausted"),
        ("error_internal.json", 500, "internal"),
        ("error_unavailable.json", 503, "unavailable"),
    ],
)
def test_error_mapping(name: str, status: int, code: str) -> None:
    body = fixture(name)
    error = GeminiAdapter().parse_error(int(orjson.loads(body)["error"]["code"]), body, {})
    assert isinstance(error, UpstreamError)
    assert error.http_status == status and error.code == code
    assert error.message == orjson.loads(body)["error"]["message"]
    assert error.retryable is (status in (429, 500, 503))
    assert error.to_dict()["error"]["message"] == error.message


def test_retry_after_from_retry_info_and_header() -> None:
    body = fixture("error_resource_exhausted.json")
    error = GeminiAdapter().parse_error(429, body, {})
    assert isinstance(error, UpstreamError) and error.retry_after == 37.0
    error = GeminiAdapter().parse_error(429, body, {"retry-after": "5"})
    assert (
        isinstance(error, UpstreamError)
        and error.retry_after == 5.0
        and error.headers == {"retry-after": "5"}
    )


def test_context_length_error() -> None:
    error = GeminiAdapter().parse_error(400, fixture("error_context_length.json"), {})
    assert isinstance(error, ContextLengthExceededError)
    assert error.http_status == 400 and error.code == "context_length_exceeded"
    assert "exceeds the maximum number of tokens" in error.message


def test_status_name_decides_and_odd_bodies() -> None:
    error = GeminiAdapter().parse_error(
        500, b'[{"error": {"code": 429, "message": "slow", "status": "RESOURCE_EXHAUSTED"}}]', {}
    )
    assert error.http_status == 429
    error = GeminiAdapter().parse_error(502, b"<html>Bad Gateway</html>", {})
    assert error.http_status == 502 and "Bad Gateway" in error.message
    error = GeminiAdapter().parse_error(418, b"", {})
    assert error.http_status == 418
