"""A fake OpenAI-compatible upstream: answers chat, completions and embeddings like the OpenAI API,
echoing the last user message, so tests can assert both what was sent and what came back."""

from __future__ import annotations

from typing import Any

from tests.support.servers import Recorded, Reply, sse_lines


def chat_completion(content: str, model: str, *, prompt_tokens: int = 5, finish: str = "stop",
                    cached: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": len(content.split()),
                             "total_tokens": prompt_tokens + len(content.split())}
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "logprobs": None, "finish_reason": finish}], "usage": usage}


def chat_chunks(content: str, model: str, *, include_usage: bool, prompt_tokens: int = 5) -> list[dict[str, Any]]:
    words = content.split(" ")
    usage_field: dict[str, Any] = {"usage": None} if include_usage else {}
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}], **usage_field}]
    for i, word in enumerate(words):
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word},
                                            "finish_reason": None}], **usage_field})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], **usage_field})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                                        "completion_tokens": len(words),
                                                        "total_tokens": prompt_tokens + len(words)}})
    return chunks


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    return str(body.get("prompt", ""))


def openai_echo(request: Recorded) -> Reply:
    """Default behaviour of an OpenAI-compatible server."""
    body = request.json
    model = body["model"]
    if request.path.endswith("/embeddings"):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return Reply(json={"object": "list", "model": model,
                           "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, float(i)]}
                                    for i in range(len(inputs))],
                           "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})
    text = "echo: " + last_user_text(body)
    if request.path.endswith("/completions") and not request.path.endswith("/chat/completions"):
        completion = {"id": "cmpl-fake", "object": "text_completion", "created": 1700000000, "model": model,
                      "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
        if body.get("stream"):
            chunk = {**completion, "usage": None}
            return Reply(chunks=sse_lines([chunk]))
        return Reply(json=completion)
    if body.get("stream"):
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        return Reply(chunks=sse_lines(chat_chunks(text, model, include_usage=include)))
    return Reply(json=chat_completion(text, model))


def openai_error(status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, json={"error": {"message": message, "type": type_, "param": None, "code": code}},
                 headers=headers or {})
