"""Bedrock ConverseStream → OpenAI chat.completion.chunk SSE.

The body is AWS event-stream binary framing (`application/vnd.amazon.eventstream`), decoded by
botocore's `EventStreamBuffer` (which checks both CRCs), so frames may arrive split anywhere.

Events: `messageStart` → the role chunk; `contentBlockStart` with `toolUse` → a tool call's first
fragment (index counted over tool calls only, id and name); `contentBlockDelta` → text or tool-call
argument fragments, forwarded byte for byte (a tool call that got no argument bytes at all gets
`"{}"` at `contentBlockStop`, so its arguments parse); `messageStop` → the finish chunk;
`metadata` → usage (and the usage chunk if the client asked for it). Reasoning text deltas are
`delta.reasoning_content`; a reasoning block's signature goes out at its `contentBlockStop` as
`delta.thinking_blocks` (a redacted block whole, as it arrives). Other unknown events are dropped.

End of stream: `done` is set, and `data: [DONE]` emitted, once both `messageStop` and `metadata`
arrived (Bedrock sends metadata last). A stream that reaches EOF after `messageStop` without
`metadata` is also taken as complete by `finish()` (no usage then); one that ends before
`messageStop` was cut, so `finish()` adds nothing and `done` stays False.

Exception frames (`:message-type: exception`: throttlingException, validationException,
modelStreamErrorException, serviceUnavailableException, internalServerException…) and error frames
raise the mapped GatewayError from `feed()` — at once if nothing was emitted yet, else on the call
after the one that returns the output preceding the error in the same read (see `_fail`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.context import Usage
from gateway.errors import GatewayError, InternalError, UpstreamError, UpstreamProtocolError
from gateway.providers.bedrock import bedrock_error, finish_reason, new_id, usage_from
from gateway.providers.sse import DONE


class BedrockStream:
    __slots__ = ("_buffer", "_emitted", "_head", "_parser_error", "_pending", "_role_sent", "_signatures", "_stopped",
                 "_tail_null", "_tool_args", "_tools", "_usage_prefix", "_wants_usage", "done", "finish_reason",
                 "usage")

    def __init__(self, client_wants_usage: bool, *, model: str = "bedrock", response_id: str | None = None,
                 created: int | None = None) -> None:
        try:
            from botocore.eventstream import EventStreamBuffer, ParserError
        except ImportError:  # pragma: no cover - the provider refuses to load without botocore
            raise InternalError("Bedrock streaming needs botocore (the 'bedrock' extra).") from None
        self._buffer = EventStreamBuffer()
        self._parser_error: type[Exception] = ParserError
        self._wants_usage = client_wants_usage
        envelope = (b'{"id":' + orjson.dumps(response_id or new_id()) + b',"object":"chat.completion.chunk",'
                    b'"created":' + str(int(time.time()) if created is None else created).encode()
                    + b',"model":' + orjson.dumps(model) + b',')
        self._head = b"data: " + envelope + b'"choices":[{"index":0,"delta":'
        self._tail_null = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self._usage_prefix = b"data: " + envelope + b'"choices":[],"usage":'
        self._tools: dict[int, int] = {}  # contentBlockIndex → OpenAI tool_calls index
        self._tool_args: dict[int, bool] = {}  # contentBlockIndex → got argument bytes
        self._signatures: dict[int, str] = {}  # contentBlockIndex → reasoning signature so far
        self._role_sent = False
        self._stopped = False
        self._emitted = False  # an earlier feed() returned output (the client may have it)
        self._pending: GatewayError | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self._pending is not None:
            raise self._pending
        self._buffer.add_data(data)
        out: list[bytes] = []
        try:
            for message in self._buffer:
                if not self.done:
                    out.append(self._message(message.headers, message.payload))
        except self._parser_error as exc:
            error: GatewayError = UpstreamProtocolError(f"Bedrock sent a malformed event-stream frame: {exc}")
            return self._fail(error, out)
        except GatewayError as exc:
            return self._fail(exc, out)
        result = b"".join(out)
        self._emitted = self._emitted or bool(result)
        return result

    def _fail(self, error: GatewayError, out: list[bytes]) -> bytes:
        """An error frame arrived. Before any output went out, raise at once (the router may still
        retry or fall back). Mid-stream, first hand over the output that preceded the error in this
        same read, and raise on the next call, so the client gets every token before the error."""
        result = b"".join(out)
        if not self._emitted or not result:
            raise error
        self._pending = error
        return result

    def finish(self) -> bytes:
        if self._pending is not None:
            raise self._pending
        if self.done or not self._stopped:
            return b""
        self.done = True  # messageStop arrived but metadata never did: complete, usage unknown
        return DONE

    # -- one decoded frame ---------------------------------------------------------------------

    def _message(self, headers: dict[str, Any], payload: bytes) -> bytes:
        kind = headers.get(":message-type", "event")
        if kind == "exception":
            body = _json(payload)
            raise bedrock_error(str(headers.get(":exception-type") or "exception"),
                                str(body.get("message") or body.get("Message") or "Bedrock stream exception"))
        if kind == "error":
            raise UpstreamError(str(headers.get(":error-message") or "Bedrock stream error"), status=502,
                                code=str(headers.get(":error-code") or "") or None, provider="bedrock")
        event = headers.get(":event-type")
        if event == "contentBlockDelta":
            return self._delta(_json(payload))
        if event == "messageStart":
            return self._chunk({"role": "assistant", "content": ""})
        if event == "contentBlockStart":
            body = _json(payload)
            use = (body.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                return self._tool_start(int(body.get("contentBlockIndex") or 0), use)
            return b""
        if event == "contentBlockStop":
            block = int(_json(payload).get("contentBlockIndex") or 0)
            if block in self._signatures:
                signed = {"type": "thinking", "thinking": "", "signature": self._signatures.pop(block)}
                return self._chunk({"thinking_blocks": [signed]})
            if block in self._tools and not self._tool_args[block]:
                return self._tool_fragment(block, "{}")
            return b""
        if event == "messageStop":
            self.finish_reason = finish_reason(_json(payload).get("stopReason"))
            self._stopped = True
            out = self._chunk({}, self.finish_reason)
            return out + self._end() if self.usage is not None else out
        if event == "metadata":
            self.usage = usage_from(_json(payload).get("usage")) or Usage()
            return self._end() if self._stopped else b""
        return b""

    def _delta(self, body: dict[str, Any]) -> bytes:
        delta = body.get("delta") or {}
        if "text" in delta:
            text = delta["text"]
            return self._chunk({"content": text}) if text else b""
        use = delta.get("toolUse")
        if isinstance(use, dict):
            block = int(body.get("contentBlockIndex") or 0)
            out = b"" if block in self._tools else self._tool_start(block, {})
            fragment = use.get("input") or ""
            if fragment:
                self._tool_args[block] = True
                out += self._tool_fragment(block, fragment)
            return out
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            return self._reasoning(int(body.get("contentBlockIndex") or 0), reasoning)
        return b""  # citations…: not part of the OpenAI chunk format

    def _reasoning(self, block: int, reasoning: dict[str, Any]) -> bytes:
        if reasoning.get("signature"):
            self._signatures[block] = self._signatures.get(block, "") + str(reasoning["signature"])
        if reasoning.get("redactedContent"):
            return self._chunk({"thinking_blocks": [{"type": "redacted_thinking",
                                                     "data": str(reasoning["redactedContent"])}]})
        text = reasoning.get("text")
        return self._chunk({"reasoning_content": text}) if text else b""

    def _tool_start(self, block: int, use: dict[str, Any]) -> bytes:
        index = self._tools[block] = len(self._tools)
        self._tool_args[block] = False
        call_id = use.get("toolUseId") or "call_" + new_id()[9:]
        return self._chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                            "function": {"name": use.get("name") or "", "arguments": ""}}]})

    def _tool_fragment(self, block: int, fragment: str) -> bytes:
        call = {"index": self._tools[block], "function": {"arguments": fragment}}
        return self._chunk({"tool_calls": [call]})

    def _end(self) -> bytes:
        self.done = True
        if self._wants_usage and self.usage is not None:
            return self._usage_prefix + orjson.dumps(self.usage.to_openai()) + b"}\n\n" + DONE
        return DONE

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", **delta}
        tail = self._tail_null if finish is None else (
            b',"logprobs":null,"finish_reason":' + orjson.dumps(finish) + b"}]}\n\n")
        return self._head + orjson.dumps(delta) + tail


def _json(payload: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("Bedrock sent an event whose payload is not JSON.") from None
    return data if isinstance(data, dict) else {}
