"""Recorded provider exchanges (tests/data/recorded-traffic, see its SOURCES.md), and what each one
means read straight from the provider's own wire format, so a test can compare it with what a client
of the gateway read back.

`facts(recording)` reads the provider's answer by the provider's documented rules (not through the
gateway's translators); `sdk_answer` and `sse_answer` read what a client got, in OpenAI form. Both
give an `Answer`, so a test compares the two with `==`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import Reply

ROOT = Path(__file__).resolve().parents[1] / "data" / "recorded-traffic"

# Each provider's stop reasons, as its API reference lists them, in OpenAI's terms.
ANTHROPIC_STOPS = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                   "tool_use": "tool_calls", "refusal": "content_filter"}
BEDROCK_STOPS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                 "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}
GEMINI_BLOCKS = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                 "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR", "JAILBREAK"}


@dataclass
class Recording:
    name: str
    data: dict[str, Any]

    @property
    def provider(self) -> str:
        return str(self.data["provider"])

    @property
    def stream(self) -> bool:
        return bool(self.data["stream"])

    @property
    def status(self) -> int:
        return int(self.data["response"]["status"])

    @property
    def body(self) -> bytes:
        response = self.data["response"]
        if "body_base64" in response:
            return base64.b64decode(response["body_base64"])
        return str(response["body"]).encode()

    @property
    def sent(self) -> dict[str, Any]:
        """The provider request as recorded."""
        body = self.data["recorded_request"]["body"]
        return body if isinstance(body, dict) else {}

    def reply(self, pieces: list[bytes] | None = None, pause: float = 0.0) -> Reply:
        """The recorded answer, byte for byte; `pieces` (the body cut somewhere) go out one by one."""
        headers = {k: v for k, v in self.data["response"]["headers"].items() if k.lower() != "content-type"}
        content_type = self.data["response"]["headers"].get("content-type", "application/json")
        mime, _, params = content_type.partition(";")
        charset = params.split("=", 1)[1].strip() if "charset=" in params else None
        chunked = pieces is not None or self.data["response"]["chunked"]
        return Reply(status=self.status, body=None if chunked else self.body,
                     chunks=(pieces or [self.body]) if chunked else None, headers=headers,
                     content_type=mime.strip(), charset=charset, chunk_delay=pause)


def recordings() -> list[Recording]:
    return [Recording(str(path.relative_to(ROOT).with_suffix("")), json.loads(path.read_text()))
            for path in sorted(ROOT.glob("*/*.json"))]


@dataclass
class Answer:
    """What an exchange means, in OpenAI terms."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[tuple[str, Any]] = field(default_factory=list)  # (name, parsed arguments)
    finish_reason: str | None = None
    usage: tuple[int, int, int, int, int] | None = None  # prompt, completion, cached, cache write, reasoning
    signatures: list[str] = field(default_factory=list)  # what must go back on the next turn
    error: tuple[int, str] | None = None  # status (0 inside a stream), the provider's message


# --- what the provider said ------------------------------------------------------------------------


def facts(recording: Recording) -> Answer:
    if recording.status >= 400:
        return Answer(error=(recording.status, _error_message(json.loads(recording.body))))
    reader = {"anthropic": _anthropic, "gemini": _gemini, "bedrock": _bedrock}.get(recording.provider, _openai)
    return reader(recording)


def _error_message(body: dict[str, Any]) -> str:
    error = body.get("error", body)
    return str(error.get("message") if isinstance(error, dict) else body.get("message"))


def sse_payloads(body: bytes) -> list[bytes]:
    events = body.replace(b"\r\n", b"\n").split(b"\n\n")
    out = []
    for event in events:
        lines = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if lines:
            out.append(b"\n".join(lines))
    return out


