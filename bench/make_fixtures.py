"""Writes the mock upstream's canned answers (run once; the outputs are committed):
mock/chat.json (a non-streaming chat completion) and mock/chat.sse (20 content chunks, a finish
chunk, a usage-only chunk and [DONE], as OpenAI sends with stream_options.include_usage)."""

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


if __name__ == "__main__":
    main()
