"""Documents (`file` content parts) and prompt-cache hints (`cache_control` on parts and messages)
translated for the providers that have them."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequestError
from gateway.providers.anthropic import AnthropicAdapter
from gateway.providers.bedrock import BedrockAdapter
from gateway.schemas import Operation

DATA = base64.b64encode(b"col\n1\n").decode()
EPHEMERAL = {"type": "ephemeral"}


def sent(adapter: Any, model: str, *messages: dict[str, Any]) -> dict[str, Any]:
    request = adapter.build_request(Operation.CHAT, {"model": "a", "messages": list(messages)}, model,
                                    stream=False)
    result: dict[str, Any] = orjson.loads(request.body)
    return result


def file_part(data_url: str, filename: str | None = None) -> dict[str, Any]:
    file = {"file_data": data_url, **({"filename": filename} if filename else {})}
    return {"type": "file", "file": file}


def test_anthropic_takes_text_documents_and_refuses_other_kinds() -> None:
    content = sent(AnthropicAdapter(), "claude-sonnet-4-5",
                   {"role": "user", "content": [file_part(f"data:text/plain;base64,{DATA}")]})["messages"][0]["content"]
    assert content == [{"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": DATA}}]
    for url, param in ((f"data:text/csv;base64,{DATA}", "messages[0].content[0].file.file_data"),
                       ("file-abc123", "messages[0].content[0].file")):
        with pytest.raises(InvalidRequestError) as info:
            sent(AnthropicAdapter(), "claude-sonnet-4-5", {"role": "user", "content": [file_part(url)]})
        assert info.value.param == param


def test_anthropic_cache_hint_on_a_message_marks_its_last_block() -> None:
    body = sent(AnthropicAdapter(), "claude-sonnet-4-5",
                {"role": "system", "content": "Be brief.", "cache_control": EPHEMERAL},
                {"role": "user", "content": "Hi", "cache_control": EPHEMERAL})
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Hi", "cache_control": EPHEMERAL}]}]


def test_bedrock_documents_get_a_safe_unique_name() -> None:
    content = sent(BedrockAdapter(), "m", {"role": "user", "content": [
        file_part(f"data:text/csv;base64,{DATA}", "Q3  sales_v2!.csv"),
        file_part(f"data:application/pdf;base64,{DATA}")]})["messages"][0]["content"]
    assert content == [{"document": {"format": "csv", "name": "Q3 sales v2", "source": {"bytes": DATA}}},
                       {"document": {"format": "pdf", "name": "document 2", "source": {"bytes": DATA}}}]
    with pytest.raises(InvalidRequestError) as info:
        sent(BedrockAdapter(), "m", {"role": "user", "content": [file_part(f"data:image/png;base64,{DATA}")]})
    assert info.value.param == "messages[0].content[0].file.file_data"


def test_bedrock_cache_hints_become_cache_points() -> None:
    body = sent(BedrockAdapter(), "m",
                {"role": "system", "content": "Be brief.", "cache_control": EPHEMERAL},
                {"role": "user", "content": [{"type": "text", "text": "Long context", "cache_control": EPHEMERAL},
                                             {"type": "text", "text": "Question"}]},
                {"role": "assistant", "content": "Answer", "cache_control": EPHEMERAL})
    point = {"cachePoint": {"type": "default"}}
    assert body["system"] == [{"text": "Be brief."}, point]
    assert body["messages"][0]["content"] == [{"text": "Long context"}, point, {"text": "Question"}]
    assert body["messages"][1]["content"] == [{"text": "Answer"}, point]
