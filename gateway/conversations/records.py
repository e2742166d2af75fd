"""What a stored response holds, and how it is serialised.

A record is the response object, the input items of the request that produced it (normalised to the
shapes `GET /v1/responses/{id}/input_items` lists: typed items with ids, message content as parts),
and the id of the previous response (the link a chain is rebuilt through). The value stored is
`<previous id>\\n<JSON>`, so a chain walk reads a record's link from its first bytes."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "custom_tool_call": "ctc",
              "custom_tool_call_output": "ctco", "reasoning": "rs"}


def owner_tag(owner: str) -> str:
    """The owner's records share this tag (the Redis Cluster slot); the owner string itself (a key's
    identity) is never written to the store."""
    return hashlib.sha256(owner.encode()).hexdigest()[:32]


def input_items(value: object, response_id: str) -> list[dict[str, Any]]:
    """A request's `input` as stored items: a string becomes one user message; type-less messages get
    their type; string contents become one text part; items without an id get one."""
    raw: list[Any] = [{"role": "user", "content": value}] if isinstance(value, str) else (
        value if isinstance(value, list) else [])
    suffix = response_id.removeprefix("resp_")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue
        item = dict(entry)
        kind = item.setdefault("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": content}]
            item.setdefault("status", "completed")
        if not item.get("id"):
            item["id"] = f"{_ID_PREFIX.get(str(kind), 'item')}_{suffix}in{i:03x}"
        out.append(item)
    return out


def encode(response: dict[str, Any], items: list[dict[str, Any]]) -> bytes:
    previous = response.get("previous_response_id") or ""
    return str(previous).encode() + b"\n" + orjson.dumps({"response": response, "input_items": items})


def decode(value: bytes) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads(value[value.index(b"\n") + 1:])
    return record


def turn_items(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The items one stored turn adds to a conversation: its input, then its output."""
    return [*record["input_items"], *record["response"].get("output", [])]
