"""Messages conversation → canonical (OpenAI Chat Completions) messages.

- A user turn's `tool_result` blocks become `tool` messages, in their order, ahead of a user message
  holding the turn's other blocks (text, images, documents), also in their order: OpenAI wants the
  tool answers right after the assistant turn that called them.
- `is_error: true` on a tool result has no canonical field: the result's text is prefixed with
  `TOOL_ERROR_PREFIX`, which every model reads as the failure it was.
- Assistant `thinking`/`redacted_thinking` blocks become `thinking_blocks` (in order, so a provider
  that needs them back gets them signed) and `reasoning_content` (their joined text). A thinking block
  with an empty signature (what the encoders make of a provider's unsigned reasoning) stays text only:
  a provider that checks signatures would refuse it.
- `system` messages in the conversation (Claude Code sends them mid-conversation) stay where they are.
- `cache_control` stays on the part it marked; on a `tool_result` it marks the `tool` message.
- A Gemini thought signature carried in a `tool_use` id (signatures.py) goes back to
  `extra_content.google.thought_signature`; the id, there and in the `tool_result`, loses it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.dialects.messages.checks import Untranslatable, array, invalid, missing, obj, string
from gateway.dialects.messages.signatures import split_tool_use_id

TOOL_ERROR_PREFIX = "Error: "
_ROLES = ("user", "assistant", "system")


def convert_messages(raw: object, notes: Untranslatable) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, message in enumerate(array(raw, "messages")):
        where = f"messages[{i}]"
        message = obj(message, where)
        role = message.get("role")
        if role is None:
            raise missing(f"{where}.role")
        if role not in _ROLES:
            raise invalid(f"{where}.role", "Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise missing(f"{where}.content")
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif role == "user":
            out.extend(_user_turn(array(content, f"{where}.content"), where, notes))
        elif role == "assistant":
            out.append(_assistant_turn(array(content, f"{where}.content"), where, notes))
        else:
            out.append({"role": "system", "content": _parts(array(content, f"{where}.content"), f"{where}.content",
                                                             notes)})
    return out


def system_message(raw: object, notes: Untranslatable) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        return {"role": "system", "content": raw}
    blocks = array(raw, "system")
    for k, block in enumerate(blocks):
        if obj(block, f"system[{k}]").get("type") != "text":
            raise invalid(f"system[{k}].type", "Input should be 'text'")
    parts = _parts(blocks, "system", notes)
    return {"role": "system", "content": parts} if parts else None


def _user_turn(blocks: list[Any], where: str, notes: Untranslatable) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    others: list[Any] = []
    for k, block in enumerate(blocks):
        at = f"{where}.content[{k}]"
        if _kind(block, at) == "tool_result":
            tools.append(_tool_message(block, at, notes))
        else:
            others.append((k, block))
    out = tools
    if others or not tools:
        parts = [p for k, block in others for p in _part(block, f"{where}.content[{k}]", notes)]
        out.append({"role": "user", "content": _compact(parts)})
    return out


def _tool_message(block: dict[str, Any], at: str, notes: Untranslatable) -> dict[str, Any]:
    if "tool_use_id" not in block:
        raise missing(f"{at}.tool_use_id")
    call_id, _ = split_tool_use_id(string(block["tool_use_id"], f"{at}.tool_use_id"))
    content = block.get("content", "")
    if isinstance(content, str):
        parts: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    else:
        parts = _parts(array(content, f"{at}.content"), f"{at}.content", notes)
    if block.get("is_error") is True:
        if parts and parts[0]["type"] == "text":
            parts[0] = {**parts[0], "text": TOOL_ERROR_PREFIX + parts[0]["text"]}
        else:
            parts.insert(0, {"type": "text", "text": TOOL_ERROR_PREFIX.rstrip()})
    message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": _compact(parts)}
    if "cache_control" in block:
        message["cache_control"] = block["cache_control"]
    return message


def _assistant_turn(blocks: list[Any], where: str, notes: Untranslatable) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    texts: list[str] = []
    for k, block in enumerate(blocks):
        at = f"{where}.content[{k}]"
        kind = _kind(block, at)
        if kind == "text":
            parts.extend(_part(block, at, notes))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind == "thinking":
            text = string(block.get("thinking"), f"{at}.thinking")
            signature = string(block.get("signature"), f"{at}.signature")
            if signature:  # unsigned reasoning (from a provider without signatures) is only text to send back
                thinking.append({"type": "thinking", "thinking": text, "signature": signature})
            texts.append(text)
        elif kind == "redacted_thinking":
            thinking.append({"type": "redacted_thinking", "data": string(block.get("data"), f"{at}.data")})
        else:
            notes.note(f"{at}.type", f"a '{kind}' block")
    message: dict[str, Any] = {"role": "assistant", "content": _compact(parts) if parts else None}
    if calls:
        message["tool_calls"] = calls
    elif not parts:
        message["content"] = ""  # a turn of thinking alone still needs content in the canonical form
    if texts:
        message["reasoning_content"] = "".join(texts)
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def _tool_call(block: dict[str, Any], at: str) -> dict[str, Any]:
    for field in ("id", "name", "input"):
        if field not in block:
            raise missing(f"{at}.{field}")
    arguments = obj(block["input"], f"{at}.input")
    call_id, signature = split_tool_use_id(string(block["id"], f"{at}.id"))
    call: dict[str, Any] = {"id": call_id, "type": "function",
                            "function": {"name": string(block["name"], f"{at}.name"), "arguments": _json(arguments)}}
    if signature is not None:
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def _json(value: dict[str, Any]) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer past 64 bits, which orjson does not write: the standard library does
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _parts(blocks: list[Any], prefix: str, notes: Untranslatable) -> list[dict[str, Any]]:
    return [p for k, block in enumerate(blocks) for p in _part(block, f"{prefix}[{k}]", notes)]


def _part(raw: object, at: str, notes: Untranslatable) -> list[dict[str, Any]]:
    block = obj(raw, at)
    kind = _kind(block, at)
    if kind == "text":
        part: dict[str, Any] = {"type": "text", "text": string(block.get("text"), f"{at}.text")}
    elif kind == "image":
        part = _image(obj(block.get("source"), f"{at}.source"), f"{at}.source", notes)
    elif kind == "document":
        part = _document(block, f"{at}.source", notes)
    else:
        notes.note(f"{at}.type", f"a '{kind}' block")
        return []
    if "cache_control" in block:
        part["cache_control"] = block["cache_control"]
    return [part]


def _image(source: dict[str, Any], at: str, notes: Untranslatable) -> dict[str, Any]:
    kind = source.get("type")
    if kind == "base64":
        media = string(source.get("media_type"), f"{at}.media_type")
        url = f"data:{media};base64,{string(source.get('data'), f'{at}.data')}"
    elif kind == "url":
        url = string(source.get("url"), f"{at}.url")
    else:
        notes.note(f"{at}.type", f"an image source of type '{kind}'")
        url = ""
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: dict[str, Any], at: str, notes: Untranslatable) -> dict[str, Any]:
    source = obj(block.get("source"), at)
    kind = source.get("type")
    title = block.get("title") if isinstance(block.get("title"), str) else None
    if kind == "base64":
        media = string(source.get("media_type"), f"{at}.media_type")
        data = f"data:{media};base64,{string(source.get('data'), f'{at}.data')}"
        return {"type": "file", "file": {"file_data": data, "filename": title or "document.pdf"}}
    if kind == "text":
        return {"type": "text", "text": string(source.get("data"), f"{at}.data")}
    if kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            return {"type": "text", "text": inner}
        blocks = array(inner, f"{at}.content")
        texts = [string(b.get("text"), f"{at}.content[{j}].text")
                 for j, b in enumerate(blocks) if isinstance(b, dict) and b.get("type") == "text"]
        return {"type": "text", "text": "\n\n".join(texts)}
    notes.note(f"{at}.type", f"a document source of type '{kind}'")
    return {"type": "text", "text": ""}


def _kind(block: object, at: str) -> str:
    block = obj(block, at)
    if "type" not in block:
        raise missing(f"{at}.type")
    return string(block["type"], f"{at}.type")


def _compact(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain text part as a string (what most OpenAI-compatible servers expect), else the list."""
    if len(parts) == 1 and parts[0].keys() == {"type", "text"}:
        text: str = parts[0]["text"]
        return text
    return parts if parts else ""
