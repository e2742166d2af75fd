"""Writes the mock upstream's canned answers (run once; the outputs are committed):
mock/chat.json (a non-streaming chat completion) and mock/chat.sse (20 content chunks, a finish
chunk, a usage-only chunk and [DONE], as OpenAI sends with stream_options.include_usage); the same
answer as an Anthropic message (mock/messages.json, mock/messages.sse: message_start, ping, a text
block of 20 deltas, message_delta, message_stop) and as an OpenAI Responses response
(mock/responses.json, mock/responses.sse: created, in_progress, the message item with 20 deltas,
completed), for the passthrough scenarios of the Messages and Responses dialects."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent / "mock"
ID, CREATED, MODEL = "chatcmpl-bench0000000000000000000000", 1730000000, "bench-model"
WORDS = ("The quick brown fox jumps over the lazy dog while the benchmark keeps counting "
         "requests per second on one core").split()[:20]


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> str:
    body = {"id": ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
            "usage": usage}
    return "data: " + dumps(body) + "\n\n"


def main() -> None:
    HERE.mkdir(exist_ok=True)
    text = " ".join(WORDS)
    usage = {"prompt_tokens": 24, "completion_tokens": len(WORDS), "total_tokens": 24 + len(WORDS),
             "prompt_tokens_details": {"cached_tokens": 0}}
    completion = {"id": ID, "object": "chat.completion", "created": CREATED, "model": MODEL,
                  "system_fingerprint": "fp_bench",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                               "logprobs": None, "finish_reason": "stop"}],
                  "usage": usage}
    (HERE / "chat.json").write_text(dumps(completion) + "\n")
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": (" " if i else "") + w}) for i, w in enumerate(WORDS)]
    events.append(chunk({}, finish="stop"))
    events.append(chunk({}, usage=usage, choices=False))
    events.append("data: [DONE]\n\n")
    (HERE / "chat.sse").write_text("".join(events))
    write_messages(text)
    write_responses(text)


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {dumps(data)}\n\n"


def write_messages(text: str) -> None:
    usage = {"input_tokens": 24, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
             "output_tokens": len(WORDS)}
    message = {"id": "msg_bench0000000000000000", "type": "message", "role": "assistant", "model": MODEL,
               "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
               "usage": usage}
    (HERE / "messages.json").write_text(dumps(message) + "\n")
    events = [event("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}}),
        event("ping", {"type": "ping"}),
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})]
    events += [event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
        "type": "text_delta", "text": (" " if i else "") + w}}) for i, w in enumerate(WORDS)]
    events += [event("content_block_stop", {"type": "content_block_stop", "index": 0}),
               event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                          "stop_sequence": None},
                                       "usage": {"output_tokens": len(WORDS)}}),
               event("message_stop", {"type": "message_stop"})]
    (HERE / "messages.sse").write_text("".join(events))


def write_responses(text: str) -> None:
    item_id, rid = "msg_bench00000000000000000", "resp_bench00000000000000000"
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [part]}
    usage = {"input_tokens": 24, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": len(WORDS),
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 24 + len(WORDS)}
    response = {"id": rid, "object": "response", "created_at": CREATED, "status": "completed", "model": MODEL,
                "error": None, "incomplete_details": None, "output": [item], "usage": usage,
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    (HERE / "responses.json").write_text(dumps(response) + "\n")
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    seq = iter(range(1000))
    events = [event("response.created", {"type": "response.created", "sequence_number": next(seq),
                                         "response": started}),
              event("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq),
                                             "response": started}),
              event("response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                   "output_index": 0, "item": {**item, "status": "in_progress",
                                                                               "content": []}}),
              event("response.content_part.added", {"type": "response.content_part.added",
                                                    "sequence_number": next(seq), "item_id": item_id,
                                                    "output_index": 0, "content_index": 0,
                                                    "part": {**part, "text": ""}})]
    events += [event("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": next(seq),
                                                    "item_id": item_id, "output_index": 0, "content_index": 0,
                                                    "delta": (" " if i else "") + w}) for i, w in enumerate(WORDS)]
    events += [event("response.output_text.done", {"type": "response.output_text.done", "sequence_number": next(seq),
                                                   "item_id": item_id, "output_index": 0, "content_index": 0,
                                                   "text": text}),
               event("response.content_part.done", {"type": "response.content_part.done",
                                                    "sequence_number": next(seq), "item_id": item_id,
                                                    "output_index": 0, "content_index": 0, "part": part}),
               event("response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(seq),
                                                   "output_index": 0, "item": item}),
               event("response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                            "response": response})]
    (HERE / "responses.sse").write_text("".join(events))


if __name__ == "__main__":
    main()
