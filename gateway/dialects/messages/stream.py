"""Canonical OpenAI SSE → the Messages event stream, in the grammar Anthropic's SDKs parse.

`message_start` (then `ping`, as Anthropic sends) opens the message at the first canonical chunk;
each content block is `content_block_start`, its deltas, `content_block_stop`, one block at a time
with indexes from 0: reasoning text → a `thinking` block of `thinking_delta`s, closed by the
`signature_delta` that `delta.thinking_blocks` carries (a redacted block arrives whole); text → a
`text` block of `text_delta`s; each tool call → its own `tool_use` block whose arguments stream as
`input_json_delta`. At the canonical end (`[DONE]` or `finish`) the open block closes, then
`message_delta` (stop reason, usage) and `message_stop`.

Input tokens: the canonical usage comes only at the end, so `message_start` carries the estimate
given as `input_tokens` and `message_delta` the provider's figures (input, cache reads and writes,
output), which Anthropic's SDKs take over the start's. A stream without usage leaves the estimate.

A canonical `{"error": …}` event, or `fail`, closes the open block and ends the stream with an
`error` event (no `message_stop`: the message did not complete). Arguments of a tool call whose block
was already closed (a provider interleaving parallel calls) cannot be put in the grammar: the stream
ends with an error rather than with wrong arguments.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.messages.errors import canonical_error_event, error_event, stream_error_event
from gateway.dialects.messages.response import MESSAGE_IDS, TOOL_USE_IDS, as_dict, messages_usage, stop_reason
from gateway.dialects.messages.signatures import tool_use_id
from gateway.dialects.text_deltas import TextDeltas
from gateway.errors import GatewayError
from gateway.providers.sse import SSESplitter, event_data

_DONE = b"[DONE]"


# A text_delta event around its text's JSON string (as `event` writes it, for runs of text deltas).
_TEXT_DELTA_HEAD = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                    b'"delta":{"type":"text_delta","text":')
_TEXT_DELTA_END = b"}}\n\n"


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class StreamEncoder:
    """One canonical stream in, one Messages stream out (see the module docstring)."""

    def __init__(self, request: dict[str, Any], *, input_tokens: int = 0, message_id: str | None = None) -> None:
        self._request = request
        self._input_tokens = input_tokens
        self._id = message_id or MESSAGE_IDS()
        self._splitter = SSESplitter()
        self._deltas = TextDeltas()
        self.started = False
        self._ended = False
        self._next_index = 0
        self._open: str | None = None  # "thinking", "text" or "tool:<canonical index>"
        self._tools: set[int] = set()
        self._finish: str | None = None
        self._matched: object = None
        self._usage: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        if self._open == "text" and self._splitter.between_events:
            # A live stream's usual read: one more piece of the answer's text (see TextDeltas.one).
            found = self._deltas.one(data)
            if found is not None:
                return _TEXT_DELTA_HEAD % self._next_index + found[0] + _TEXT_DELTA_END
        out: list[bytes] = []
        events = self._splitter.feed(data)
        at, count = 0, len(events)
        while at < count and not self._ended:
            # Most events are one more piece of the answer's text, shaped like the one before: taken a
            # run at a time, without a parse each (see gateway.dialects.text_deltas).
            run = self._deltas.run(events, at)
            if run.count:
                out.append(self._ensure("text", {"type": "text", "text": ""}))
                out.append(run.write(_TEXT_DELTA_HEAD % self._next_index, _TEXT_DELTA_END))
                at += run.count
                continue
            raw = events[at]
            at += 1
            payload = event_data(raw)
            if payload is None:
                continue  # a comment or keep-alive
            if payload.strip() == _DONE:
                out.append(self._end())
                continue
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                out.append(self._error(error_event("api_error", "The provider sent an unreadable stream event.")))
                continue
            if not isinstance(chunk, dict):
                continue
            if "error" in chunk and not chunk.get("choices"):
                out.append(self._error(canonical_error_event(chunk)))
            else:
                out.append(self._chunk(chunk))
                if self._open == "text" and self._finish is None:  # (it may have been text alone)
                    self._deltas.learn(raw, chunk)
        return b"".join(out)

    def finish(self) -> bytes:
        rest = self._splitter.rest()  # a last event the provider did not end with a blank line
        out = self.feed(rest + b"\n\n") if rest and not self._ended else b""
        return out if self._ended else out + self._end()

    def fail(self, error: GatewayError) -> bytes:
        return b"" if self._ended else self._error(stream_error_event(error))

    # --- canonical chunk → events -------------------------------------------------------------

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        out = [] if self.started else [self._start()]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # a Messages request asks for one choice
            delta = choice.get("delta")
            if isinstance(delta, dict):
                out.append(self._delta(delta))
                if self._ended:
                    break
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._matched = choice.get("stop_reason")
        return b"".join(out)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        out: list[bytes] = []
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            out.append(self._ensure("thinking", {"type": "thinking", "thinking": "", "signature": ""}))
            out.append(self._block_delta({"type": "thinking_delta", "thinking": reasoning}))
        for block in delta.get("thinking_blocks") or ():
            if isinstance(block, dict):
                out.append(self._thinking_block(block))
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.append(self._ensure("text", {"type": "text", "text": ""}))
                out.append(self._block_delta({"type": "text_delta", "text": text}))
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                out.append(self._tool_call(call, position))
                if self._ended:
                    break
        return b"".join(out)

    def _thinking_block(self, block: dict[str, Any]) -> bytes:
        if block.get("type") == "redacted_thinking":
            out = self._close()
            out += self._open_block("redacted", {"type": "redacted_thinking", "data": str(block.get("data") or "")})
            return out + self._close()
        if block.get("type") != "thinking":
            return b""
        out = self._ensure("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if isinstance(block.get("thinking"), str) and block["thinking"]:
            out += self._block_delta({"type": "thinking_delta", "thinking": block["thinking"]})
        if isinstance(block.get("signature"), str) and block["signature"]:
            out += self._block_delta({"type": "signature_delta", "signature": block["signature"]})
        return out + self._close()

    def _tool_call(self, call: dict[str, Any], position: int) -> bytes:
        index = call["index"] if isinstance(call.get("index"), int) else position
        key = f"tool:{index}"
        function = as_dict(call.get("function"))
        out = b""
        if index not in self._tools:
            self._tools.add(index)
            out += self._close()
            out += self._open_block(key, {"type": "tool_use", "id": tool_use_id(call, call.get("id") or TOOL_USE_IDS()),
                                          "name": function.get("name") or "", "input": {}})
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            if self._open != key:
                return out + self._error(error_event(
                    "api_error", "The provider interleaved the arguments of parallel tool calls, which a "
                                 "Messages stream cannot carry."))
            out += self._block_delta({"type": "input_json_delta", "partial_json": arguments})
        return out

    # --- the grammar ---------------------------------------------------------------------------

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        message: dict[str, Any] = {
            "id": self._id, "type": "message", "role": "assistant", "model": self._request.get("model"),
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 0}}
        return event("message_start", {"type": "message_start", "message": message}) + event("ping", {"type": "ping"})

    def _ensure(self, key: str, block: dict[str, Any]) -> bytes:
        if self._open == key:
            return b""
        return self._close() + self._open_block(key, block)

    def _open_block(self, key: str, block: dict[str, Any]) -> bytes:
        self._open = key
        return event("content_block_start", {"type": "content_block_start", "index": self._next_index,
                                             "content_block": block})

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": self._next_index, "delta": delta})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        index, self._next_index = self._next_index, self._next_index + 1
        return event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _end(self) -> bytes:
        out = self._start() + self._close()
        self._ended = True
        reason, sequence = stop_reason({"finish_reason": self._finish, "stop_reason": self._matched}, self._request,
                                       tool_calls=bool(self._tools))
        usage = messages_usage(self._usage) if self._usage is not None else {"output_tokens": 0}
        out += event("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": usage})
        return out + event("message_stop", {"type": "message_stop"})

    def _error(self, error: bytes) -> bytes:
        out = self._close()
        self._ended = self.started = True
        return out + error
