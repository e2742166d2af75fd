"""Canonical OpenAI Chat Completions SSE → the Responses event stream.

The sequence is the one the official SDKs' accumulators and Codex parse: `response.created` and
`response.in_progress` (the full response object, status in_progress, no output), then per output
item `response.output_item.added` … `response.output_item.done` with its content events in between,
and always one terminal event with the full final object: `response.completed`, `response.incomplete`
(`finish_reason` length / content_filter) or `response.failed` (a failure after the stream began).
Every event carries its `type` (also as the SSE `event:` line) and a `sequence_number` from 0.

Items open in the order their content arrives: reasoning (summary parts when the request asks for
summaries; one part per thinking block, whose signature closes it), the assistant message (an
`output_text` part, a `refusal` part), and tool calls. Reasoning and message items close when another
item opens; tool calls stay open until the model's turn ends, since their argument deltas may come
interleaved with anything else. Custom tool calls cannot split their text out of half-received JSON
arguments, so their input goes out whole when they close. Gemini thought signatures of the calls go
out last, on a reasoning item of their own (see reasoning.py)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.dialects.responses.errors import failure_object, gateway_error_of
from gateway.dialects.responses.reasoning import encode_reasoning
from gateway.dialects.responses.response import (
    ItemIds,
    base_response,
    keeps_reasoning,
    status_of,
    text_part,
    thought_signature,
    tool_map,
    usage_object,
    wants_summaries,
)
from gateway.dialects.responses.tools import ToolMap
from gateway.dialects.text_deltas import TextDeltas, TextRun
from gateway.errors import GatewayError
from gateway.ids import UniqueIds

new_response_id = UniqueIds("resp_", random_bytes=12, width=8)


class _Reasoning:
    def __init__(self, item_id: str, index: int) -> None:
        self.id, self.index = item_id, index
        self.parts: list[str] = []
        self.current: list[str] | None = None
        self.blocks: list[dict[str, Any]] = []


class _Message:
    def __init__(self, item_id: str, index: int) -> None:
        self.id, self.index = item_id, index
        self.parts: list[dict[str, Any]] = []
        self.kind: str | None = None  # the open part's type (output_text, refusal), None between parts
        self.pieces: list[str] = []  # the open part's text
        # What the open output_text part's delta events begin with, up to the delta's JSON string.
        self.delta_head = b""


# The events of an answer's text, written from templates (what a dict encoded per event would give,
# in the same field order), since they are most of a stream: the message item's start, its
# output_text part's start, each delta (the head, then the delta's JSON string and the end), the
# part's end. Ids are ASCII, so they go in as they are.
_MESSAGE_ADDED = (b'event: response.output_item.added\ndata: {"output_index":%d,"item":{"id":"%s","type":"message",'
                  b'"status":"in_progress","role":"assistant","content":[]},"type":"response.output_item.added",'
                  b'"sequence_number":%d}\n\n')
_TEXT_PART_ADDED = (b'event: response.content_part.added\ndata: {"item_id":"%s","output_index":%d,"content_index":%d,'
                    b'"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]},'
                    b'"type":"response.content_part.added","sequence_number":%d}\n\n')
_TEXT_DELTA_HEAD = (b'event: response.output_text.delta\ndata: {"item_id":"%s","output_index":%d,"content_index":%d,'
                    b'"delta":')
_TEXT_DELTA_END = b',"logprobs":[],"type":"response.output_text.delta","sequence_number":%d}\n\n'
_TEXT_PART_DONE = (b'event: response.output_text.done\ndata: {"item_id":"%s","output_index":%d,"content_index":%d,'
                   b'"text":%s,"logprobs":[],"type":"response.output_text.done","sequence_number":%d}\n\n'
                   b'event: response.content_part.done\ndata: {"item_id":"%s","output_index":%d,"content_index":%d,'
                   b'"part":{"type":"output_text","text":%s,"annotations":[],"logprobs":[]},'
                   b'"type":"response.content_part.done","sequence_number":%d}\n\n')


class _Call:
    def __init__(self, item: dict[str, Any], index: int) -> None:
        self.item, self.index = item, index
        self.arguments: list[str] = []
        self.signature: str | None = None


class StreamEncoder:
    def __init__(self, request: dict[str, Any], *, response_id: str | None = None,
                 created_at: int | None = None) -> None:
        self.response_id = response_id or new_response_id()
        self._request = request
        created_at = int(time.time()) if created_at is None else created_at
        # Every response object of the stream is this one with its status, model, output (and at the
        # end usage) set: the request's echoed fields are read once.
        self._base = base_response(request, response_id=self.response_id, created_at=created_at, model="",
                                   status="in_progress")
        self._names: ToolMap | None = None  # the request's tools, read at the first tool call
        self._keep = keeps_reasoning(request)
        self._summaries = wants_summaries(request)
        self._ids = ItemIds(self.response_id)
        self._model = str(request.get("model") or "")
        self._pending = b""
        self._deltas = TextDeltas()
        self._out: list[bytes] = []
        self._seq = 0
        self._output: list[dict[str, Any]] = []
        self._open: _Reasoning | _Message | None = None
        self._writing: _Message | None = None  # the open message while its open part is output_text
        self._calls: dict[int, _Call] = {}
        self._finish_reason: object = None
        self._usage: dict[str, Any] | None = None
        self._final: dict[str, Any] | None = None
        self.started = False

    # --- the contract ---
    @property
    def ended(self) -> bool:
        """True once the terminal event went out: later input is ignored."""
        return self._final is not None

    def feed(self, data: bytes) -> bytes:
        if self._final is not None:
            return b""
        if self._writing is not None and not self._pending:
            # A live stream's usual read: one more piece of the answer's text (see TextDeltas.one).
            found = self._deltas.one(data)
            if found is not None:
                string, text = found
                return self._text_delta(self._writing, text, string)
        events = (self._pending + data if self._pending else data).split(b"\n\n")
        self._pending = events.pop()  # the unfinished last event
        # Most events are one more piece of the answer's text, shaped like the one before: taken a run
        # at a time, without a parse each (see gateway.dialects.text_deltas).
        at, count = 0, len(events)
        while at < count:
            run = self._deltas.run(events, at)
            if run.count:
                self._output_run(run)
                at += run.count
                continue
            self._event(events[at])
            at += 1
            if self.ended:
                self._pending = b""
                break
        return self._flush()

    def finish(self) -> bytes:
        if self._final is None and self._pending.strip():
            self._event(self._pending)
            self._pending = b""
        if self._final is None:
            self._complete()
        return self._flush()

    def fail(self, error: GatewayError) -> bytes:
        if self._final is None:
            self._fail(error)
        return self._flush()

    def final_response(self) -> dict[str, Any]:
        """The object of the terminal event (what the gateway stores); before the end, the response
        as it stands."""
        if self._final is not None:
            return self._final
        snapshot = self._response("in_progress")
        snapshot["usage"] = usage_object(self._usage)
        return snapshot

    # --- canonical events ---
    def _event(self, raw: bytes) -> None:
        lines = [raw] if raw.find(b"\n") < 0 else raw.split(b"\n")  # (one data line, as a rule)
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                # The canonical end: the terminal event goes out with this read, not once the
                # provider's stream has closed.
                self._complete()
                return
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict) and self._chunk(chunk):
                self._deltas.learn(raw, chunk)

    def _chunk(self, chunk: dict[str, Any]) -> bool:
        """Whether the chunk had answer text."""
        if "error" in chunk and "choices" not in chunk:
            self._fail(gateway_error_of(chunk["error"]))
            return False
        model = chunk.get("model")
        if model and isinstance(model, str):
            self._model = model
        if not self.started:
            self._begin()
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        text = False
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta:
                text = self._delta(delta) or text
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return text

    def _delta(self, delta: dict[str, Any]) -> bool:
        """Whether the delta had answer text."""
        if delta.get("reasoning_content"):
            self._reasoning_text(delta["reasoning_content"])
        if delta.get("thinking_blocks"):
            self._thinking_blocks(delta["thinking_blocks"])
        text = delta.get("content")
        if text:
            self._output_text(text)
        if delta.get("refusal"):
            self._refusal(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            self._call_delta(call)
        return bool(text)

    # --- items ---
    def _reasoning(self) -> _Reasoning:
        if not isinstance(self._open, _Reasoning):
            self._close_open("completed")
            self._open = _Reasoning(self._ids("rs"), len(self._output))
            self._output.append({})
            self._emit("response.output_item.added", output_index=self._open.index,
                       item={"id": self._open.id, "type": "reasoning", "summary": []})
        return self._open

    def _reasoning_text(self, text: str) -> None:
        item = self._reasoning()
        if not self._summaries:  # kept for the thinking block only
            item.current = [*(item.current or ()), text]
            return
        if item.current is None:
            item.current = []
            self._emit("response.reasoning_summary_part.added", item_id=item.id, output_index=item.index,
                       summary_index=len(item.parts), part={"type": "summary_text", "text": ""})
        item.current.append(text)
        self._emit("response.reasoning_summary_text.delta", item_id=item.id, output_index=item.index,
                   summary_index=len(item.parts), delta=text)

    def _thinking_blocks(self, blocks: list[Any]) -> None:
        item = self._reasoning()
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "thinking" and not block.get("thinking"):
                # The block's text came as reasoning deltas: its signature closes that summary part.
                block = {**block, "thinking": "".join(item.current or ())}
            item.blocks.append(block)
            self._close_summary_part(item)

    def _close_summary_part(self, item: _Reasoning) -> None:
        if item.current is None or not self._summaries:
            item.current = None
            return
        text = "".join(item.current)
        index = len(item.parts)
        self._emit("response.reasoning_summary_text.done", item_id=item.id, output_index=item.index,
                   summary_index=index, text=text)
        self._emit("response.reasoning_summary_part.done", item_id=item.id, output_index=item.index,
                   summary_index=index, part={"type": "summary_text", "text": text})
        item.parts.append(text)
        item.current = None

    def _open_part(self, kind: str) -> _Message:
        """The message item with a part of `kind` (output_text, refusal) open: opened as needed."""
        item = self._open
        if not isinstance(item, _Message):
            self._close_open("completed")
            item = self._open = _Message(self._ids("msg"), len(self._output))
            self._output.append({})
            self._out.append(_MESSAGE_ADDED % (item.index, item.id.encode(), self._seq))
            self._seq += 1
        if item.kind != kind:
            self._close_part(item)
            item.kind, item.pieces = kind, []
            if kind == "output_text":
                ids = (item.id.encode(), item.index, len(item.parts))
                self._out.append(_TEXT_PART_ADDED % (*ids, self._seq))
                self._seq += 1
                item.delta_head = _TEXT_DELTA_HEAD % ids
                self._writing = item
            else:
                self._emit("response.content_part.added", item_id=item.id, output_index=item.index,
                           content_index=len(item.parts), part={"type": "refusal", "refusal": ""})
        return item

    def _refusal(self, text: str) -> None:
        item = self._open_part("refusal")
        item.pieces.append(text)
        self._emit("response.refusal.delta", item_id=item.id, output_index=item.index,
                   content_index=len(item.parts), delta=text)

    def _output_text(self, text: str) -> None:
        """A piece of the answer's text (from a chunk that was parsed)."""
        item = self._writing or self._open_part("output_text")
        self._out.append(self._text_delta(item, text, orjson.dumps(text)))

    def _text_delta(self, item: _Message, text: str, string: bytes) -> bytes:
        """The output_text.delta event of `text` (`string`: its JSON string), kept for the part's end."""
        item.pieces.append(text)
        seq, self._seq = self._seq, self._seq + 1
        return item.delta_head + string + _TEXT_DELTA_END % seq

    def _output_run(self, run: TextRun) -> None:
        """Pieces of the answer's text from chunks that were not parsed (the stream's most frequent
        events), written all at once."""
        item = self._writing or self._open_part("output_text")
        item.pieces += run.texts
        self._out.append(run.write(item.delta_head, _TEXT_DELTA_END, self._seq))
        self._seq += run.count

    def _close_part(self, item: _Message) -> None:
        kind = item.kind
        if kind is None:
            return
        text, index = "".join(item.pieces), len(item.parts)
        if kind == "output_text":
            part = text_part(text)
            ids, string = (item.id.encode(), item.index, index), orjson.dumps(text)
            self._out.append(_TEXT_PART_DONE % (*ids, string, self._seq, *ids, string, self._seq + 1))
            self._seq += 2
        else:
            part = {"type": "refusal", "refusal": text}
            self._emit("response.refusal.done", item_id=item.id, output_index=item.index,
                       content_index=index, refusal=text)
            self._emit("response.content_part.done", item_id=item.id, output_index=item.index,
                       content_index=index, part=part)
        item.parts.append(part)
        item.kind, item.pieces = None, []
        self._writing = None

    def _call_delta(self, delta: dict[str, Any]) -> None:
        position = delta.get("index", 0)
        function = delta.get("function") or {}
        call = self._calls.get(position)
        if call is None:
            self._close_open("completed")
            item = self._tools().call_item(str(function.get("name") or ""), "")
            item_id = self._ids("fc")
            item["id"] = item_id.replace("fc_", "ctc_", 1) if item["type"] == "custom_tool_call" else item_id
            item["call_id"] = delta.get("id") or item["id"]
            item["status"] = "in_progress"
            call = self._calls[position] = _Call(item, len(self._output))
            self._output.append({})
            self._emit("response.output_item.added", output_index=call.index, item=dict(call.item))
        call.signature = thought_signature(delta) or call.signature
        piece = function.get("arguments")
        if piece:
            call.arguments.append(piece)
            if call.item["type"] == "function_call":
                self._emit("response.function_call_arguments.delta", item_id=call.item["id"],
                           output_index=call.index, delta=piece)

    def _close_open(self, status: str) -> None:
        item, self._open = self._open, None
        if isinstance(item, _Reasoning):
            self._close_summary_part(item)
            done: dict[str, Any] = {"id": item.id, "type": "reasoning",
                                    "summary": [{"type": "summary_text", "text": text} for text in item.parts]}
            if item.blocks and self._keep:
                done["encrypted_content"] = encode_reasoning(item.blocks)
        elif isinstance(item, _Message):
            self._close_part(item)
            done = {"id": item.id, "type": "message", "status": status, "role": "assistant",
                    "content": item.parts}
        else:
            return
        self._output[item.index] = done
        self._emit("response.output_item.done", output_index=item.index, item=done)

    def _close_calls(self, status: str = "completed") -> None:
        if not self._calls:
            return
        signatures = {call.item["call_id"]: call.signature for call in self._calls.values() if call.signature}
        for call in sorted(self._calls.values(), key=lambda c: c.index):
            item, arguments = call.item, "".join(call.arguments)
            full = self._tools().call_item(self._canonical_name(item), arguments)
            item_id = item["id"]
            if item["type"] == "custom_tool_call":
                self._emit("response.custom_tool_call_input.delta", item_id=item_id, output_index=call.index,
                           delta=full["input"])
                self._emit("response.custom_tool_call_input.done", item_id=item_id, output_index=call.index,
                           input=full["input"])
            else:
                self._emit("response.function_call_arguments.done", item_id=item_id, output_index=call.index,
                           arguments=arguments)
            done = {**item, **full, "id": item_id, "call_id": item["call_id"], "status": status}
            self._output[call.index] = done
            self._emit("response.output_item.done", output_index=call.index, item=done)
        self._calls.clear()
        if signatures and self._keep:
            # The signatures arrive with the calls, after the turn's reasoning item closed: a reasoning
            # item of their own carries them (see reasoning.py).
            carrier = {"id": self._ids("rs"), "type": "reasoning", "summary": [],
                       "encrypted_content": encode_reasoning([], signatures)}
            self._output.append(carrier)
            index = len(self._output) - 1
            self._emit("response.output_item.added", output_index=index, item={**carrier})
            self._emit("response.output_item.done", output_index=index, item=carrier)

    def _tools(self) -> ToolMap:
        if self._names is None:
            self._names = tool_map(self._request)
        return self._names

    def _canonical_name(self, item: dict[str, Any]) -> str:
        namespace = item.get("namespace")
        return f"{namespace}__{item['name']}" if namespace else str(item["name"])

    def _close_all(self, status: str) -> None:
        self._close_open(status)
        self._close_calls(status)

    # --- the response ---
    def _response(self, status: str) -> dict[str, Any]:
        # (Keys already in the base keep their place, so the object reads the same as base_response's.)
        return {**self._base, "status": status, "model": self._model,
                "output": [item for item in self._output if item]}

    def _begin(self) -> None:
        if self.started:
            return
        self.started = True
        # Both events carry the same object: encoded once.
        response = orjson.dumps(self._response("in_progress"))
        for kind in (b"response.created", b"response.in_progress"):
            self._out.append(b'event: %s\ndata: {"response":%s,"type":"%s","sequence_number":%d}\n\n'
                             % (kind, response, kind, self._seq))
            self._seq += 1

    def _complete(self) -> None:
        """The canonical stream ended (`[DONE]`, or its close): the terminal event."""
        self._begin()
        status, incomplete = status_of(self._finish_reason)
        self._close_all("incomplete" if status == "incomplete" else "completed")
        final = self._response(status)
        final["incomplete_details"] = incomplete
        final["usage"] = usage_object(self._usage)
        self._end(f"response.{status}", final)

    def _fail(self, error: GatewayError) -> None:
        self._begin()
        self._close_all("incomplete")
        final = self._response("failed")
        final["error"] = failure_object(error)
        final["usage"] = usage_object(self._usage)
        self._end("response.failed", final)

    def _end(self, kind: str, final: dict[str, Any]) -> None:
        self._final = final
        self._emit(kind, response=final)

    def _emit(self, kind: str, **fields: Any) -> None:
        fields["type"] = kind
        fields["sequence_number"] = self._seq
        self._seq += 1
        self._out.append(b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(fields)))

    def _flush(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out
