"""Blocked Gemini and Vertex AI answers are content filters, never an empty success: every finish
reason Google documents for a block (Vertex AI's Model Armor included) and a blocked prompt, complete
and streamed, with Google's explanation as the refusal."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.providers.gemini import GeminiAdapter, GeminiStream
from gateway.schemas import Operation

BLOCKING = ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR", "JAILBREAK"]
WHY = "The response violated Model Armor filters."


def blocked(reason: str) -> dict[str, Any]:
    return {"candidates": [{"finishReason": reason, "finishMessage": WHY}], "responseId": "r",
            "usageMetadata": {"promptTokenCount": 19, "candidatesTokenCount": 6, "thoughtsTokenCount": 27}}


def streamed(event: dict[str, Any]) -> list[dict[str, Any]]:
    stream = GeminiStream(client_wants_usage=False)
    out = stream.feed(b"data: " + orjson.dumps(event) + b"\r\n\r\n") + stream.finish()
    assert stream.done and out.endswith(b"data: [DONE]\n\n")
    return [orjson.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: {")]


@pytest.mark.parametrize("reason", BLOCKING)
def test_blocked_answer_is_a_content_filter(reason: str) -> None:
    data = GeminiAdapter().parse_response(Operation.CHAT, 200, orjson.dumps(blocked(reason))).data
    assert data["choices"][0]["finish_reason"] == "content_filter"
    assert data["choices"][0]["message"]["refusal"] == WHY
    chunks = streamed(blocked(reason))
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert any(c["choices"][0]["delta"].get("refusal") == WHY for c in chunks)


def test_blocked_prompt_says_why() -> None:
    event = {"promptFeedback": {"blockReason": "MODEL_ARMOR", "blockReasonMessage": "Prompt injection."},
             "responseId": "r", "usageMetadata": {"trafficType": "ON_DEMAND"}}
    data = GeminiAdapter().parse_response(Operation.CHAT, 200, orjson.dumps(event)).data
    assert data["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "content_filter",
                                "message": {"role": "assistant", "content": "", "refusal": "Prompt injection."}}]
    assert streamed(event)[-1]["choices"][0]["finish_reason"] == "content_filter"
