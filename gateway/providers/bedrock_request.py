"""OpenAI chat request → Bedrock Converse request (pure; bedrock.py has the overview).

Beyond the basics listed there: `file` parts (base64 data URLs of PDF, CSV, Word, Excel, HTML, text
or Markdown) → `document` blocks; `cache_control` on a part or a message → a `cachePoint` after it;
assistant `thinking_blocks` → `reasoningContent` blocks opening the turn; `reasoning_effort` →
`additionalModelRequestFields`: `thinking.budget_tokens` for Claude (budget table in reasoning.py,
below maxTokens, with Anthropic's sampling rules), `reasoningConfig.maxReasoningEffort` for Nova,
`reasoning_effort` for OpenAI's open-weight models; other models refuse it (400 naming it).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from gateway.errors import InvalidRequestError
from gateway.providers.anthropic_request import default_max_tokens
from gateway.providers.reasoning import budget_within, effort_of, fits_claude_thinking, thinking_blocks

_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html", "text/plain": "txt", "text/markdown": "md",
}
# Converse document names: letters, digits, single spaces, hyphens, parentheses and square brackets.
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9\-()\[\] ]+")
# OpenAI parameters Converse has no equivalent for (a falsy value is no request at all).
_UNSUPPORTED = ("logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "seed",
                "logit_bias", "audio", "modalities", "prediction")
_CACHE_POINT = {"cachePoint": {"type": "default"}}




def _unsupported(param: str, why: str = "is not supported by Bedrock") -> InvalidRequestError:
    return InvalidRequestError(f"Unsupported parameter: '{param}' {why}.", code="unsupported_parameter",
                               param=param)


def to_converse(body: dict[str, Any], *, drop: bool = False, model: str = "") -> dict[str, Any]:
    for param in _UNSUPPORTED:
        if body.get(param) and not drop:
            raise _unsupported(param)
    if (body.get("n") or 1) > 1 and not drop:
        raise _unsupported("n", "must be 1 for Bedrock")
    if body.get("parallel_tool_calls") is False and not drop:
        raise _unsupported("parallel_tool_calls", "cannot be disabled on Bedrock")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text") and not drop:
        raise InvalidRequestError(
            f"Unsupported value: 'response_format' of type '{response_format.get('type')}' is not "
            "supported by Bedrock.", code="unsupported_value", param="response_format")

    system, messages = _messages(body["messages"])
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        inference["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        inference["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    tool_config = _tool_config(body, messages, drop)
    if tool_config:
        out["toolConfig"] = tool_config
    extra = body.get("additional_model_request_fields")
    fields = dict(extra) if isinstance(extra, dict) else {}
    fields.update(_reasoning(body, model, inference, drop))
    if inference:
        out["inferenceConfig"] = inference
    if fields:
        out["additionalModelRequestFields"] = fields
    return out


def _reasoning(body: dict[str, Any], model: str, inference: dict[str, Any], drop: bool) -> dict[str, Any]:
    """`reasoning_effort` → the model family's own field (inference is adjusted for Claude's rules)."""
    effort = effort_of(body)
    if effort is None or effort == "none":
        return {}
    if "anthropic.claude" in model:
        if "maxTokens" not in inference:
            inference["maxTokens"] = default_max_tokens(model)
        param = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens"
        budget = budget_within(effort, inference["maxTokens"], param)
        for name, key in (("temperature", "temperature"), ("top_p", "topP")):
            if key in inference and not fits_claude_thinking(name, inference[key]):
                if not drop:
                    raise _unsupported(name, f"= {inference[key]} cannot be combined with reasoning_effort "
                                             "on Claude (extended thinking)")
                del inference[key]
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}
    if "amazon.nova" in model:
        level = {"minimal": "low", "xhigh": "high"}.get(effort, effort)
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": level}}
    if "openai.gpt-oss" in model:
        return {"reasoning_effort": {"minimal": "low", "xhigh": "high"}.get(effort, effort)}
    if not drop:
        raise _unsupported("reasoning_effort", f"has no Converse mapping for the model '{model}'")
    return {}


def _messages(raw: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    system: list[dict[str, str]] = []
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        role = message.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(_system_blocks(message, where))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
            bedrock_role = "user"
        elif role == "assistant":
            blocks = [_reasoning_block(block) for block in thinking_blocks(message, where)]
            blocks.extend(_text_blocks(message.get("content"), where))
            blocks.extend(_tool_use(call, f"{where}.tool_calls[{j}]")
                          for j, call in enumerate(message.get("tool_calls") or ()))
            bedrock_role = "assistant"
        elif role == "tool":
            text = "".join(_texts(message.get("content"), where))
            blocks = [{"toolResult": {"toolUseId": message.get("tool_call_id") or "",
                                      "content": [{"text": text}]}}]
            bedrock_role = "user"
        else:
            raise _unsupported(f"{where}.role", f"'{role}' is not supported by Bedrock; use 'tool'")
        if "cache_control" in message and blocks and "cachePoint" not in blocks[-1]:
            blocks.append(dict(_CACHE_POINT))
        if messages and messages[-1]["role"] == bedrock_role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": bedrock_role, "content": blocks})
    return system, messages


def _system_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"), where)
    if "cache_control" in message and blocks and "cachePoint" not in blocks[-1]:
        blocks.append(dict(_CACHE_POINT))
    return blocks


def _text_blocks(content: object, where: str) -> list[dict[str, Any]]:
    """Text parts, each followed by a cache point when it carries a cache_control hint."""
    if isinstance(content, list):
        blocks: list[dict[str, Any]] = []
        for j, part in enumerate(content):
            if part.get("type") != "text":
                raise _unsupported(f"{where}.content[{j}].type", f"'{part.get('type')}' is not allowed here")
            if part.get("text"):
                blocks.append({"text": str(part["text"])})
            if "cache_control" in part and blocks:
                blocks.append(dict(_CACHE_POINT))
        return blocks
    return [{"text": text} for text in _texts(content, where) if text]


def _reasoning_block(block: dict[str, Any]) -> dict[str, Any]:
    if block["type"] == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": block["data"]}}
    return {"reasoningContent": {"reasoningText": {"text": block["thinking"], "signature": block["signature"]}}}


def _texts(content: object, where: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts = []
    for j, part in enumerate(content if isinstance(content, list) else ()):
        if part.get("type") != "text":
            raise _unsupported(f"{where}.content[{j}].type", f"'{part.get('type')}' is not allowed here")
        texts.append(str(part.get("text") or ""))
    return texts


def _user_blocks(content: object, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content if isinstance(content, list) else ()):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            blocks.append({"image": _image(str(image.get("url") or ""), f"{where}.content[{j}].image_url")})
        elif kind == "file":
            blocks.append({"document": _document(part.get("file"), f"{where}.content[{j}].file", j)})
        else:
            raise _unsupported(f"{where}.content[{j}].type", f"'{kind}' is not supported by Bedrock")
        if "cache_control" in part and blocks:
            blocks.append(dict(_CACHE_POINT))
    return blocks


def _document(file: object, where: str, position: int) -> dict[str, Any]:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise _unsupported(f"{where}.file_data", "must be a base64 data URL for Bedrock; file ids are not "
                                                 "supported")
    header, _, data = data_url[5:].partition(",")
    mime, _, encoding = header.partition(";")
    fmt = _DOCUMENT_FORMATS.get(mime.lower())
    if fmt is None or encoding != "base64":
        raise InvalidRequestError(f"Invalid file: '{where}.file_data' must be a base64 data URL of a PDF, CSV, "
                                  "Word, Excel, HTML, text or Markdown document.", code="invalid_value",
                                  param=f"{where}.file_data")
    filename = file.get("filename") if isinstance(file, dict) else None
    stem = str(filename).rsplit(".", 1)[0] if filename else ""
    # Names must be unique within a request: the part's position keeps two unnamed files apart.
    name = " ".join(_NAME_UNSAFE.sub(" ", stem).split()) or f"document {position + 1}"
    return {"format": fmt, "name": name[:200], "source": {"bytes": data}}


def _image(url: str, param: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        raise _unsupported(param, "must be a data: URL (base64) for Bedrock; image links are not fetched")
    header, _, data = url[5:].partition(",")
    mime, _, encoding = header.partition(";")
    fmt = _IMAGE_FORMATS.get(mime.lower())
    if fmt is None or encoding != "base64":
        raise InvalidRequestError(f"Invalid image: '{param}' must be a base64 png/jpeg/gif/webp data URL.",
                                  code="invalid_image_format", param=param)
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"Invalid image: '{param}' is not valid base64.",
                                  code="invalid_image_format", param=param) from None
    return {"format": fmt, "source": {"bytes": data}}


def _tool_use(call: dict[str, Any], where: str) -> dict[str, Any]:
    if call.get("type", "function") != "function":
        raise _unsupported(f"{where}.type", f"'{call.get('type')}' tool calls cannot be sent to Bedrock")
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(f"Invalid value for '{where}.function.arguments': not valid JSON.",
                                  code="invalid_value", param=f"{where}.function.arguments") from None
    return {"toolUse": {"toolUseId": call.get("id") or "", "name": function.get("name") or "",
                        "input": parsed}}


def _tool_config(body: dict[str, Any], messages: list[dict[str, Any]], drop: bool) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools:
        return None
    if choice == "none":
        uses_tools = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
        if not uses_tools:
            return None  # no tools offered: the model cannot call one
        if not drop:
            raise _unsupported("tool_choice", "'none' cannot be expressed on Bedrock once tools were used")
        choice = "auto"
    specs = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            if drop:
                continue
            raise _unsupported(f"tools[{i}].type", f"'{tool.get('type')}' tools cannot be sent to Bedrock")
        function = tool.get("function") or {}
        spec: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["inputSchema"] = {"json": function.get("parameters") or {"type": "object", "properties": {}}}
        specs.append({"toolSpec": spec})
    if not specs:
        return None
    config: dict[str, Any] = {"tools": specs}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise InvalidRequestError("Invalid value for 'tool_choice': a function name is required.",
                                      code="invalid_value", param="tool_choice")
        config["toolChoice"] = {"tool": {"name": name}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    return config
