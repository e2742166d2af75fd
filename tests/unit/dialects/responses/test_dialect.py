from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.responses import Response

from gateway.context import NativeCall, RequestContext
from gateway.dialects import Dialect
from gateway.dialects.responses import ResponsesDialect
from gateway.errors import InvalidRequestError, UpstreamTimeoutError
from gateway.pipeline import new_context
from gateway.providers.base import ParsedResponse
from gateway.schemas import Operation
from tests.support.canonical import Call, Turn, chunks, completion, events, sse

CODEX = json.loads((Path(__file__).resolve().parents[3] / "data" / "clients" / "codex" / "exec_plain.json").read_text())
DIALECT: Dialect = ResponsesDialect()


def context(body: dict[str, Any]) -> RequestContext:
    call = DIALECT.parse(body, {})
    ctx = new_context("req-1", Operation.CHAT, call.body, {}, 0.0)
    ctx.native = call.native
    return ctx


def test_codex_keeps_its_body_and_web_search_is_fatal_only_to_translation() -> None:
    call = DIALECT.parse(CODEX["body"], CODEX["headers"])
    assert call.native == NativeCall("responses", CODEX["body"])
    assert isinstance(call.untranslatable, InvalidRequestError)
    assert call.untranslatable.param == "tools[8].type"
    assert "web_search" not in json.dumps(call.body["tools"])
    assert call.body["model"] == "gpt-5-codex" and call.body["stream"] is True


def test_a_plain_request_is_translatable_and_bad_ones_still_fail() -> None:
    call = DIALECT.parse({"model": "m", "input": "hi"}, {})
    assert call.untranslatable is None and call.body["messages"] == [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidRequestError) as raised:
        DIALECT.parse({"input": "hi"}, {})
    assert raised.value.param == "model"


def test_answers_are_encoded_from_the_client_body() -> None:
    tools = [{"type": "custom", "name": "apply_patch"}]
    ctx = context({"model": "m", "input": "patch it", "tools": tools, "metadata": {"a": "1"}})
    turn = Turn(calls=[Call("c1", "apply_patch", ['{"input":"diff"}'])], finish="tool_calls")
    body = DIALECT.encode_answer(ParsedResponse(data=completion(turn), body=b"", usage=None), ctx)
    response = Response.model_validate(orjson.loads(body))
    assert response.id.startswith("resp_") and response.metadata == {"a": "1"}
    assert response.output[0].type == "custom_tool_call" and response.output[0].input == "diff"
    native = DIALECT.encode_answer(ParsedResponse(data={}, body=b'{"id":"resp_up"}', usage=None, native=True), ctx)
    assert native == b'{"id":"resp_up"}'


def test_stream_encoder_and_error_event() -> None:
    ctx = context({"model": "m", "input": "hi", "stream": True})
    encoder = DIALECT.stream_encoder(ctx)
    assert encoder is not None
    out = encoder.feed(sse(chunks(Turn(text=["a"])))) + encoder.finish()
    assert events(out)[-1]["type"] == "response.completed"
    (event,) = events(DIALECT.error_event(UpstreamTimeoutError("The model stopped answering.")))
    assert event["type"] == "response.failed"
    assert event["response"]["error"] == {"code": "server_error", "message": "The model stopped answering."}


def test_usage_readers() -> None:
    reader = DIALECT.usage_reader()
    assert reader.usage is None and not reader.done
    assert DIALECT.usage_of_body(b'{"usage": {"input_tokens": 3, "output_tokens": 2}}') is not None