def _anthropic(recording: Recording) -> Answer:
    if recording.stream:
        events = [json.loads(p) for p in sse_payloads(recording.body)]
    else:
        message = json.loads(recording.body)
        events = [{"type": "message_start", "message": {**message, "content": []}}]
        for i, block in enumerate(message["content"]):
            events.append({"type": "content_block_start", "index": i, "content_block": block})
        events.append({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"]}})
    answer, usage, inputs = Answer(), {}, {}
    blocks: dict[int, dict[str, Any]] = {}
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            usage.update(event["message"]["usage"])
        elif kind == "content_block_start":
            blocks[event["index"]] = block = event["content_block"]
            answer.text += block.get("text", "") if block["type"] == "text" else ""
            answer.reasoning += block.get("thinking", "") if block["type"] == "thinking" else ""
            if block["type"] == "thinking" and block.get("signature"):
                answer.signatures.append(block["signature"])
            if block["type"] == "redacted_thinking":
                answer.signatures.append(block["data"])
        elif kind == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                answer.text += delta["text"]
            elif delta["type"] == "thinking_delta":
                answer.reasoning += delta["thinking"]
            elif delta["type"] == "signature_delta":
                answer.signatures.append(delta["signature"])
            elif delta["type"] == "input_json_delta":
                inputs[event["index"]] = inputs.get(event["index"], "") + delta["partial_json"]
        elif kind == "message_delta":
            usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            answer.finish_reason = ANTHROPIC_STOPS[event["delta"]["stop_reason"]]
        elif kind == "error":
            answer.error = (0, event["error"]["message"])
    for index, block in sorted(blocks.items()):
        if block["type"] == "tool_use":
            arguments = json.loads(inputs[index]) if inputs.get(index) else block.get("input") or {}
            answer.tool_calls.append((block["name"], arguments))
    read, write = usage.get("cache_read_input_tokens") or 0, usage.get("cache_creation_input_tokens") or 0
    answer.usage = (usage["input_tokens"] + read + write, usage["output_tokens"], read, write, 0)
    return answer


def _gemini(recording: Recording) -> Answer:
    events = [json.loads(p) for p in sse_payloads(recording.body)] if recording.stream \
        else [json.loads(recording.body)]
    answer, metadata, reason = Answer(), {}, None
    for event in events:
        metadata = event.get("usageMetadata") or metadata
        if not event.get("candidates") and (event.get("promptFeedback") or {}).get("blockReason"):
            reason = "BLOCKED_PROMPT"
        for candidate in event.get("candidates") or ():
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "text" in part:
                    if part.get("thought"):
                        answer.reasoning += part["text"]
                    else:
                        answer.text += part["text"]
                if "functionCall" in part:
                    answer.tool_calls.append((part["functionCall"]["name"], part["functionCall"].get("args") or {}))
                    if part.get("thoughtSignature"):
                        answer.signatures.append(part["thoughtSignature"])
            reason = candidate.get("finishReason") or reason
    if reason == "BLOCKED_PROMPT" or reason in GEMINI_BLOCKS:
        answer.finish_reason = "content_filter"
    elif reason == "MAX_TOKENS":
        answer.finish_reason = "length"
    else:
        answer.finish_reason = "tool_calls" if answer.tool_calls else "stop"
    thoughts = metadata.get("thoughtsTokenCount") or 0
    answer.usage = ((metadata.get("promptTokenCount") or 0) + (metadata.get("toolUsePromptTokenCount") or 0),
                    (metadata.get("candidatesTokenCount") or 0) + thoughts,
                    metadata.get("cachedContentTokenCount") or 0, 0, thoughts)
    return answer


def bedrock_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(body)
    return [(str(m.headers[":event-type"]), json.loads(m.payload)) for m in buffer]


def _bedrock(recording: Recording) -> Answer:
    if recording.stream:
        events = bedrock_events(recording.body)
    else:
        data = json.loads(recording.body)
        events = [("contentBlockDelta", {"contentBlockIndex": i, "delta": block})
                  for i, block in enumerate(data["output"]["message"]["content"])]
        events += [("messageStop", data), ("metadata", data)]
    answer, inputs, names = Answer(), {}, {}
    for kind, event in events:
        index = event.get("contentBlockIndex", -1)
        delta = event.get("delta") or event.get("start") or {}
        answer.text += delta.get("text", "")
        reasoning = delta.get("reasoningContent") or {}
        signed = reasoning.get("reasoningText") or reasoning  # complete answers nest text and signature
        answer.reasoning += signed.get("text", "")
        if signed.get("signature"):
            answer.signatures.append(signed["signature"])
        use = delta.get("toolUse") or {}
        if "name" in use:
            names[index] = use["name"]
        if isinstance(use.get("input"), dict):
            inputs[index] = json.dumps(use["input"])
        elif use.get("input"):
            inputs[index] = inputs.get(index, "") + use["input"]
        if kind == "messageStop":
            answer.finish_reason = BEDROCK_STOPS[event["stopReason"]]
        if kind == "metadata":
            usage = event["usage"]
            read, write = usage.get("cacheReadInputTokens") or 0, usage.get("cacheWriteInputTokens") or 0
            answer.usage = (usage["inputTokens"] + read + write, usage["outputTokens"], read, write, 0)
    answer.tool_calls = [(names[i], json.loads(inputs.get(i) or "{}")) for i in sorted(names)]
    return answer


def _openai(recording: Recording) -> Answer:
    if recording.stream:
        return sse_answer(recording.body)
    data = json.loads(recording.body)
    message = data["choices"][0]["message"]
    answer = Answer(text=message.get("content") or "", finish_reason=data["choices"][0]["finish_reason"],
                    reasoning=message.get("reasoning_content") or "")
    answer.tool_calls = [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                         for c in message.get("tool_calls") or ()]
    answer.usage = _openai_usage(data["usage"])
    return answer


def _openai_usage(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return (usage["prompt_tokens"], usage["completion_tokens"], prompt.get("cached_tokens") or 0,
            prompt.get("cache_write_tokens") or 0, completion.get("reasoning_tokens") or 0)


# --- what the client read --------------------------------------------------------------------------


def sse_answer(body: bytes) -> Answer:
    """An OpenAI SSE stream (the gateway's output, or an OpenAI-compatible provider's) read as a client
    reads it."""
    answer = Answer()
    arguments: dict[int, list[str]] = {}
    for payload in sse_payloads(body):
        if payload == b"[DONE]":
            break
        chunk = json.loads(payload)
        if chunk.get("error"):
            answer.error = (0, _error_message(chunk))
            break
        if chunk.get("usage"):
            answer.usage = _openai_usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            answer.text += delta.get("content") or ""
            answer.reasoning += delta.get("reasoning_content") or ""
            answer.signatures += _signatures(delta)
            for call in delta.get("tool_calls") or ():
                if call.get("id"):
                    answer.tool_calls.append((call["function"]["name"], None))
                    arguments[call["index"]] = []
                arguments[call["index"]].append(call["function"].get("arguments") or "")
            answer.finish_reason = choice.get("finish_reason") or answer.finish_reason
    answer.tool_calls = [(name, json.loads("".join(arguments[i]) or "{}"))
                         for i, (name, _) in enumerate(answer.tool_calls)]
    return answer


def _signatures(message: dict[str, Any]) -> list[str]:
    found = []
    for block in message.get("thinking_blocks") or ():
        found.append(block.get("signature") or block.get("data"))
    for call in message.get("tool_calls") or ():
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if signature:
            found.append(signature)
    return found


def sdk_answer(completion: Any) -> Answer:
    """A `ChatCompletion` from the official SDK."""
    choice = completion.choices[0]
    message = choice.message.model_dump()
    answer = Answer(text=message.get("content") or "", reasoning=message.get("reasoning_content") or "",
                    finish_reason=choice.finish_reason, signatures=_signatures(message))
    answer.tool_calls = [(c.function.name, json.loads(c.function.arguments)) for c in message_calls(choice)]
    if completion.usage is not None:
        answer.usage = _openai_usage(completion.usage.model_dump())
    return answer


def sdk_stream_answer(chunks: list[Any]) -> Answer:
    """The chunks the official SDK yielded, read back as SSE would be."""
    body = b"".join(b"data: " + chunk.model_dump_json(exclude_unset=True).encode() + b"\n\n" for chunk in chunks)
    return sse_answer(body)


def message_calls(choice: Any) -> list[Any]:
    return list(choice.message.tool_calls or ())
