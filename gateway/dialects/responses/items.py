"""Responses input items → canonical Chat Completions messages.

- `message` items (or type-less `{role, content}`, the SDK's easy form): roles user, assistant, system,
  developer; parts `input_text`/`output_text` → text, `refusal` → text, `input_image` → `image_url`,
  `input_file` (inline `file_data`) → the canonical `file` part. `cache_control` on a part is kept.
- `function_call` / `custom_tool_call` → `tool_calls` on an assistant message; calls (and assistant
  text) in a row merge into one assistant message, as one model turn is one Chat message.
- `function_call_output` / `custom_tool_call_output` → `tool` messages.
- `reasoning` items → `reasoning_content` (their summary) and `thinking_blocks` (from the gateway's
  own `encrypted_content`, see reasoning.py) on the next assistant message; the Gemini thought
  signatures it carries go back on their tool calls (`extra_content`).
Anything else (OpenAI-hosted tool calls, item references) cannot be carried: a 400 naming the item.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.dialects.responses.reasoning import decode_reasoning
from gateway.dialects.responses.tools import canonical_name
from gateway.errors import InvalidRequestError

_ROLES = ("user", "assistant", "system", "developer")


class _Builder:
    def __init__(self, *, lenient: bool) -> None:
        self.lenient = lenient
        self.messages: list[dict[str, Any]] = []
        self.reasoning_text: list[str] = []
        self.blocks: list[dict[str, Any]] = []
        self.signatures: dict[str, str] = {}

    def assistant(self) -> dict[str, Any]:
        """The assistant message the next piece of a model turn belongs to."""
        last = self.messages[-1] if self.messages else None
        if last is None or last["role"] != "assistant":
            last = {"role": "assistant", "content": None}
            self.messages.append(last)
        if self.reasoning_text:
            previous = last.get("reasoning_content")
            text = "\n\n".join(self.reasoning_text)
            last["reasoning_content"] = f"{previous}\n\n{text}" if previous else text
            self.reasoning_text = []
        if self.blocks:
            last.setdefault("thinking_blocks", []).extend(self.blocks)
            self.blocks = []
        return last

    def add_text(self, message: dict[str, Any], text: str) -> None:
        message["content"] = (message["content"] or "") + text if text else message["content"]


def convert_items(items: list[Any], *, where: str, first: int = 0, lenient: bool = False) -> list[dict[str, Any]]:
    """`where` names the items in errors (`input`, or `previous_response_id` for stored history).
    `lenient`: leave out the items and parts the canonical form cannot carry instead of refusing them."""
    builder = _Builder(lenient=lenient)
    for i, item in enumerate(items, start=first):
        spot = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _invalid(spot, "expected an input item object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            _message(builder, item, spot)
        elif kind in ("function_call", "custom_tool_call"):
            _call(builder, item, spot, custom=kind == "custom_tool_call")
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = _string(item, "call_id", spot)
            builder.messages.append({"role": "tool", "tool_call_id": call_id,
                                     "content": _output(item.get("output"), f"{spot}.output", lenient)})
        elif kind == "reasoning":
            _reasoning(builder, item, spot)
        elif not lenient:
            raise InvalidRequestError(
                f"Invalid value for '{spot}.type': input items of type '{kind}' cannot be sent to this model; "
                "it takes messages, function and custom tool calls with their outputs, and reasoning items.",
                code="unsupported_input_item", param=f"{spot}.type")
    if builder.signatures:
        for message in builder.messages:
            for call in message.get("tool_calls") or ():
                signature = builder.signatures.get(call["id"])
                if signature is not None:
                    call["extra_content"] = {"google": {"thought_signature": signature}}
    return builder.messages


def _message(builder: _Builder, item: dict[str, Any], spot: str) -> None:
    role = item.get("role")
    if role not in _ROLES:
        raise _invalid(f"{spot}.role", "expected one of 'user', 'assistant', 'system', 'developer'")
    content = item.get("content")
    if role == "assistant":
        message = builder.assistant()
        builder.add_text(message, content if isinstance(content, str) else "".join(
            part["text"] for part in _parts(content, f"{spot}.content", builder.lenient) if part["type"] == "text"))
        return
    if isinstance(content, str):
        builder.messages.append({"role": role, "content": content})
        return
    parts = _parts(content, f"{spot}.content", builder.lenient)
    if not parts:
        return
    if role != "user" and all(part["type"] == "text" and len(part) == 2 for part in parts):
        builder.messages.append({"role": role, "content": "".join(part["text"] for part in parts)})
    else:
        builder.messages.append({"role": role, "content": parts})


def _parts(content: object, where: str, lenient: bool) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        raise _invalid(where, "expected a string or an array of content parts")
    out = []
    for j, part in enumerate(content):
        spot = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise _invalid(spot, "expected a content part object")
        try:
            converted = _part(part, spot)
        except InvalidRequestError as error:
            if lenient and error.code == "unsupported_value":
                continue
            raise
        if "cache_control" in part:
            converted["cache_control"] = part["cache_control"]
        out.append(converted)
    return out


def _part(part: dict[str, Any], spot: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": _string(part, "text", spot)}
    if kind == "refusal":
        return {"type": "text", "text": _string(part, "refusal", spot)}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise _unsupported_reference(spot, "image_url", "images")
        image: dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise _unsupported_reference(spot, "file_data", "files")
        if not data.startswith("data:"):
            # The Responses API takes bare base64 here; the canonical part wants a data URL, and
            # PDF is the one document type every translating provider reads.
            data = "data:application/pdf;base64," + data
        file: dict[str, Any] = {"file_data": data}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise _invalid(f"{spot}.type", "expected 'input_text', 'output_text', 'refusal', 'input_image' or 'input_file'")


def _call(builder: _Builder, item: dict[str, Any], spot: str, *, custom: bool) -> None:
    name = canonical_name(_string(item, "name", spot), item.get("namespace"))
    if custom:
        arguments = orjson.dumps({"input": _string(item, "input", spot)}).decode()
    else:
        arguments = _string(item, "arguments", spot)
    call = {"id": _string(item, "call_id", spot), "type": "function",
            "function": {"name": name, "arguments": arguments}}
    builder.assistant().setdefault("tool_calls", []).append(call)


def _output(output: object, where: str, lenient: bool) -> str | list[dict[str, Any]]:
    if isinstance(output, str):
        return output
    return _parts(output, where, lenient)


def _reasoning(builder: _Builder, item: dict[str, Any], spot: str) -> None:
    summary, content = _list(item, "summary", spot), _list(item, "content", spot)
    texts = [part["text"] for part in summary if isinstance(part, dict) and isinstance(part.get("text"), str)]
    texts += [part["text"] for part in content if isinstance(part, dict)
              and part.get("type") == "reasoning_text" and isinstance(part.get("text"), str)]
    carried = decode_reasoning(item.get("encrypted_content"), f"{spot}.encrypted_content")
    if carried is not None:
        builder.blocks.extend(carried[0])
        builder.signatures.update(carried[1])
    if texts:
        builder.reasoning_text.append("\n\n".join(texts))


def _string(item: dict[str, Any], name: str, spot: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        if value is None:
            raise InvalidRequestError(f"Missing required parameter: '{spot}.{name}'.",
                                      code="missing_required_parameter", param=f"{spot}.{name}")
        raise _invalid(f"{spot}.{name}", "expected a string")
    return value


def _list(item: dict[str, Any], name: str, spot: str) -> list[Any]:
    value = item.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(f"{spot}.{name}", "expected an array")
    return value


def _unsupported_reference(spot: str, field: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Missing required parameter: '{spot}.{field}': this model takes {what} inline only; file ids and "
        "file URLs refer to OpenAI's storage, which the gateway cannot read.",
        code="unsupported_value", param=f"{spot}.{field}")


def _invalid(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid value for '{param}': {why}.", code="invalid_value", param=param)
